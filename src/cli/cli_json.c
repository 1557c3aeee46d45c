#include "cli_json.h"

#include <inttypes.h>
#include <stddef.h>


/*
 * Length of the valid UTF-8 sequence at p, or 0 when p does not start one
 * (stray continuation byte, overlong form, surrogate, beyond U+10FFFF, or
 * cut short by the terminating NUL).
 */
static size_t cli_json_utf8_len(const unsigned char *p) {
    uint32_t cp;
    uint32_t min;
    size_t n;

    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 2;
        cp = p[0] & 0x1fu;
        min = 0x80;
    } else if ((p[0] & 0xf0) == 0xe0) {
        n = 3;
        cp = p[0] & 0x0fu;
        min = 0x800;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4;
        cp = p[0] & 0x07u;
        min = 0x10000;
    } else {
        return 0;
    }

    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (p[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    return n;
}


static void cli_json_string(FILE *f, const char *s) {
    const unsigned char *p = (const unsigned char *)s;

    fputc('"', f);
    while (*p != '\0') {
        size_t n;

        if (*p == '"' || *p == '\\') {
            fputc('\\', f);
            fputc(*p++, f);
            continue;
        }
        if (*p < 0x20 || *p == 0x7f) {
            switch (*p) {
            case '\n':
                fputs("\\n", f);
                break;
            case '\r':
                fputs("\\r", f);
                break;
            case '\t':
                fputs("\\t", f);
                break;
            default:
                fprintf(f, "\\u%04x", *p);
                break;
            }
            p++;
            continue;
        }
        if (*p < 0x80) {
            fputc(*p++, f);
            continue;
        }
        n = cli_json_utf8_len(p);
        if (n == 0) {
            fputs("\\ufffd", f);
            p++;
            continue;
        }
        fwrite(p, 1, n, f);
        p += n;
    }
    fputc('"', f);
}


/* The separator and key that come before any member or element. */
static void cli_json_key(cli_json_t *j, const char *key) {
    if (j->has_items[j->depth]) {
        fputc(',', j->f);
    }
    j->has_items[j->depth] = true;
    if (key != NULL) {
        cli_json_string(j->f, key);
        fputc(':', j->f);
    }
}


static void cli_json_open(cli_json_t *j, const char *key, char open) {
    if (j->depth + 1 >= CLI_JSON_MAX_DEPTH) {
        return;
    }
    cli_json_key(j, key);
    fputc(open, j->f);
    j->depth++;
    j->has_items[j->depth] = false;
    j->closer[j->depth] = open == '{' ? '}' : ']';
}


void cli_json_begin(cli_json_t *j, FILE *f) {
    j->f = f;
    j->depth = 0;
    j->has_items[0] = false;
    cli_json_open(j, NULL, '{');
}


void cli_json_end(cli_json_t *j) {
    while (j->depth > 0) {
        cli_json_close(j);
    }
    fputc('\n', j->f);
}


void cli_json_object(cli_json_t *j, const char *key) {
    cli_json_open(j, key, '{');
}


void cli_json_array(cli_json_t *j, const char *key) {
    cli_json_open(j, key, '[');
}


void cli_json_close(cli_json_t *j) {
    if (j->depth == 0) {
        return;
    }
    fputc(j->closer[j->depth], j->f);
    j->depth--;
}


void cli_json_str(cli_json_t *j, const char *key, const char *value) {
    cli_json_key(j, key);
    cli_json_string(j->f, value);
}


void cli_json_u64(cli_json_t *j, const char *key, uint64_t value) {
    cli_json_key(j, key);
    fprintf(j->f, "%" PRIu64, value);
}


void cli_json_i64(cli_json_t *j, const char *key, int64_t value) {
    cli_json_key(j, key);
    fprintf(j->f, "%" PRId64, value);
}


void cli_json_bool(cli_json_t *j, const char *key, bool value) {
    cli_json_key(j, key);
    fputs(value ? "true" : "false", j->f);
}
