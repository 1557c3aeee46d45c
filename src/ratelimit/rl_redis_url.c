#include "rl_redis_url.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crypto.h"

#define RL_REDIS_URL_PORT_DEFAULT 6379
#define RL_REDIS_URL_SECRET_MAX   512
#define RL_REDIS_URL_DB_MAX       1000000


static int rl_redis_url_hexval(char ch) {
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }
    if (ch >= 'A' && ch <= 'F') {
        return ch - 'A' + 10;
    }
    return -1;
}


/* Percent-decode s[0..n) into a new string; NULL if it is malformed, holds
 * %00, or is longer than RL_REDIS_URL_SECRET_MAX. */
static char *rl_redis_url_unescape(const char *s, size_t n) {
    char *out;
    size_t o = 0;

    if (n > RL_REDIS_URL_SECRET_MAX) {
        return NULL;
    }
    out = malloc(n + 1);
    if (out == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        int hi;
        int lo;

        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }
        hi = i + 2 < n ? rl_redis_url_hexval(s[i + 1]) : -1;
        lo = i + 2 < n ? rl_redis_url_hexval(s[i + 2]) : -1;
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
            crypto_cleanse(out, n + 1);
            free(out);
            return NULL;
        }
        out[o++] = (char)(hi * 16 + lo);
        i += 2;
    }
    out[o] = '\0';
    return out;
}


static bool rl_redis_url_host_ok(const char *host) {
    if (host[0] == '\0') {
        return false;
    }
    for (const char *p = host; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' || *p == '_' ||
              *p == ':')) {
            return false;
        }
    }
    return true;
}


/* Parse the digits s[0..n) into *out; false unless 0 <= value <= max. */
static bool rl_redis_url_number(const char *s, size_t n, long max, long *out) {
    long v = 0;

    if (n == 0 || n > 9) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return v <= max;
}


/* "[user]:password" in s[0..n). */
static const char *
rl_redis_url_userinfo(rl_redis_url_t *u, const char *s, size_t n) {
    const char *colon = memchr(s, ':', n);

    if (colon == NULL) {
        return "user info must be :password or user:password";
    }
    if (colon > s) {
        u->user = rl_redis_url_unescape(s, (size_t)(colon - s));
        if (u->user == NULL) {
            return "bad user name";
        }
    }
    u->password = rl_redis_url_unescape(colon + 1, (size_t)(s + n - colon - 1));
    if (u->password == NULL || u->password[0] == '\0') {
        return "bad or empty password";
    }
    return NULL;
}


/* "host", "host:port", "[v6]" or "[v6]:port" in s[0..n). */
static const char *
rl_redis_url_hostport(rl_redis_url_t *u, const char *s, size_t n) {
    const char *end = s + n;
    const char *host = s;
    const char *host_end;
    const char *rest;
    long port = RL_REDIS_URL_PORT_DEFAULT;

    if (n > 0 && s[0] == '[') {
        host = s + 1;
        host_end = memchr(host, ']', (size_t)(end - host));
        if (host_end == NULL) {
            return "unterminated [ in the host";
        }
        rest = host_end + 1;
    } else {
        host_end = memchr(s, ':', n);
        host_end = host_end ? host_end : end;
        rest = host_end;
    }
    if (host_end - host > RL_REDIS_URL_HOST_MAX) {
        return "host name too long";
    }
    memcpy(u->host, host, (size_t)(host_end - host));
    u->host[host_end - host] = '\0';
    if (!rl_redis_url_host_ok(u->host)) {
        return "bad or missing host";
    }
    if (rest < end) {
        if (*rest != ':' ||
            !rl_redis_url_number(rest + 1, (size_t)(end - rest - 1), 65535,
                                 &port) ||
            port == 0) {
            return "bad port";
        }
    }
    u->port = (int)port;
    return NULL;
}


static const char *rl_redis_url_parse_into(const char *url, rl_redis_url_t *u) {
    const char *p;
    const char *auth_end;
    const char *at = NULL;
    const char *why;
    long db;

    if (url == NULL) {
        return "no URL";
    }
    if (strncasecmp(url, "rediss://", 9) == 0) {
        return "TLS (rediss://) is not supported";
    }
    if (strncasecmp(url, "redis://", 8) != 0) {
        return "it must start with redis://";
    }
    p = url + 8;
    auth_end = p + strcspn(p, "/?#");
    for (const char *s = p; s < auth_end; s++) {
        if (*s == '@') {
            at = s;
        }
    }
    if (at != NULL) {
        why = rl_redis_url_userinfo(u, p, (size_t)(at - p));
        if (why != NULL) {
            return why;
        }
        p = at + 1;
    }
    why = rl_redis_url_hostport(u, p, (size_t)(auth_end - p));
    if (why != NULL) {
        return why;
    }
    if (*auth_end == '/' && auth_end[1] != '\0') {
        if (!rl_redis_url_number(auth_end + 1, strlen(auth_end + 1),
                                 RL_REDIS_URL_DB_MAX, &db)) {
            return "bad database number";
        }
        u->db = (int)db;
    } else if (*auth_end != '\0' && strcmp(auth_end, "/") != 0) {
        return "unexpected text after the host";
    }
    return NULL;
}


const char *rl_redis_url_parse(const char *url, rl_redis_url_t *u) {
    const char *why;

    memset(u, 0, sizeof(*u));
    u->db = -1;
    why = rl_redis_url_parse_into(url, u);
    if (why != NULL) {
        rl_redis_url_free(u);
    }
    return why;
}


void rl_redis_url_free(rl_redis_url_t *u) {
    if (u->password != NULL) {
        crypto_cleanse(u->password, strlen(u->password));
    }
    free(u->password);
    free(u->user);
    u->password = NULL;
    u->user = NULL;
}
