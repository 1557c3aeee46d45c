/*
 * Configuration file parsing on inih. Each name=value pair is applied as it
 * is read; the first error stops the load and is reported with its line.
 * A token kind section given in the file replaces the built-in kinds, so a
 * file that names its kinds gets exactly those.
 */
#include "cfgfile.h"

#include <ini.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duration.h"
#include "field_limits.h"
#include "status.h"

#define CF_MAX_POLICIES    1024
#define CF_MAX_TOKEN_KINDS 64

typedef struct cf_ctx {
    cf_file_t *cf;
    bool kinds_from_file;
    char err[256];
    char section[128]; /* last section seen, for "policy.x" bookkeeping */
} cf_ctx_t;


int cf_defaults(cf_file_t *cf) {
    static const char *const kinds[] = {"oauth_code", "exchange"};

    memset(cf, 0, sizeof(*cf));
    cf->rl_unavailable = CF_UNAVAILABLE_ERROR;
    cf->session_idle_ms = 30ull * 60 * 1000;
    cf->session_absolute_ms = 12ull * 3600 * 1000;
    cf->session_touch_ms = 60ull * 1000;
    cf->purge_interval_ms = 60ull * 1000;
    cf->token_reuse_window_ms = 3600ull * 1000;

    cf->token_kinds = calloc(2, sizeof(*cf->token_kinds));
    if (cf->token_kinds == NULL) {
        return -1;
    }
    for (size_t i = 0; i < 2; i++) {
        snprintf(cf->token_kinds[i].name, sizeof(cf->token_kinds[i].name), "%s",
                 kinds[i]);
        cf->token_kinds[i].max_ttl_ms = 10ull * 60 * 1000;
    }
    cf->ntoken_kinds = 2;
    return 0;
}


void cf_free(cf_file_t *cf) {
    free(cf->policies);
    free(cf->token_kinds);
    memset(cf, 0, sizeof(*cf));
}


const cf_policy_t *cf_policy(const cf_file_t *cf, const char *name) {
    for (size_t i = 0; i < cf->npolicies; i++) {
        if (strcmp(cf->policies[i].name, name) == 0) {
            return &cf->policies[i];
        }
    }
    return NULL;
}


const cf_token_kind_t *cf_token_kind(const cf_file_t *cf, const char *name) {
    for (size_t i = 0; i < cf->ntoken_kinds; i++) {
        if (strcmp(cf->token_kinds[i].name, name) == 0) {
            return &cf->token_kinds[i];
        }
    }
    return NULL;
}


/* A policy or kind name: 1..64 of [A-Za-z0-9_.:-]. */
static bool cf_name_ok(const char *s) {
    size_t n = strlen(s);

    if (n == 0 || n > CF_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':' ||
              c == '-')) {
            return false;
        }
    }
    return true;
}


__attribute__((format(printf, 2, 3))) static int
cf_fail(cf_ctx_t *ctx, const char *fmt, ...) {
    va_list ap;

    /* inih goes on after an error and reports the first line: keep the
     * first message too, so the two match. */
    if (ctx->err[0] == '\0') {
        va_start(ap, fmt);
        vsnprintf(ctx->err, sizeof(ctx->err), fmt, ap);
        va_end(ap);
    }
    return 0;
}


static bool cf_duration(const char *v, uint64_t max_ms, uint64_t *out) {
    uint64_t ms;

    if (duration_parse(v, &ms) != CPS_OK || ms == 0 || ms > max_ms) {
        return false;
    }
    *out = ms;
    return true;
}


static cf_policy_t *cf_policy_slot(cf_ctx_t *ctx, const char *name) {
    cf_file_t *cf = ctx->cf;
    cf_policy_t *p = (cf_policy_t *)cf_policy(cf, name);

    if (p != NULL) {
        return p;
    }
    if (cf->npolicies >= CF_MAX_POLICIES) {
        return NULL;
    }
    p = realloc(cf->policies, (cf->npolicies + 1) * sizeof(*p));
    if (p == NULL) {
        return NULL;
    }
    cf->policies = p;
    p = &cf->policies[cf->npolicies++];
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "%s", name);
    return p;
}


static cf_token_kind_t *cf_kind_slot(cf_ctx_t *ctx, const char *name) {
    cf_file_t *cf = ctx->cf;
    cf_token_kind_t *k;

    if (!ctx->kinds_from_file) {
        /* The first kind in the file replaces the built-in ones. */
        ctx->kinds_from_file = true;
        cf->ntoken_kinds = 0;
    }
    k = (cf_token_kind_t *)cf_token_kind(cf, name);
    if (k != NULL) {
        return k;
    }
    if (cf->ntoken_kinds >= CF_MAX_TOKEN_KINDS) {
        return NULL;
    }
    k = realloc(cf->token_kinds, (cf->ntoken_kinds + 1) * sizeof(*k));
    if (k == NULL) {
        return NULL;
    }
    cf->token_kinds = k;
    k = &cf->token_kinds[cf->ntoken_kinds++];
    memset(k, 0, sizeof(*k));
    snprintf(k->name, sizeof(k->name), "%s", name);
    k->max_ttl_ms = 10ull * 60 * 1000;
    return k;
}


static int cf_policy_pair(cf_ctx_t *ctx,
                          const char *pname,
                          const char *name,
                          const char *value) {
    cf_policy_t *p;
    char *end;

    if (!cf_name_ok(pname)) {
        return cf_fail(ctx, "bad policy name \"%s\"", pname);
    }
    p = cf_policy_slot(ctx, pname);
    if (p == NULL) {
        return cf_fail(ctx, "too many policies");
    }
    if (strcmp(name, "limit") == 0) {
        unsigned long long n = strtoull(value, &end, 10);

        if (*value == '\0' || *end != '\0' || value[0] == '-' ||
            n > LIM_RL_LIMIT_MAX) {
            return cf_fail(ctx, "limit: expected 0 to %llu, got \"%s\"",
                           LIM_RL_LIMIT_MAX, value);
        }
        p->limit = n;
        return 1;
    }
    if (strcmp(name, "window") == 0) {
        if (!cf_duration(value, LIM_RL_WINDOW_MAX_MS, &p->window_ms)) {
            return cf_fail(ctx,
                           "window: expected a duration like 1m, got "
                           "\"%s\"",
                           value);
        }
        return 1;
    }
    return cf_fail(ctx, "unknown policy setting \"%s\"", name);
}


static int cf_handler(void *user,
                      const char *section,
                      const char *name,
                      const char *value) {
    cf_ctx_t *ctx = user;
    cf_file_t *cf = ctx->cf;
    uint64_t *target = NULL;
    uint64_t max = 366ull * 24 * 3600 * 1000;

    snprintf(ctx->section, sizeof(ctx->section), "%s", section);
    if (strncmp(section, "policy.", 7) == 0) {
        return cf_policy_pair(ctx, section + 7, name, value);
    }
    if (strncmp(section, "token.", 6) == 0) {
        cf_token_kind_t *k;

        if (!cf_name_ok(section + 6) || strlen(section + 6) > 32) {
            return cf_fail(ctx, "bad token kind \"%s\"", section + 6);
        }
        k = cf_kind_slot(ctx, section + 6);
        if (k == NULL) {
            return cf_fail(ctx, "too many token kinds");
        }
        if (strcmp(name, "max_ttl") != 0) {
            return cf_fail(ctx, "unknown token setting \"%s\"", name);
        }
        if (!cf_duration(value, 30ull * 24 * 3600 * 1000, &k->max_ttl_ms)) {
            return cf_fail(ctx,
                           "max_ttl: expected a duration up to 30d, got "
                           "\"%s\"",
                           value);
        }
        return 1;
    }
    if (strcmp(section, "ratelimit") == 0 && strcmp(name, "unavailable") == 0) {
        if (strcmp(value, "error") == 0) {
            cf->rl_unavailable = CF_UNAVAILABLE_ERROR;
        } else if (strcmp(value, "deny") == 0) {
            cf->rl_unavailable = CF_UNAVAILABLE_DENY;
        } else if (strcmp(value, "allow") == 0) {
            cf->rl_unavailable = CF_UNAVAILABLE_ALLOW;
        } else {
            return cf_fail(ctx,
                           "unavailable: expected error, deny or allow, "
                           "got \"%s\"%s",
                           value, "");
        }
        return 1;
    }
    if (strcmp(section, "session") == 0) {
        if (strcmp(name, "idle_timeout") == 0) {
            target = &cf->session_idle_ms;
        } else if (strcmp(name, "absolute_lifetime") == 0) {
            target = &cf->session_absolute_ms;
        } else if (strcmp(name, "touch_interval") == 0) {
            target = &cf->session_touch_ms;
        }
    } else if (strcmp(section, "housekeeping") == 0) {
        if (strcmp(name, "purge_interval") == 0) {
            target = &cf->purge_interval_ms;
        } else if (strcmp(name, "token_reuse_window") == 0) {
            target = &cf->token_reuse_window_ms;
        }
    }
    if (target == NULL) {
        return cf_fail(ctx, "unknown setting \"%s\" in [%s]", name, section);
    }
    if (!cf_duration(value, max, target)) {
        return cf_fail(ctx,
                       "%s: expected a duration like 30s or 1h, got "
                       "\"%s\"",
                       name, value);
    }
    return 1;
}


static int
cf_finish(cf_ctx_t *ctx, int rc, const char *where, char *err, size_t err_len) {
    cf_file_t *cf = ctx->cf;

    if (rc == 0) {
        for (size_t i = 0; i < cf->npolicies; i++) {
            if (cf->policies[i].window_ms == 0) {
                snprintf(err, err_len, "%s: policy %s has no window", where,
                         cf->policies[i].name);
                cf_free(cf);
                return -1;
            }
        }
        return 0;
    }
    if (rc == -1) {
        snprintf(err, err_len, "%s: cannot open", where);
    } else if (rc == -2) {
        snprintf(err, err_len, "%s: out of memory", where);
    } else {
        snprintf(err, err_len, "%s:%d: %s", where, rc,
                 ctx->err[0] ? ctx->err : "syntax error");
    }
    cf_free(cf);
    return -1;
}


int cf_load(const char *path, cf_file_t *cf, char *err, size_t err_len) {
    cf_ctx_t ctx = {.cf = cf};

    if (cf_defaults(cf) != 0) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    return cf_finish(&ctx, ini_parse(path, cf_handler, &ctx), path, err,
                     err_len);
}


int cf_load_string(const char *text, cf_file_t *cf, char *err, size_t err_len) {
    cf_ctx_t ctx = {.cf = cf};

    if (cf_defaults(cf) != 0) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    return cf_finish(&ctx, ini_parse_string(text, cf_handler, &ctx), "config",
                     err, err_len);
}
