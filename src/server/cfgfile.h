/*
 * cpstored's configuration file (--config, CPSTORE_CONFIG): named
 * rate-limit policies, the Redis-unreachable policy, token kinds, session
 * defaults and housekeeping. INI syntax, parsed with inih:
 *
 *   [ratelimit]
 *   unavailable = error        ; deny | allow | error
 *
 *   [policy.login]             ; used as RateLimitCheckRequest.policy
 *   limit = 5
 *   window = 1m
 *
 *   [token.oauth_code]         ; a token kind and its longest ttl
 *   max_ttl = 10m
 *
 *   [session]
 *   idle_timeout = 30m
 *   absolute_lifetime = 12h
 *   touch_interval = 1m        ; an idle slide is written at most this often
 *
 *   [housekeeping]
 *   purge_interval = 1m
 *   token_reuse_window = 1h    ; consumed tokens kept past expiry
 *
 * Without a file, or for what a file leaves out, the defaults of
 * cf_defaults() apply. A cf_file_t is read on the loop thread only; code on
 * worker threads gets the values it needs copied into its job. SIGHUP
 * loads a new one and swaps it in whole, so a bad file changes nothing.
 */
#ifndef CPSTORE_CFGFILE_H
#define CPSTORE_CFGFILE_H

#include <stddef.h>
#include <stdint.h>

#define CF_NAME_MAX 64

typedef enum cf_unavailable {
    CF_UNAVAILABLE_ERROR = 0, /* answer UNAVAILABLE */
    CF_UNAVAILABLE_DENY = 1,  /* answer allowed = false, fallback = true */
    CF_UNAVAILABLE_ALLOW = 2, /* answer allowed = true, fallback = true */
} cf_unavailable_t;

typedef struct cf_policy {
    char name[CF_NAME_MAX + 1];
    uint64_t limit;
    uint64_t window_ms;
} cf_policy_t;

typedef struct cf_token_kind {
    char name[CF_NAME_MAX + 1];
    uint64_t max_ttl_ms;
} cf_token_kind_t;

typedef struct cf_file {
    cf_unavailable_t rl_unavailable;
    cf_policy_t *policies;
    size_t npolicies;
    cf_token_kind_t *token_kinds;
    size_t ntoken_kinds;
    uint64_t session_idle_ms;
    uint64_t session_absolute_ms;
    uint64_t session_touch_ms;
    uint64_t purge_interval_ms;
    uint64_t token_reuse_window_ms;
} cf_file_t;

/* The defaults: unavailable = error, no policies, token kinds oauth_code
 * and exchange with max_ttl 10m, sessions 30m idle / 12h absolute / 1m
 * touch, purge every 1m, token reuse window 1h. Returns 0 or -1 (no
 * memory). */
int cf_defaults(cf_file_t *cf);

/* Defaults, then the file at path. 0, or -1 with a one-line reason
 * ("cpstored.conf:12: window: ...") in err and *cf left empty. */
int cf_load(const char *path, cf_file_t *cf, char *err, size_t err_len);

/* Same, from a string (for tests). */
int cf_load_string(const char *text, cf_file_t *cf, char *err, size_t err_len);

void cf_free(cf_file_t *cf);

/* Lookups; NULL when there is no such name. */
const cf_policy_t *cf_policy(const cf_file_t *cf, const char *name);
const cf_token_kind_t *cf_token_kind(const cf_file_t *cf, const char *name);

#endif
