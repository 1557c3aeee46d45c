/*
 * Redis URLs: redis://[[user]:password@]host[:port][/db].
 *
 * The host is a name, an IPv4 address or a bracketed IPv6 address; the port
 * defaults to 6379; user and password are percent-decoded (a password with
 * '@', ':' or '/' must be written %40, %3A, %2F). "rediss://" is refused:
 * hiredis 0.14 has no TLS.
 */
#ifndef CPSTORE_RL_REDIS_URL_H
#define CPSTORE_RL_REDIS_URL_H

#define RL_REDIS_URL_HOST_MAX 255

typedef struct rl_redis_url {
    char host[RL_REDIS_URL_HOST_MAX + 1];
    int port;
    char *user;     /* owned; NULL: AUTH with the password alone */
    char *password; /* owned; NULL: no AUTH */
    int db;         /* -1: no SELECT */
} rl_redis_url_t;

/*
 * Parse url into *u. Returns NULL on success, and u then owns user and
 * password (free them with rl_redis_url_free()). On failure returns a
 * short reason that never quotes the URL, which may hold a password, and
 * *u owns nothing.
 */
const char *rl_redis_url_parse(const char *url, rl_redis_url_t *u);

/* Free what u owns, wiping the password first. u may be reused after. */
void rl_redis_url_free(rl_redis_url_t *u);

#endif
