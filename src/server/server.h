/*
 * cpstored's network layer: listeners, connections, frames and calls.
 *
 * The server owns no state of its own beyond connections; the backends it
 * serves are created by main and handed over in srv_backends_t. Everything
 * here runs on the loop thread.
 */
#ifndef CPSTORE_SERVER_H
#define CPSTORE_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "apikeys.h"
#include "cfgfile.h"
#include "keystore.h"
#include "ratelimit.h"
#include "worker.h"

typedef struct srv_config {
    const char *listen;     /* "host:port" or "unix:/path" */
    uint32_t max_payload;   /* bytes, checked before allocation */
    uint32_t max_in_flight; /* requests per connection */
    uint32_t max_connections;
    uint32_t request_timeout_ms; /* deadline when the caller gives none,
                                    and the ceiling of a caller's budget */
    uint32_t idle_timeout_ms;    /* 0: never */
    uint32_t frame_timeout_ms;   /* a started frame must finish within */
    uint32_t drain_timeout_ms;   /* on shutdown */
} srv_config_t;

/* Defaults for every field of srv_config_t. */
void srv_config_defaults(srv_config_t *cfg);

typedef struct tk_service tk_service_t; /* src/tokens/tokens.h */
typedef struct ss_service ss_service_t; /* src/sessions/sessions.h */

/* What the server serves. Borrowed; must outlive the server. */
typedef struct srv_backends {
    rl_backend_t *ratelimit;
    ak_service_t *apikeys;
    ks_store_t *keystore;
    tk_service_t *tokens;
    ss_service_t *sessions;
    wk_pool_t *workers;
    const cf_file_t *config; /* replaced by srv_set_config() */
} srv_backends_t;

typedef struct srv srv_t;

/* Bind and listen. NULL with a reason in err on failure. */
srv_t *srv_start(uv_loop_t *loop,
                 const srv_config_t *cfg,
                 const srv_backends_t *be,
                 char *err,
                 size_t err_len);

/*
 * Stop accepting, send GOAWAY to every connection, let calls in flight
 * finish within the drain timeout, then close everything and call done.
 * The server frees itself after done returns.
 */
void srv_shutdown(srv_t *srv, void (*done)(void *arg), void *arg);

/* Serve from now on with a new configuration file (SIGHUP). The caller
 * keeps ownership of both the old and the new one; calls read it only on
 * the loop thread, so the old one may be freed right after this call. */
void srv_set_config(srv_t *srv, const cf_file_t *config);

/* The address actually bound ("127.0.0.1:7300"), for logs. */
const char *srv_address(const srv_t *srv);

#endif
