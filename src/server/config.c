/*
 * Flag and environment parsing for cpstored.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apikeys.h"
#include "duration.h"
#include "log.h"
#include "status.h"

/* A secret shorter than this is refused: it would be guessable. */
#define CFG_SECRET_MIN 32
#define CFG_SECRET_MAX 4096

enum {
    OPT_CONFIG = 256,
    OPT_LISTEN,
    OPT_REDIS,
    OPT_REDIS_PREFIX,
    OPT_MONGO,
    OPT_MONGO_DB,
    OPT_PROFILE,
    OPT_SECRET_FILE,
    OPT_KEY_PREFIX,
    OPT_LOG_LEVEL,
    OPT_WORKERS,
    OPT_MAX_PAYLOAD,
    OPT_MAX_IN_FLIGHT,
    OPT_MAX_CONNECTIONS,
    OPT_REQUEST_TIMEOUT,
    OPT_IDLE_TIMEOUT,
    OPT_FRAME_TIMEOUT,
    OPT_DRAIN_TIMEOUT,
};

/* Each option with its environment variable, in --help order. */
typedef struct cfg_opt {
    const char *name;
    int id;
    const char *env;
    const char *arg;
    const char *help;
} cfg_opt_t;

static const cfg_opt_t cfg_opts[] = {
    {"config", OPT_CONFIG, "CPSTORE_CONFIG", "PATH",
     "configuration file: policies, token kinds, sessions (reloaded on "
     "SIGHUP)"},
    {"listen", OPT_LISTEN, "CPSTORE_LISTEN", "ADDR",
     "host:port or unix:/path to serve on (default 127.0.0.1:7300)"},
    {"redis", OPT_REDIS, "CPSTORE_REDIS_URL", "URL",
     "redis://[[user]:password@]host[:port][/db] for rate limits"},
    {"redis-prefix", OPT_REDIS_PREFIX, "CPSTORE_REDIS_PREFIX", "TEXT",
     "prefix of every Redis key (default cpstore:rl:)"},
    {"mongo", OPT_MONGO, "CPSTORE_MONGO_URI", "URI",
     "mongodb:// URI for API keys, tokens and sessions"},
    {"mongo-db", OPT_MONGO_DB, "CPSTORE_MONGO_DB", "NAME",
     "database name (default: the URI's, else cpstore)"},
    {"profile", OPT_PROFILE, "CPSTORE_PROFILE", "NAME",
     "dev (default) or production"},
    {"secret-file", OPT_SECRET_FILE, "CPSTORE_SECRET_FILE", "PATH",
     "file holding the server secret (CPSTORE_SECRET may hold it instead)"},
    {"key-prefix", OPT_KEY_PREFIX, "CPSTORE_KEY_PREFIX", "TEXT",
     "API key prefix (default cpk_live in production, cpk_dev otherwise)"},
    {"log-level", OPT_LOG_LEVEL, "CPSTORE_LOG_LEVEL", "LEVEL",
     "debug, info (default), warn or error"},
    {"workers", OPT_WORKERS, "CPSTORE_WORKERS", "N",
     "threads for database calls (default 4)"},
    {"max-payload", OPT_MAX_PAYLOAD, "CPSTORE_MAX_PAYLOAD", "BYTES",
     "largest frame payload accepted (default 1048576)"},
    {"max-in-flight", OPT_MAX_IN_FLIGHT, "CPSTORE_MAX_IN_FLIGHT", "N",
     "requests in flight per connection (default 1024)"},
    {"max-connections", OPT_MAX_CONNECTIONS, "CPSTORE_MAX_CONNECTIONS", "N",
     "open connections (default 4096)"},
    {"request-timeout", OPT_REQUEST_TIMEOUT, "CPSTORE_REQUEST_TIMEOUT", "DUR",
     "deadline of a request that brings none, and the ceiling of a "
     "caller's budget (default 5s)"},
    {"idle-timeout", OPT_IDLE_TIMEOUT, "CPSTORE_IDLE_TIMEOUT", "DUR",
     "close connections idle this long, 0 never (default 5m)"},
    {"frame-timeout", OPT_FRAME_TIMEOUT, "CPSTORE_FRAME_TIMEOUT", "DUR",
     "time a client gets to finish a frame it started (default 10s)"},
    {"drain-timeout", OPT_DRAIN_TIMEOUT, "CPSTORE_DRAIN_TIMEOUT", "DUR",
     "time calls in flight get to finish on shutdown (default 10s)"},
};

#define CFG_NOPTS (sizeof(cfg_opts) / sizeof(cfg_opts[0]))


void cfg_usage(FILE *out) {
    fprintf(out,
            "usage: cpstored [options]\n\n"
            "cpstore's control-plane state server: rate limits, API keys, "
            "single-use\ntokens and sessions over the cpstore frame "
            "protocol. With no --redis and\nno --mongo it runs on in-memory "
            "backends, where nothing is durable.\n\noptions (each also read "
            "from the environment "
            "variable shown):\n");
    for (size_t i = 0; i < CFG_NOPTS; i++) {
        char left[64];

        snprintf(left, sizeof(left), "--%s %s", cfg_opts[i].name,
                 cfg_opts[i].arg);
        fprintf(out, "  %-26s %s\n  %-26s [%s]\n", left, cfg_opts[i].help, "",
                cfg_opts[i].env);
    }
    fprintf(out, "  %-26s %s\n  %-26s %s\n", "-h, --help", "show this help",
            "--version", "print the version");
}


static int cfg_u32(const char *name,
                   const char *v,
                   uint32_t min,
                   uint32_t max,
                   uint32_t *out,
                   char *err,
                   size_t err_len) {
    char *end;
    unsigned long long n;

    errno = 0;
    n = strtoull(v, &end, 10);
    if (errno != 0 || *v == '\0' || *end != '\0' || v[0] == '-' || n < min ||
        n > max) {
        snprintf(err, err_len,
                 "--%s: expected a whole number from %u to %u, "
                 "got \"%s\"",
                 name, min, max, v);
        return -1;
    }
    *out = (uint32_t)n;
    return 0;
}


static int cfg_dur(const char *name,
                   const char *v,
                   uint64_t max_ms,
                   uint32_t *out,
                   char *err,
                   size_t err_len) {
    uint64_t ms;

    if (duration_parse(v, &ms) != CPS_OK || ms > max_ms) {
        snprintf(err, err_len,
                 "--%s: expected a duration like 250ms, 10s "
                 "or 5m, got \"%s\"",
                 name, v);
        return -1;
    }
    *out = (uint32_t)ms;
    return 0;
}


static int
cfg_set(cfg_t *cfg, int id, const char *v, char *err, size_t err_len) {
    uint32_t n;
    int level;

    switch (id) {
    case OPT_CONFIG:
        cfg->config_path = *v ? v : NULL;
        return 0;
    case OPT_LISTEN:
        cfg->srv.listen = v;
        return 0;
    case OPT_REDIS:
        cfg->redis_url = *v ? v : NULL;
        return 0;
    case OPT_REDIS_PREFIX:
        /* A '{' would start a hash tag and pin every key to one slot. */
        if (strlen(v) > 64 || strchr(v, '{') != NULL ||
            strchr(v, '}') != NULL) {
            snprintf(err, err_len,
                     "--redis-prefix: at most 64 bytes and no "
                     "'{' or '}'");
            return -1;
        }
        cfg->redis_prefix = v;
        return 0;
    case OPT_MONGO:
        cfg->mongo_uri = *v ? v : NULL;
        return 0;
    case OPT_MONGO_DB:
        cfg->mongo_db = *v ? v : NULL;
        return 0;
    case OPT_PROFILE:
        if (strcmp(v, "dev") == 0) {
            cfg->profile = CFG_PROFILE_DEV;
        } else if (strcmp(v, "production") == 0) {
            cfg->profile = CFG_PROFILE_PRODUCTION;
        } else {
            snprintf(err, err_len,
                     "--profile: expected dev or production, "
                     "got \"%s\"",
                     v);
            return -1;
        }
        return 0;
    case OPT_SECRET_FILE:
        cfg->secret_file = *v ? v : NULL;
        return 0;
    case OPT_KEY_PREFIX:
        cfg->key_prefix = v;
        return 0;
    case OPT_LOG_LEVEL:
        level = log_level_parse(v);
        if (level < 0) {
            snprintf(err, err_len,
                     "--log-level: expected debug, info, warn "
                     "or error, got \"%s\"",
                     v);
            return -1;
        }
        cfg->log_level = level;
        return 0;
    case OPT_WORKERS:
        if (cfg_u32("workers", v, 1, 64, &n, err, err_len) != 0) {
            return -1;
        }
        cfg->workers = (int)n;
        return 0;
    case OPT_MAX_PAYLOAD:
        return cfg_u32("max-payload", v, 1024, 64u << 20, &cfg->srv.max_payload,
                       err, err_len);
    case OPT_MAX_IN_FLIGHT:
        return cfg_u32("max-in-flight", v, 1, 1u << 20, &cfg->srv.max_in_flight,
                       err, err_len);
    case OPT_MAX_CONNECTIONS:
        return cfg_u32("max-connections", v, 1, 1u << 20,
                       &cfg->srv.max_connections, err, err_len);
    case OPT_REQUEST_TIMEOUT:
        if (cfg_dur("request-timeout", v, 3600000, &n, err, err_len) != 0) {
            return -1;
        }
        if (n == 0) {
            snprintf(err, err_len, "--request-timeout must be above 0");
            return -1;
        }
        cfg->srv.request_timeout_ms = n;
        return 0;
    case OPT_IDLE_TIMEOUT:
        return cfg_dur("idle-timeout", v, 86400000, &cfg->srv.idle_timeout_ms,
                       err, err_len);
    case OPT_FRAME_TIMEOUT:
        if (cfg_dur("frame-timeout", v, 3600000, &n, err, err_len) != 0) {
            return -1;
        }
        if (n == 0) {
            snprintf(err, err_len, "--frame-timeout must be above 0");
            return -1;
        }
        cfg->srv.frame_timeout_ms = n;
        return 0;
    case OPT_DRAIN_TIMEOUT:
        return cfg_dur("drain-timeout", v, 3600000, &cfg->srv.drain_timeout_ms,
                       err, err_len);
    default:
        snprintf(err, err_len, "unknown option");
        return -1;
    }
}


static bool cfg_prefix_ok(const char *p) {
    size_t n = strlen(p);

    if (n == 0 || n > AK_PREFIX_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '_')) {
            return false;
        }
    }
    return true;
}


int cfg_parse(cfg_t *cfg, int argc, char **argv, char *err, size_t err_len) {
    struct option longopts[CFG_NOPTS + 3];
    int ch;

    memset(cfg, 0, sizeof(*cfg));
    srv_config_defaults(&cfg->srv);
    cfg->redis_prefix = "cpstore:rl:";
    cfg->log_level = LOG_INFO;
    cfg->workers = 4;
    cfg->secret_env = getenv("CPSTORE_SECRET");

    for (size_t i = 0; i < CFG_NOPTS; i++) {
        const char *v = getenv(cfg_opts[i].env);

        if (v != NULL && cfg_set(cfg, cfg_opts[i].id, v, err, err_len) != 0) {
            size_t n = strlen(err);

            snprintf(err + n, err_len - n, " (from %s)", cfg_opts[i].env);
            return -1;
        }
        longopts[i].name = cfg_opts[i].name;
        longopts[i].has_arg = required_argument;
        longopts[i].flag = NULL;
        longopts[i].val = cfg_opts[i].id;
    }
    longopts[CFG_NOPTS] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[CFG_NOPTS + 1] =
        (struct option){"version", no_argument, NULL, 'V'};
    longopts[CFG_NOPTS + 2] = (struct option){NULL, 0, NULL, 0};

    opterr = 0;
    optind = 1;
    while ((ch = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (ch == 'h') {
            cfg->help = true;
        } else if (ch == 'V') {
            cfg->version = true;
        } else if (ch == ':') {
            snprintf(err, err_len, "%s needs a value", argv[optind - 1]);
            return -1;
        } else if (ch == '?') {
            snprintf(err, err_len, "unknown option %s", argv[optind - 1]);
            return -1;
        } else if (cfg_set(cfg, ch, optarg, err, err_len) != 0) {
            return -1;
        }
    }
    if (optind < argc) {
        snprintf(err, err_len, "unexpected argument \"%s\"", argv[optind]);
        return -1;
    }
    if (cfg->key_prefix == NULL) {
        cfg->key_prefix =
            cfg->profile == CFG_PROFILE_PRODUCTION ? "cpk_live" : "cpk_dev";
    }
    if (!cfg_prefix_ok(cfg->key_prefix)) {
        snprintf(err, err_len,
                 "--key-prefix: expected 1 to %d letters, "
                 "digits or '_', got \"%s\"",
                 AK_PREFIX_MAX, cfg->key_prefix);
        return -1;
    }
    return 0;
}


static int cfg_read_file(
    const char *path, uint8_t **out, size_t *len, char *err, size_t err_len) {
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    size_t n;

    if (f == NULL) {
        snprintf(err, err_len, "secret file %s: %s", path, strerror(errno));
        return -1;
    }
    buf = malloc(CFG_SECRET_MAX + 1);
    if (buf == NULL) {
        fclose(f);
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    n = fread(buf, 1, CFG_SECRET_MAX + 1, f);
    fclose(f);
    if (n > CFG_SECRET_MAX) {
        free(buf);
        snprintf(err, err_len, "secret file %s is larger than %d bytes", path,
                 CFG_SECRET_MAX);
        return -1;
    }
    *out = buf;
    *len = n;
    return 0;
}


int cfg_load_secret(const cfg_t *cfg,
                    uint8_t **secret,
                    size_t *len,
                    char *err,
                    size_t err_len) {
    uint8_t *buf;
    size_t n;

    if (cfg->secret_env != NULL && *cfg->secret_env != '\0') {
        n = strlen(cfg->secret_env);
        if (n > CFG_SECRET_MAX) {
            snprintf(err, err_len, "CPSTORE_SECRET is longer than %d bytes",
                     CFG_SECRET_MAX);
            return -1;
        }
        buf = malloc(n + 1);
        if (buf == NULL) {
            snprintf(err, err_len, "out of memory");
            return -1;
        }
        memcpy(buf, cfg->secret_env, n);
    } else if (cfg->secret_file != NULL) {
        if (cfg_read_file(cfg->secret_file, &buf, &n, err, err_len) != 0) {
            return -1;
        }
    } else {
        return 1;
    }

    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) {
        n--;
    }
    if (n < CFG_SECRET_MIN) {
        memset(buf, 0, n);
        free(buf);
        snprintf(err, err_len, "the server secret must be at least %d bytes",
                 CFG_SECRET_MIN);
        return -1;
    }
    *secret = buf;
    *len = n;
    return 0;
}
