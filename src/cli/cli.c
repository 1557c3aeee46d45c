#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "duration.h"
#include "status.h"

/* Width of the "name:" column of readable output. */
#define CLI_FIELD_WIDTH 12


void cli_opts_init(cli_opts_t *o) {
    const char *env = getenv("CPSTORE_ADDR");

    o->addr = (env != NULL && *env != '\0') ? env : CLI_DEFAULT_ADDR;
    o->json = 0;
    o->timeout_ms = CLI_DEFAULT_TIMEOUT_MS;
}


int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;

    fputs("cpstore: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'cpstore%s%s --help' for more information.\n",
            cmd != NULL ? " " : "", cmd != NULL ? cmd : "");
    return CLI_EXIT_USAGE;
}


static int cli_parse_timeout(const char *cmd, const char *arg, int *out) {
    uint64_t ms;

    if (cli_parse_duration(cmd, "--timeout", arg, &ms) != 0) {
        return CLI_EXIT_USAGE;
    }
    if (ms == 0 || ms > INT32_MAX) {
        return cli_usage_error(cmd, "--timeout must be between 1ms and 24d");
    }
    *out = (int)ms;
    return 0;
}


int cli_common_option(cli_opts_t *o, int opt, char **argv, const char *cmd) {
    switch (opt) {
    case CLI_OPT_ADDR:
        if (*optarg == '\0') {
            return cli_usage_error(cmd, "--addr must not be empty");
        }
        o->addr = optarg;
        return 0;
    case CLI_OPT_JSON:
        o->json = 1;
        return 0;
    case CLI_OPT_TIMEOUT:
        return cli_parse_timeout(cmd, optarg, &o->timeout_ms);
    case ':':
        return cli_usage_error(cmd, "option '%s' needs a value",
                               argv[optind - 1]);
    case '?':
        if (optopt != 0) {
            return cli_usage_error(cmd, "unknown option '-%c'", optopt);
        }
        return cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
    default:
        return cli_usage_error(cmd, "option '%s' is not valid here",
                               argv[optind - 1]);
    }
}


int cli_no_operands(int argc, char **argv, const char *cmd) {
    if (optind < argc) {
        return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    }
    return 0;
}


int cli_parse_count(const char *cmd,
                    const char *opt,
                    const char *arg,
                    uint64_t *out) {
    uint64_t n = 0;

    if (*arg == '\0') {
        return cli_usage_error(cmd, "%s needs a whole number", opt);
    }
    for (const char *p = arg; *p != '\0'; p++) {
        uint64_t digit = (uint64_t)(*p - '0');

        if (*p < '0' || *p > '9') {
            return cli_usage_error(cmd, "%s needs a whole number, not '%s'",
                                   opt, arg);
        }
        if (n > (UINT64_MAX - digit) / 10) {
            return cli_usage_error(cmd, "%s is too large: '%s'", opt, arg);
        }
        n = n * 10 + digit;
    }
    *out = n;
    return 0;
}


int cli_parse_duration(const char *cmd,
                       const char *opt,
                       const char *arg,
                       uint64_t *out_ms) {
    if (duration_parse(arg, out_ms) != CPS_OK) {
        return cli_usage_error(cmd,
                               "%s needs a duration such as 250ms, 10s, 5m, "
                               "1h or 30d, not '%s'",
                               opt, arg);
    }
    return 0;
}


int cli_copy_string(const char *cmd,
                    const char *opt,
                    const char *arg,
                    char *dst,
                    size_t dst_size) {
    size_t len = strlen(arg);

    if (len >= dst_size) {
        return cli_usage_error(cmd, "%s is longer than %zu bytes", opt,
                               dst_size - 1);
    }
    memcpy(dst, arg, len + 1);
    return 0;
}


int cli_add_string(const char *cmd,
                   const char *opt,
                   const char *arg,
                   char *array,
                   size_t item_size,
                   size_t max_count,
                   pb_size_t *count) {
    if (*count >= max_count) {
        return cli_usage_error(cmd, "%s is allowed at most %zu times", opt,
                               max_count);
    }
    if (cli_copy_string(cmd, opt, arg, array + *count * item_size, item_size) !=
        0) {
        return CLI_EXIT_USAGE;
    }
    (*count)++;
    return 0;
}


cpc_t *cli_connect(const cli_opts_t *o) {
    char err[256];
    cpc_t *c = cpc_connect(o->addr, o->timeout_ms, err, sizeof(err));

    if (c == NULL) {
        fprintf(stderr, "cpstore: %s\n", err);
        return NULL;
    }
    /* The server may spend at most what we are prepared to wait. */
    cpc_set_budget(c, (uint32_t)o->timeout_ms);
    return c;
}


int cli_call_result(const cpc_t *c, int rc, const cpc_reply_t *reply) {
    if (rc != CPC_OK) {
        fprintf(stderr, "cpstore: %s\n", cpc_last_error(c));
        return CLI_EXIT_ERROR;
    }
    if (reply->status != CPS_OK) {
        if (reply->error.message[0] != '\0') {
            fprintf(stderr, "%s: %s\n", cps_status_name(reply->status),
                    reply->error.message);
        } else {
            fprintf(stderr, "%s\n", cps_status_name(reply->status));
        }
        return CLI_EXIT_ERROR;
    }
    return 0;
}


void cli_field(const char *name, const char *fmt, ...) {
    char label[CLI_FIELD_WIDTH + 8];
    va_list ap;

    /* An empty name continues the previous field on a new line. */
    snprintf(label, sizeof(label), "%s%s", name, *name != '\0' ? ":" : "");
    printf("%-*s ", CLI_FIELD_WIDTH, label);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}


void cli_format_time(int64_t ms, char *buf, size_t len) {
    int64_t secs = ms / 1000;
    int64_t frac = ms % 1000;
    struct tm tm;
    time_t t;
    size_t n;

    if (ms == 0) {
        snprintf(buf, len, "never");
        return;
    }
    if (frac < 0) {
        secs--;
        frac += 1000;
    }
    t = (time_t)secs;
    if (gmtime_r(&t, &tm) == NULL) {
        snprintf(buf, len, "%lld ms", (long long)ms);
        return;
    }
    n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%03dZ", (int)frac);
}


int cli_rpc(const cli_opts_t *o,
            uint16_t method,
            const pb_msgdesc_t *req_fields,
            const void *req,
            const pb_msgdesc_t *resp_fields,
            void *resp,
            cpc_reply_t *reply) {
    cpc_t *c = cli_connect(o);
    int rc;

    if (c == NULL) {
        return CLI_EXIT_ERROR;
    }
    rc = cpc_call(c, method, req_fields, req, resp_fields, resp, reply);
    rc = cli_call_result(c, rc, reply);
    cpc_close(c);
    return rc;
}
