/*
 * Redis rate-limit backend: the script of rl_script.c over hiredis 0.14
 * async, on the server's libuv loop.
 *
 * Design note.
 *
 * Connections. The backend holds at most one connection (rl_redis_conn_t,
 * one hiredis context) at a time. A connection starts in HANDSHAKE: AUTH
 * and SELECT when the URL asks for them, then SCRIPT LOAD, all queued at
 * once; only the SCRIPT LOAD reply makes it READY, so the script is in the
 * cache after every (re)connect before any check is sent. Any failure
 * detaches the connection (DEAD) and arms the retry timer, which opens a
 * new context after a backoff of 100 ms doubling to 2 s; a context is never
 * reused once it has failed. A host name is resolved with uv_getaddrinfo()
 * on each attempt, so that hiredis, which would resolve it blocking, only
 * ever sees a numeric address.
 *
 * What hiredis 0.14 does not do, done here:
 * - No timeouts at all: each check has its own uv_timer and is answered
 *   DEADLINE_EXCEEDED when it fires; the connect timer bounds connect plus
 *   handshake; the watchdog PINGs an idle connection and tears down one
 *   that has had something outstanding without any reply for
 *   RL_REDIS_STALL_MS (its libuv adapter ignores poll errors, and a hung
 *   server never closes the socket).
 * - The script cache can be emptied under us (restart, failover, SCRIPT
 *   FLUSH): a NOSCRIPT reply is answered by resending the same request
 *   once as EVAL of the full source, which the caller never sees, and by
 *   reloading the script for the requests that follow.
 *
 * Lifetimes, the delicate part. hiredis runs every queued callback, with a
 * NULL reply, before it frees a context, whoever asked for the free; it
 * calls the disconnect callback last, and only for a context that had
 * connected; after a connect callback with an error status it frees the
 * context itself. redisAsyncFree() called inside a reply callback only
 * marks the context and frees it when the callback returns, but called
 * from the connect or disconnect callback it would free it twice. Hence:
 * - a connection struct outlives its context: it is freed once hiredis has
 *   dropped the context (disconnect callback, connect error, or our own
 *   redisAsyncFree() returning outside a callback) and no callback of
 *   ours is still queued (`callbacks`) or running (`holds`);
 * - redisAsyncFree() is only called from timers, close() and reply
 *   callbacks, never from the connect or disconnect callbacks;
 * - a check's struct lives until both its answer has been given (reply,
 *   timeout or failure, exactly once) and hiredis has run its callback,
 *   then until its timer handle is closed;
 * - close() closes the timers and frees the context, which answers every
 *   pending check UNAVAILABLE; the backend itself is freed when the last
 *   handle, check, connection and address lookup is gone.
 *
 * Checks. A single check and a check_many are the same request here: one
 * call of the script over its n keys (n = 1 for a single check), with its
 * arguments laid out once in the request so that the NOSCRIPT fallback can
 * resend them, and one answer, given to the callback of its kind. The keys
 * go to Redis as given after the prefix: on Redis Cluster (behind a
 * cluster-aware proxy) the keys of one check_many must share a hash tag,
 * as rl_script.c explains.
 *
 * Only state changes are logged (connected, lost, unreachable), once per
 * change; checks never log.
 */
#include "ratelimit.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/adapters/libuv.h>

#include "clock.h"
#include "crypto.h"
#include "log.h"
#include "rl_redis_url.h"
#include "rl_script.h"
#include "status.h"

#define RL_REDIS_PREFIX_DEFAULT     "cpstore:rl:"
#define RL_REDIS_CONNECT_TIMEOUT_MS 2000u
#define RL_REDIS_TIMEOUT_MS         1000u /* a check with timeout_ms 0 */
#define RL_REDIS_BACKOFF_MIN_MS     100u
#define RL_REDIS_BACKOFF_MAX_MS     2000u
#define RL_REDIS_WATCHDOG_MS        250u
#define RL_REDIS_PING_IDLE_MS       1000
#define RL_REDIS_STALL_MS           3000
#define RL_REDIS_ERR_MAX            160
#define RL_REDIS_SHA_LEN            40

typedef struct rl_redis rl_redis_t;

typedef enum rl_redis_state {
    RL_REDIS_HANDSHAKE, /* connecting, or AUTH/SELECT/SCRIPT LOAD pending */
    RL_REDIS_READY,     /* script loaded: checks go through */
    RL_REDIS_DEAD,      /* detached from the backend, hiredis winding down */
} rl_redis_state_t;

typedef struct rl_redis_conn {
    rl_redis_t *be;
    redisAsyncContext *ac; /* NULL once hiredis has freed the context */
    rl_redis_state_t state;
    bool freeing;        /* redisAsyncFree() was called on ac */
    bool reloading;      /* a SCRIPT LOAD after NOSCRIPT is outstanding */
    unsigned callbacks;  /* our hiredis callbacks queued, not yet run */
    unsigned holds;      /* our stack frames still using this struct */
    int64_t progress_ms; /* last reply, or when callbacks left 0 */
    int64_t io_ms;       /* last command sent or reply received */
} rl_redis_conn_t;

struct rl_redis {
    rl_backend_t base; /* first member: the ops see an rl_backend_t */
    uv_loop_t *loop;

    char *prefix; /* owned */
    size_t prefix_len;
    rl_redis_url_t url; /* owns user and password */
    uint32_t connect_timeout_ms;

    char instance[33]; /* random hex, so request ids differ per process */
    uint64_t seq;
    char sha[RL_REDIS_SHA_LEN + 1];

    rl_redis_conn_t *conn; /* the current connection; NULL between tries */
    uv_getaddrinfo_t gai;
    bool resolving;
    uv_timer_t connect_timer;
    uv_timer_t retry_timer;
    uv_timer_t watchdog;
    uint32_t backoff_ms;

    bool down_logged; /* the current outage has been logged */
    char last_error[RL_REDIS_ERR_MAX];

    unsigned handles; /* timers not yet closed */
    unsigned reqs;    /* checks not yet freed */
    unsigned conns;   /* connection structs not yet freed */
    bool closing;
};

typedef struct rl_redis_req {
    rl_redis_t *be;
    rl_redis_conn_t *conn; /* where its command was last sent */
    uv_timer_t timer;
    rl_done_cb cb;           /* a single check, or */
    rl_many_done_cb many_cb; /* a check_many */
    void *arg;
    bool answered; /* the callback has run */
    bool in_redis; /* a hiredis callback for it is queued */
    bool retried;  /* the EVAL fallback has been sent */
    bool closing;  /* timer handle is closing */
    size_t n;      /* keys */
    int argc;      /* RL_REDIS_ARGC(n) */
    /* The script's arguments, kept for the fallback: argv[0] and argv[1]
     * (command and script) are set on each send; the rest point into mem. */
    const char **argv;
    size_t *lens;
    uint64_t *limits; /* n, copied into the results */
    char numkeys[24];
    char id[64];
    max_align_t mem[]; /* argv, lens, limits, then the strings */
} rl_redis_req_t;

/* EVALSHA, sha, numkeys, n keys, 3 numbers per key, the request id. */
#define RL_REDIS_ARGC(n) (4 + 4 * (int)(n))

/* Longest decimal uint64_t and its NUL. */
#define RL_REDIS_U64_LEN 21

static void rl_redis_on_retry(uv_timer_t *timer);
static void rl_redis_on_connect_timeout(uv_timer_t *timer);


/* ---- backend lifetime ------------------------------------------------ */

static void rl_redis_free(rl_redis_t *be) {
    rl_redis_url_free(&be->url);
    free(be->prefix);
    free(be);
}


static void rl_redis_maybe_free(rl_redis_t *be) {
    if (!be->closing || be->handles > 0 || be->reqs > 0 || be->conns > 0 ||
        be->resolving) {
        return;
    }
    rl_redis_free(be);
}


static void rl_redis_handle_closed(uv_handle_t *handle) {
    rl_redis_t *be = handle->data;

    be->handles--;
    rl_redis_maybe_free(be);
}


/* Record why Redis is unreachable and log it once per outage, then try
 * again after the backoff. */
static void rl_redis_down(rl_redis_t *be, const char *reason, bool was_up) {
    snprintf(be->last_error, sizeof(be->last_error), "%s", reason);
    if (was_up) {
        log_warn("redis connection lost host=%s port=%d reason=\"%s\"; "
                 "reconnecting",
                 be->url.host, be->url.port, reason);
        be->down_logged = true;
    } else if (!be->down_logged) {
        log_warn("redis unreachable host=%s port=%d reason=\"%s\"; retrying",
                 be->url.host, be->url.port, reason);
        be->down_logged = true;
    }
    uv_timer_start(&be->retry_timer, rl_redis_on_retry, be->backoff_ms, 0);
    be->backoff_ms *= 2;
    if (be->backoff_ms > RL_REDIS_BACKOFF_MAX_MS) {
        be->backoff_ms = RL_REDIS_BACKOFF_MAX_MS;
    }
}


/* ---- connections ----------------------------------------------------- */

static void rl_redis_conn_maybe_free(rl_redis_conn_t *c) {
    rl_redis_t *be = c->be;

    if (c->ac != NULL || c->callbacks > 0 || c->holds > 0) {
        return;
    }
    free(c);
    be->conns--;
    rl_redis_maybe_free(be);
}


/* Detach c from the backend: no new command goes to it. Does not free the
 * context; hiredis or rl_redis_conn_release() does. */
static void rl_redis_conn_lost(rl_redis_conn_t *c, const char *reason) {
    rl_redis_t *be = c->be;
    bool was_up = c->state == RL_REDIS_READY;

    if (c->state == RL_REDIS_DEAD) {
        return;
    }
    c->state = RL_REDIS_DEAD;
    if (be->conn != c) {
        return;
    }
    be->conn = NULL;
    uv_timer_stop(&be->connect_timer);
    if (!be->closing) {
        rl_redis_down(be, reason, was_up);
    }
}


/* Free c's context. Outside a hiredis callback this happens now; inside a
 * reply callback hiredis does it when the callback returns. Either way
 * every queued callback runs first with a NULL reply. */
static void rl_redis_conn_release(rl_redis_conn_t *c) {
    redisAsyncContext *ac = c->ac;
    int flags;

    if (ac == NULL || c->freeing) {
        return;
    }
    c->freeing = true;
    flags = ac->c.flags;
    c->holds++;
    redisAsyncFree(ac);
    if (!(flags & REDIS_IN_CALLBACK)) {
        c->ac = NULL;
    }
    c->holds--;
    rl_redis_conn_maybe_free(c);
}


static void rl_redis_conn_kill(rl_redis_conn_t *c, const char *reason) {
    rl_redis_conn_lost(c, reason);
    rl_redis_conn_release(c);
}


/* Queue one command on c; CPS_OK or CPS_UNAVAILABLE. */
static int rl_redis_send(rl_redis_conn_t *c,
                         redisCallbackFn *fn,
                         void *privdata,
                         int argc,
                         const char **argv,
                         const size_t *lens) {
    int64_t now;

    if (c->ac == NULL || c->freeing) {
        return CPS_UNAVAILABLE;
    }
    if (redisAsyncCommandArgv(c->ac, fn, privdata, argc, argv, lens) !=
        REDIS_OK) {
        return CPS_UNAVAILABLE;
    }
    now = clock_mono_ms();
    if (c->callbacks++ == 0) {
        c->progress_ms = now;
    }
    c->io_ms = now;
    return CPS_OK;
}


/* Account for one of our callbacks having been run by hiredis. */
static void rl_redis_replied(rl_redis_conn_t *c) {
    c->callbacks--;
    c->progress_ms = clock_mono_ms();
    c->io_ms = c->progress_ms;
}


/* hiredis's reason for failing ac, or fallback when it gave none. */
static const char *rl_redis_reason(const redisAsyncContext *ac,
                                   const char *fallback) {
    if (ac != NULL && ac->err && ac->errstr != NULL) {
        return ac->errstr;
    }
    return fallback;
}


static void rl_redis_on_connect(const redisAsyncContext *ac, int status) {
    rl_redis_conn_t *c = ac->data;

    if (status == REDIS_OK) {
        return; /* the handshake replies decide when c is ready */
    }
    /* hiredis frees the context as soon as this returns. */
    rl_redis_conn_lost(c, ac->c.errstr[0] ? ac->c.errstr : "connect failed");
    c->ac = NULL;
    rl_redis_conn_maybe_free(c);
}


static void rl_redis_on_disconnect(const redisAsyncContext *ac, int status) {
    rl_redis_conn_t *c = ac->data;

    rl_redis_conn_lost(c, rl_redis_reason(ac, "connection closed"));
    c->ac = NULL;
    rl_redis_conn_maybe_free(c);
}


/* Reply to AUTH or SELECT. */
static void rl_redis_on_setup(redisAsyncContext *ac, void *r, void *priv) {
    rl_redis_conn_t *c = priv;
    redisReply *reply = r;
    char reason[RL_REDIS_ERR_MAX];

    rl_redis_replied(c);
    if (c->state == RL_REDIS_HANDSHAKE) {
        if (reply == NULL) {
            rl_redis_conn_lost(c, rl_redis_reason(ac, "connection lost"));
        } else if (reply->type == REDIS_REPLY_ERROR) {
            snprintf(reason, sizeof(reason), "setup refused: %s", reply->str);
            rl_redis_conn_kill(c, reason);
        }
    }
    rl_redis_conn_maybe_free(c);
}


static bool rl_redis_is_sha(const redisReply *reply) {
    return reply != NULL && reply->type == REDIS_REPLY_STRING &&
           reply->len == RL_REDIS_SHA_LEN;
}


/* The handshake is over: checks may go to c from now on. */
static void rl_redis_ready(rl_redis_conn_t *c, const char *sha) {
    rl_redis_t *be = c->be;

    memcpy(be->sha, sha, RL_REDIS_SHA_LEN);
    be->sha[RL_REDIS_SHA_LEN] = '\0';
    c->state = RL_REDIS_READY;
    uv_timer_stop(&be->connect_timer);
    be->backoff_ms = RL_REDIS_BACKOFF_MIN_MS;
    be->down_logged = false;
    be->last_error[0] = '\0';
    log_info("redis connected host=%s port=%d", be->url.host, be->url.port);
}


/* Reply to the SCRIPT LOAD of the handshake. */
static void rl_redis_on_load(redisAsyncContext *ac, void *r, void *priv) {
    rl_redis_conn_t *c = priv;
    redisReply *reply = r;
    char reason[RL_REDIS_ERR_MAX];

    rl_redis_replied(c);
    if (c->state == RL_REDIS_HANDSHAKE) {
        if (reply == NULL) {
            rl_redis_conn_lost(c, rl_redis_reason(ac, "connection lost"));
        } else if (!rl_redis_is_sha(reply)) {
            snprintf(reason, sizeof(reason), "SCRIPT LOAD failed: %s",
                     reply->type == REDIS_REPLY_ERROR ? reply->str
                                                      : "unexpected reply");
            rl_redis_conn_kill(c, reason);
        } else {
            rl_redis_ready(c, reply->str);
        }
    }
    rl_redis_conn_maybe_free(c);
}


/* Reply to a SCRIPT LOAD sent after NOSCRIPT. */
static void rl_redis_on_reload(redisAsyncContext *ac, void *r, void *priv) {
    rl_redis_conn_t *c = priv;
    redisReply *reply = r;

    rl_redis_replied(c);
    c->reloading = false;
    if (reply == NULL) {
        rl_redis_conn_lost(c, rl_redis_reason(ac, "connection lost"));
    } else if (rl_redis_is_sha(reply)) {
        memcpy(c->be->sha, reply->str, RL_REDIS_SHA_LEN);
    }
    rl_redis_conn_maybe_free(c);
}


static void rl_redis_on_pong(redisAsyncContext *ac, void *r, void *priv) {
    rl_redis_conn_t *c = priv;

    rl_redis_replied(c);
    if (r == NULL) {
        rl_redis_conn_lost(c, rl_redis_reason(ac, "connection lost"));
    }
    rl_redis_conn_maybe_free(c);
}


static void rl_redis_reload(rl_redis_conn_t *c) {
    const char *argv[] = {"SCRIPT", "LOAD", rl_script_source};
    size_t lens[] = {6, 4, rl_script_len()};

    if (c->reloading || c->state != RL_REDIS_READY) {
        return;
    }
    if (rl_redis_send(c, rl_redis_on_reload, c, 3, argv, lens) == CPS_OK) {
        c->reloading = true;
    }
}


/* ---- the libuv adapter, with socket errors passed on ------------------- */

/*
 * The libuv adapter of hiredis 0.14 drops the error status of its poll
 * callback. libuv reports a socket error (a refused connect, a reset) as
 * UV_EBADF and stops the handle; the adapter returns without telling
 * hiredis, which would then wait for the connection timer or the watchdog.
 * These hooks wrap the adapter's own and restart its poll handle with
 * rl_redis_on_poll(), which hands an error to hiredis as the events it was
 * waiting for: its connect check or read then meets the error and fails
 * the context the usual way. The adapter still owns the handle and frees it
 * on cleanup.
 */
static void rl_redis_on_poll(uv_poll_t *handle, int status, int events) {
    redisLibuvEvents *p = handle->data;

    if (status < 0) {
        events = p->events;
    }
    if (p->context != NULL && (events & UV_READABLE)) {
        redisAsyncHandleRead(p->context);
    }
    if (p->context != NULL && (events & UV_WRITABLE)) {
        redisAsyncHandleWrite(p->context);
    }
}


static void rl_redis_repoll(void *privdata) {
    redisLibuvEvents *p = privdata;

    if (p->events != 0) {
        uv_poll_start(&p->handle, p->events, rl_redis_on_poll);
    }
}


static void rl_redis_add_read(void *privdata) {
    redisLibuvAddRead(privdata);
    rl_redis_repoll(privdata);
}


static void rl_redis_del_read(void *privdata) {
    redisLibuvDelRead(privdata);
    rl_redis_repoll(privdata);
}


static void rl_redis_add_write(void *privdata) {
    redisLibuvAddWrite(privdata);
    rl_redis_repoll(privdata);
}


static void rl_redis_del_write(void *privdata) {
    redisLibuvDelWrite(privdata);
    rl_redis_repoll(privdata);
}


static int rl_redis_attach(redisAsyncContext *ac, uv_loop_t *loop) {
    if (redisLibuvAttach(ac, loop) != REDIS_OK) {
        return REDIS_ERR;
    }
    ac->ev.addRead = rl_redis_add_read;
    ac->ev.delRead = rl_redis_del_read;
    ac->ev.addWrite = rl_redis_add_write;
    ac->ev.delWrite = rl_redis_del_write;
    return REDIS_OK;
}


/* Open a new connection to `ip` and queue its handshake. */
static void rl_redis_open(rl_redis_t *be, const char *ip) {
    redisAsyncContext *ac;
    rl_redis_conn_t *c;
    const char *argv[3];
    size_t lens[3];
    int n = 0;
    int failed = 0;

    ac = redisAsyncConnect(ip, be->url.port);
    if (ac == NULL) {
        rl_redis_down(be, "out of memory", false);
        return;
    }
    if (ac->err) {
        rl_redis_down(be, ac->errstr, false);
        redisAsyncFree(ac);
        return;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL || rl_redis_attach(ac, be->loop) != REDIS_OK) {
        /* Not attached: keep hiredis from calling the adapter's hooks. */
        memset(&ac->ev, 0, sizeof(ac->ev));
        redisAsyncFree(ac);
        free(c);
        rl_redis_down(be, "cannot watch the socket", false);
        return;
    }
    c->be = be;
    c->ac = ac;
    c->state = RL_REDIS_HANDSHAKE;
    ac->data = c;
    be->conns++;
    be->conn = c;
    redisEnableKeepAlive(&ac->c);
    redisAsyncSetConnectCallback(ac, rl_redis_on_connect);
    redisAsyncSetDisconnectCallback(ac, rl_redis_on_disconnect);

    if (be->url.password != NULL) {
        argv[n] = "AUTH";
        lens[n++] = 4;
        if (be->url.user != NULL) {
            argv[n] = be->url.user;
            lens[n++] = strlen(be->url.user);
        }
        argv[n] = be->url.password;
        lens[n] = strlen(be->url.password);
        failed |= rl_redis_send(c, rl_redis_on_setup, c, n + 1, argv, lens);
    }
    if (be->url.db >= 0) {
        char db[16];

        snprintf(db, sizeof(db), "%d", be->url.db);
        argv[0] = "SELECT";
        lens[0] = 6;
        argv[1] = db;
        lens[1] = strlen(db);
        failed |= rl_redis_send(c, rl_redis_on_setup, c, 2, argv, lens);
    }
    argv[0] = "SCRIPT";
    lens[0] = 6;
    argv[1] = "LOAD";
    lens[1] = 4;
    argv[2] = rl_script_source;
    lens[2] = rl_script_len();
    failed |= rl_redis_send(c, rl_redis_on_load, c, 3, argv, lens);
    if (failed) {
        rl_redis_conn_kill(c, "cannot queue the handshake");
        return;
    }
    uv_timer_start(&be->connect_timer, rl_redis_on_connect_timeout,
                   be->connect_timeout_ms, 0);
}


static void
rl_redis_on_resolved(uv_getaddrinfo_t *gai, int status, struct addrinfo *res) {
    rl_redis_t *be = gai->data;
    char ip[INET6_ADDRSTRLEN] = "";
    char reason[RL_REDIS_ERR_MAX];

    be->resolving = false;
    if (status == 0 && res != NULL) {
        if (res->ai_family == AF_INET6) {
            uv_ip6_name((const struct sockaddr_in6 *)res->ai_addr, ip,
                        sizeof(ip));
        } else {
            uv_ip4_name((const struct sockaddr_in *)res->ai_addr, ip,
                        sizeof(ip));
        }
    }
    uv_freeaddrinfo(res);
    if (be->closing) {
        rl_redis_maybe_free(be);
    } else if (ip[0] == '\0') {
        snprintf(reason, sizeof(reason), "cannot resolve %.64s: %s",
                 be->url.host, status ? uv_strerror(status) : "no address");
        rl_redis_down(be, reason, false);
    } else {
        rl_redis_open(be, ip);
    }
}


static bool rl_redis_is_numeric(const char *host) {
    unsigned char buf[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, host, buf) == 1 ||
           inet_pton(AF_INET6, host, buf) == 1;
}


/* Start a connection attempt: resolve the host if it is a name, then
 * open a context. */
static void rl_redis_connect(rl_redis_t *be) {
    struct addrinfo hints;
    int rc;

    if (be->conn != NULL || be->closing || be->resolving) {
        return;
    }
    uv_timer_stop(&be->retry_timer);
    if (rl_redis_is_numeric(be->url.host)) {
        rl_redis_open(be, be->url.host);
        return;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    be->gai.data = be;
    rc = uv_getaddrinfo(be->loop, &be->gai, rl_redis_on_resolved, be->url.host,
                        NULL, &hints);
    if (rc != 0) {
        rl_redis_down(be, uv_strerror(rc), false);
        return;
    }
    be->resolving = true;
}


static void rl_redis_on_retry(uv_timer_t *timer) {
    rl_redis_connect(timer->data);
}


/* Connect plus handshake took too long: abandon this context. */
static void rl_redis_on_connect_timeout(uv_timer_t *timer) {
    rl_redis_t *be = timer->data;

    if (be->conn != NULL && be->conn->state == RL_REDIS_HANDSHAKE) {
        rl_redis_conn_kill(be->conn, "connect timed out");
    }
}


/* Periodic: PING an idle connection, drop one that stopped answering. */
static void rl_redis_on_watchdog(uv_timer_t *timer) {
    rl_redis_t *be = timer->data;
    rl_redis_conn_t *c = be->conn;
    const char *argv[] = {"PING"};
    size_t lens[] = {4};
    int64_t now = clock_mono_ms();

    if (c == NULL || c->state != RL_REDIS_READY) {
        return;
    }
    if (c->callbacks > 0 && now - c->progress_ms >= RL_REDIS_STALL_MS) {
        rl_redis_conn_kill(c, "no reply from redis");
        return;
    }
    if (c->callbacks == 0 && now - c->io_ms >= RL_REDIS_PING_IDLE_MS) {
        if (rl_redis_send(c, rl_redis_on_pong, c, 1, argv, lens) != CPS_OK) {
            rl_redis_conn_kill(c, "cannot send PING");
        }
    }
}


/* ---- checks ---------------------------------------------------------- */

static void rl_redis_req_closed(uv_handle_t *handle) {
    rl_redis_req_t *q = handle->data;
    rl_redis_t *be = q->be;

    free(q);
    be->reqs--;
    rl_redis_maybe_free(be);
}


/* Free q once it has been answered and hiredis no longer refers to it. */
static void rl_redis_req_done(rl_redis_req_t *q) {
    if (!q->answered || q->in_redis || q->closing) {
        return;
    }
    q->closing = true;
    uv_close((uv_handle_t *)&q->timer, rl_redis_req_closed);
}


/* Give q its one answer; later answers (a late reply) are dropped. res
 * holds q->n results when status is CPS_OK. */
static void rl_redis_answer(rl_redis_req_t *q,
                            int status,
                            const rl_result_t *res,
                            const char *msg) {
    if (q->answered) {
        return;
    }
    q->answered = true;
    uv_timer_stop(&q->timer);
    if (q->many_cb != NULL) {
        q->many_cb(q->arg, status, res, res != NULL ? q->n : 0, msg);
    } else {
        q->cb(q->arg, status, res, msg);
    }
}


static void rl_redis_on_timeout(uv_timer_t *timer) {
    rl_redis_req_t *q = timer->data;

    rl_redis_answer(q, CPS_DEADLINE_EXCEEDED, NULL,
                    "redis did not answer in time");
    rl_redis_req_done(q);
}


static void rl_redis_on_reply(redisAsyncContext *ac, void *r, void *priv);


/* Send q's script call on c, by SHA or (eval) in full. */
static int rl_redis_req_send(rl_redis_req_t *q, rl_redis_conn_t *c, bool eval) {
    q->argv[0] = eval ? "EVAL" : "EVALSHA";
    q->lens[0] = eval ? 4 : 7;
    q->argv[1] = eval ? rl_script_source : q->be->sha;
    q->lens[1] = eval ? rl_script_len() : RL_REDIS_SHA_LEN;
    if (rl_redis_send(c, rl_redis_on_reply, q, q->argc, q->argv, q->lens) !=
        CPS_OK) {
        return CPS_UNAVAILABLE;
    }
    q->conn = c;
    q->in_redis = true;
    return CPS_OK;
}


/* Errors that say "this server cannot serve now" rather than "bug". */
static int rl_redis_error_status(const char *err) {
    static const char *const busy[] = {"LOADING",    "BUSY",     "READONLY",
                                       "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN",
                                       "NOREPLICAS", "OOM"};

    for (size_t i = 0; i < sizeof(busy) / sizeof(busy[0]); i++) {
        size_t n = strlen(busy[i]);

        if (strncmp(err, busy[i], n) == 0 && (err[n] == ' ' || !err[n])) {
            return CPS_UNAVAILABLE;
        }
    }
    return CPS_INTERNAL;
}


/* Turn the script's reply, four integers per key, into results, or into an
 * error if it is malformed. */
static void rl_redis_answer_reply(rl_redis_req_t *q, const redisReply *r) {
    rl_result_t res[RL_MANY_MAX];
    long long v[4];

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 4 * q->n) {
        goto bad;
    }
    for (size_t k = 0; k < q->n; k++) {
        for (int i = 0; i < 4; i++) {
            const redisReply *e = r->element[4 * k + (size_t)i];

            /* The script never returns a negative number, not even when
             * the server's clock steps back: one would be a broken
             * script. */
            if (e->type != REDIS_REPLY_INTEGER || e->integer < 0) {
                goto bad;
            }
            v[i] = e->integer;
        }
        res[k].allowed = v[0] == 1;
        res[k].limit = q->limits[k];
        res[k].remaining = (uint64_t)v[1];
        res[k].reset_after_ms = (uint64_t)v[2];
        res[k].retry_after_ms = (uint64_t)v[3];
    }
    rl_redis_answer(q, CPS_OK, res, NULL);
    return;

bad:
    rl_redis_answer(q, CPS_INTERNAL, NULL,
                    "unexpected reply from the rate-limit script");
}


static void rl_redis_on_reply(redisAsyncContext *ac, void *r, void *priv) {
    rl_redis_req_t *q = priv;
    rl_redis_conn_t *c = q->conn;
    redisReply *reply = r;
    char msg[RL_REDIS_ERR_MAX];

    c->holds++;
    rl_redis_replied(c);
    q->in_redis = false;

    if (reply == NULL) {
        rl_redis_conn_lost(c, rl_redis_reason(ac, "connection lost"));
        rl_redis_answer(q, CPS_UNAVAILABLE, NULL,
                        q->be->closing ? "rate-limit backend closed"
                                       : "redis connection lost");
    } else if (reply->type != REDIS_REPLY_ERROR) {
        rl_redis_answer_reply(q, reply);
    } else if (strncmp(reply->str, "NOSCRIPT", 8) == 0 && !q->retried &&
               !q->answered) {
        /* The script cache was emptied: run this request from source and
         * reload the script for the next ones. */
        q->retried = true;
        rl_redis_reload(c);
        if (c->state != RL_REDIS_READY ||
            rl_redis_req_send(q, c, true) != CPS_OK) {
            rl_redis_answer(q, CPS_UNAVAILABLE, NULL, "redis unreachable");
        }
    } else {
        snprintf(msg, sizeof(msg), "redis: %s", reply->str);
        rl_redis_answer(q, rl_redis_error_status(reply->str), NULL, msg);
    }

    rl_redis_req_done(q);
    c->holds--;
    rl_redis_conn_maybe_free(c);
}


static size_t rl_redis_align(size_t off, size_t to) {
    return (off + to - 1) / to * to;
}


/*
 * A request for the n checks of reqs, with every argument of its script
 * call laid out in one allocation; NULL when out of memory.
 */
static rl_redis_req_t *
rl_redis_req_new(rl_redis_t *be, const rl_request_t *reqs, size_t n) {
    int argc = RL_REDIS_ARGC(n);
    size_t off_lens, off_limits, off_strs, size;
    rl_redis_req_t *q;
    char *p;
    int a = 3;

    off_lens = rl_redis_align((size_t)argc * sizeof(char *), _Alignof(size_t));
    off_limits = rl_redis_align(off_lens + (size_t)argc * sizeof(size_t),
                                _Alignof(uint64_t));
    off_strs = off_limits + n * sizeof(uint64_t);
    size = off_strs + 3 * n * RL_REDIS_U64_LEN;
    for (size_t i = 0; i < n; i++) {
        size += be->prefix_len + reqs[i].key_len;
    }
    q = calloc(1, sizeof(*q) + size);
    if (q == NULL) {
        return NULL;
    }
    q->be = be;
    q->n = n;
    q->argc = argc;
    q->argv = (const char **)(void *)q->mem;
    q->lens = (size_t *)(void *)((char *)q->mem + off_lens);
    q->limits = (uint64_t *)(void *)((char *)q->mem + off_limits);
    p = (char *)q->mem + off_strs;

    snprintf(q->numkeys, sizeof(q->numkeys), "%zu", n);
    q->argv[2] = q->numkeys;
    q->lens[2] = strlen(q->numkeys);
    for (size_t i = 0; i < n; i++) {
        q->argv[a] = p;
        q->lens[a++] = be->prefix_len + reqs[i].key_len;
        memcpy(p, be->prefix, be->prefix_len);
        memcpy(p + be->prefix_len, reqs[i].key, reqs[i].key_len);
        p += be->prefix_len + reqs[i].key_len;
    }
    for (size_t i = 0; i < n; i++) {
        const uint64_t v[3] = {reqs[i].limit, reqs[i].window_ms, reqs[i].cost};

        q->limits[i] = reqs[i].limit;
        for (int k = 0; k < 3; k++) {
            int len = snprintf(p, RL_REDIS_U64_LEN, "%" PRIu64, v[k]);

            q->argv[a] = p;
            q->lens[a++] = (size_t)len;
            p += RL_REDIS_U64_LEN;
        }
    }
    snprintf(q->id, sizeof(q->id), "%s:%" PRIu64, be->instance, ++be->seq);
    q->argv[a] = q->id;
    q->lens[a] = strlen(q->id);
    return q;
}


/* Send one script call for the n checks of reqs; the answer goes to cb
 * (single check) or many_cb. */
static int rl_redis_start(rl_redis_t *be,
                          const rl_request_t *reqs,
                          size_t n,
                          rl_done_cb cb,
                          rl_many_done_cb many_cb,
                          void *arg) {
    rl_redis_conn_t *c = be->conn;
    rl_redis_req_t *q;
    uint32_t timeout =
        reqs[0].timeout_ms ? reqs[0].timeout_ms : RL_REDIS_TIMEOUT_MS;

    if (be->closing || c == NULL || c->state != RL_REDIS_READY) {
        if (many_cb != NULL) {
            many_cb(arg, CPS_UNAVAILABLE, NULL, 0, "redis unreachable");
        } else {
            cb(arg, CPS_UNAVAILABLE, NULL, "redis unreachable");
        }
        return CPS_OK;
    }
    q = rl_redis_req_new(be, reqs, n);
    if (q == NULL) {
        return CPS_RESOURCE_EXHAUSTED;
    }
    q->cb = cb;
    q->many_cb = many_cb;
    q->arg = arg;
    uv_timer_init(be->loop, &q->timer);
    q->timer.data = q;
    be->reqs++;

    if (rl_redis_req_send(q, c, false) != CPS_OK) {
        rl_redis_answer(q, CPS_UNAVAILABLE, NULL, "redis unreachable");
        rl_redis_req_done(q);
        return CPS_OK;
    }
    uv_timer_start(&q->timer, rl_redis_on_timeout, timeout, 0);
    return CPS_OK;
}


static int rl_redis_check(rl_backend_t *base,
                          const rl_request_t *req,
                          rl_done_cb cb,
                          void *arg) {
    return rl_redis_start((rl_redis_t *)base, req, 1, cb, NULL, arg);
}


static int rl_redis_check_many(rl_backend_t *base,
                               const rl_request_t *reqs,
                               size_t n,
                               rl_many_done_cb cb,
                               void *arg) {
    if (!rl_many_valid(reqs, n, NULL, NULL)) {
        return CPS_INVALID_ARGUMENT;
    }
    return rl_redis_start((rl_redis_t *)base, reqs, n, NULL, cb, arg);
}


static bool rl_redis_is_up(rl_backend_t *base, char *detail, size_t len) {
    rl_redis_t *be = (rl_redis_t *)base;

    if (be->conn != NULL && be->conn->state == RL_REDIS_READY) {
        return true;
    }
    if (detail != NULL && len > 0) {
        snprintf(detail, len, "redis unreachable: %s",
                 be->last_error[0] ? be->last_error : "connecting");
    }
    return false;
}


static void rl_redis_close(rl_backend_t *base) {
    rl_redis_t *be = (rl_redis_t *)base;

    be->closing = true;
    uv_close((uv_handle_t *)&be->connect_timer, rl_redis_handle_closed);
    uv_close((uv_handle_t *)&be->retry_timer, rl_redis_handle_closed);
    uv_close((uv_handle_t *)&be->watchdog, rl_redis_handle_closed);
    if (be->resolving) {
        uv_cancel((uv_req_t *)&be->gai);
    }
    if (be->conn != NULL) {
        rl_redis_conn_kill(be->conn, "closed");
    }
}


static const rl_backend_ops_t rl_redis_ops = {
    .kind = "redis",
    .check = rl_redis_check,
    .check_many = rl_redis_check_many,
    .is_up = rl_redis_is_up,
    .close = rl_redis_close,
};


/* ---- construction ---------------------------------------------------- */

rl_backend_t *rl_redis_new(uv_loop_t *loop,
                           const rl_redis_config_t *cfg,
                           char *err,
                           size_t err_len) {
    rl_redis_t *be = calloc(1, sizeof(*be));
    const char *why;
    uint8_t rnd[16];

    if (be == NULL) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    why = rl_redis_url_parse(cfg->url, &be->url);
    if (why != NULL) {
        snprintf(err, err_len, "invalid Redis URL: %s", why);
        rl_redis_free(be);
        return NULL;
    }
    be->prefix = strdup(cfg->prefix ? cfg->prefix : RL_REDIS_PREFIX_DEFAULT);
    if (be->prefix == NULL || crypto_random_bytes(rnd, sizeof(rnd)) != 0) {
        snprintf(err, err_len, "cannot set up the Redis backend");
        rl_redis_free(be);
        return NULL;
    }
    be->prefix_len = strlen(be->prefix);
    crypto_hex(rnd, sizeof(rnd), be->instance);
    be->base.ops = &rl_redis_ops;
    be->loop = loop;
    be->connect_timeout_ms = cfg->connect_timeout_ms
                                 ? cfg->connect_timeout_ms
                                 : RL_REDIS_CONNECT_TIMEOUT_MS;
    be->backoff_ms = RL_REDIS_BACKOFF_MIN_MS;

    uv_timer_init(loop, &be->connect_timer);
    uv_timer_init(loop, &be->retry_timer);
    uv_timer_init(loop, &be->watchdog);
    be->connect_timer.data = be;
    be->retry_timer.data = be;
    be->watchdog.data = be;
    be->handles = 3;
    uv_timer_start(&be->watchdog, rl_redis_on_watchdog, RL_REDIS_WATCHDOG_MS,
                   RL_REDIS_WATCHDOG_MS);
    uv_unref((uv_handle_t *)&be->watchdog);

    rl_redis_connect(be);
    return &be->base;
}
