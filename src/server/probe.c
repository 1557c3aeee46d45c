/*
 * Redis probe on hiredis's blocking API: connect with a timeout, AUTH and
 * SELECT as the URL says, then PING. Only used before the loop runs.
 */
#include "probe.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <string.h>

#include "rl_redis_url.h"
#include "status.h"


/* Run one command; CPS_OK when the reply is not an error. */
static int probe_command(
    redisContext *rc, int argc, const char **argv, char *err, size_t err_len) {
    redisReply *reply = redisCommandArgv(rc, argc, argv, NULL);
    int status = CPS_OK;

    if (reply == NULL) {
        snprintf(err, err_len, "redis %s: %s", argv[0],
                 rc->errstr[0] ? rc->errstr : "no reply");
        return CPS_UNAVAILABLE;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        /* The error text is the server's, never our arguments. */
        snprintf(err, err_len, "redis %s: %.*s", argv[0], (int)reply->len,
                 reply->str);
        status = CPS_UNAVAILABLE;
    }
    freeReplyObject(reply);
    return status;
}


int probe_redis(const char *url, int timeout_ms, char *err, size_t err_len) {
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    rl_redis_url_t u;
    redisContext *rc;
    const char *why;
    int status = CPS_OK;
    char db[16];

    why = rl_redis_url_parse(url, &u);
    if (why != NULL) {
        snprintf(err, err_len, "--redis: %s", why);
        return CPS_INVALID_ARGUMENT;
    }
    rc = redisConnectWithTimeout(u.host, u.port, tv);
    if (rc == NULL || rc->err) {
        snprintf(err, err_len, "redis at %s:%d is not reachable: %s", u.host,
                 u.port, rc ? rc->errstr : "out of memory");
        redisFree(rc);
        rl_redis_url_free(&u);
        return CPS_UNAVAILABLE;
    }
    redisSetTimeout(rc, tv);

    if (u.password != NULL) {
        const char *auth[] = {"AUTH", u.user ? u.user : u.password, u.password};

        status = probe_command(rc, u.user ? 3 : 2, auth, err, err_len);
    }
    if (status == CPS_OK && u.db >= 0) {
        const char *sel[] = {"SELECT", db};

        snprintf(db, sizeof(db), "%d", u.db);
        status = probe_command(rc, 2, sel, err, err_len);
    }
    if (status == CPS_OK) {
        const char *ping[] = {"PING"};

        status = probe_command(rc, 1, ping, err, err_len);
    }
    redisFree(rc);
    rl_redis_url_free(&u);
    return status;
}
