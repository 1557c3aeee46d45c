/*
 * cpstored: parse the configuration, open the backends, serve until SIGTERM
 * or SIGINT, then drain and exit 0.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <uv.h>

#include "apikeys.h"
#include "cfgfile.h"
#include "clock.h"
#include "config.h"
#include "crypto.h"
#include "housekeeping.h"
#include "keystore.h"
#include "log.h"
#include "mongo.h"
#include "probe.h"
#include "status.h"
#include "ratelimit.h"
#include "server.h"
#include "sessions.h"
#include "tokens.h"
#include "worker.h"

#define MAIN_DEV_SECRET_LEN 32
#define MAIN_PROBE_MS       3000
#define MAIN_FLUSH_MS       5000 /* last-used times at shutdown */

typedef struct daemon {
    uv_loop_t *loop;
    cfg_t cfg;
    cf_file_t *config;
    uint8_t *secret;
    size_t secret_len;
    wk_pool_t *workers;
    rl_backend_t *ratelimit;
    mg_t *mongo;
    ks_store_t *keystore;
    ak_service_t *apikeys;
    ss_service_t *sessions;
    tk_service_t *tokens;
    srv_backends_t be;
    srv_t *srv;
    hk_t *hk;
    uv_signal_t sigterm;
    uv_signal_t sigint;
    uv_signal_t sighup;
    int exit_code;
} daemon_t;


/*
 * Each connection takes a file descriptor; past the process's limit, new
 * connections would be dropped without a GOAWAY. Raise the soft limit as
 * far as the hard one allows, and say so when that is not enough.
 */
static void main_raise_nofile(uint32_t max_connections) {
    rlim_t want = (rlim_t)max_connections + 64;
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want) {
        return;
    }
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want
                      ? want
                      : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
        log_warn("open file limit %llu is below --max-connections %u: "
                 "connections past it will be refused",
                 (unsigned long long)rl.rlim_cur, max_connections);
    }
}


/* Print a startup refusal as one line and return the exit code. */
static int main_refuse(const char *reason) {
    log_error("cannot start: %s", reason);
    return 1;
}


/* Load --config, or the defaults; NULL with a reason in err. */
static cf_file_t *
main_load_config(const cfg_t *cfg, char *err, size_t err_len) {
    cf_file_t *cf = calloc(1, sizeof(*cf));
    int rc;

    if (cf == NULL) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    if (cfg->config_path != NULL) {
        rc = cf_load(cfg->config_path, cf, err, err_len);
    } else {
        rc = cf_defaults(cf);
        if (rc != 0) {
            snprintf(err, err_len, "out of memory");
        }
    }
    if (rc != 0) {
        free(cf);
        return NULL;
    }
    return cf;
}


static void main_free_config(cf_file_t *cf) {
    if (cf != NULL) {
        cf_free(cf);
        free(cf);
    }
}


/* SIGHUP: a new configuration replaces the old whole, or not at all. */
static void main_reload(uv_signal_t *handle, int signum) {
    daemon_t *d = handle->data;
    char err[512];
    cf_file_t *cf;

    (void)signum;
    if (d->srv == NULL) {
        return;
    }
    cf = main_load_config(&d->cfg, err, sizeof(err));
    if (cf == NULL) {
        log_error("reload failed, keeping the current configuration: %s", err);
        return;
    }
    srv_set_config(d->srv, cf);
    main_free_config(d->config);
    d->config = cf;
    log_info("configuration reloaded policies=%zu token_kinds=%zu",
             cf->npolicies, cf->ntoken_kinds);
}


static int main_secret(daemon_t *d) {
    char err[256];
    int rc;

    rc = cfg_load_secret(&d->cfg, &d->secret, &d->secret_len, err, sizeof(err));
    if (rc < 0) {
        return main_refuse(err);
    }
    if (rc == 0) {
        return 0;
    }
    if (d->cfg.profile == CFG_PROFILE_PRODUCTION) {
        return main_refuse("the production profile needs a server secret "
                           "(--secret-file or CPSTORE_SECRET)");
    }
    d->secret = malloc(MAIN_DEV_SECRET_LEN);
    if (d->secret == NULL ||
        crypto_random_bytes(d->secret, MAIN_DEV_SECRET_LEN) != 0) {
        return main_refuse("could not generate a server secret");
    }
    d->secret_len = MAIN_DEV_SECRET_LEN;
    log_warn("no server secret configured: using a throwaway one, so keys "
             "created now stop verifying after a restart");
    return 0;
}


static int main_backends(daemon_t *d) {
    char err[256];

    if (d->cfg.profile == CFG_PROFILE_PRODUCTION &&
        (d->cfg.redis_url == NULL || d->cfg.mongo_uri == NULL)) {
        return main_refuse("the production profile needs --redis and "
                           "--mongo; it never uses the memory backends");
    }
    if (d->cfg.profile == CFG_PROFILE_PRODUCTION &&
        probe_redis(d->cfg.redis_url, MAIN_PROBE_MS, err, sizeof(err)) !=
            CPS_OK) {
        return main_refuse(err);
    }

    d->workers = wk_pool_new(d->loop, d->cfg.workers);
    if (d->workers == NULL) {
        return main_refuse("could not start worker threads");
    }

    if (d->cfg.redis_url != NULL) {
        rl_redis_config_t rc = {
            .url = d->cfg.redis_url,
            .prefix = d->cfg.redis_prefix,
            .connect_timeout_ms = 2000,
        };

        d->ratelimit = rl_redis_new(d->loop, &rc, err, sizeof(err));
        if (d->ratelimit == NULL) {
            return main_refuse(err);
        }
    } else {
        d->ratelimit = rl_memory_new(d->loop);
        log_warn("rate limits use the memory backend: nothing is durable "
                 "or shared between instances (set --redis)");
    }

    if (d->cfg.mongo_uri != NULL) {
        d->mongo = mg_open(d->cfg.mongo_uri, d->cfg.mongo_db, err, sizeof(err));
        if (d->mongo == NULL) {
            return main_refuse(err);
        }
        mg_set_pool_size(d->mongo, (uint32_t)d->cfg.workers);
        if (d->cfg.profile == CFG_PROFILE_PRODUCTION &&
            mg_ping(d->mongo, MAIN_PROBE_MS, err, sizeof(err)) != CPS_OK) {
            char reason[300];

            snprintf(reason, sizeof(reason), "mongodb is not reachable: %s",
                     err);
            return main_refuse(reason);
        }
        d->keystore = ks_mongo_new(d->mongo, err, sizeof(err));
        if (d->keystore == NULL) {
            return main_refuse(err);
        }
    } else {
        d->keystore = ks_memory_new();
        log_warn("API keys use the memory backend: nothing is durable or "
                 "shared between instances (set --mongo)");
    }
    if (d->ratelimit == NULL || d->keystore == NULL) {
        return main_refuse("out of memory");
    }

    d->apikeys = ak_service_new(d->keystore, d->secret, d->secret_len,
                                d->cfg.key_prefix);
    if (d->apikeys == NULL) {
        return main_refuse("out of memory");
    }

    d->sessions =
        ss_service_new(d->mongo, d->secret, d->secret_len, err, sizeof(err));
    if (d->sessions == NULL) {
        return main_refuse(err);
    }
    if (d->mongo == NULL) {
        log_warn("sessions use the memory backend: nothing is durable or "
                 "shared between instances (set --mongo)");
    } else if (ss_ttl_status(d->sessions) == SS_TTL_UNSUPPORTED) {
        log_info("the MongoDB server has no TTL indexes: expired sessions "
                 "are removed by the periodic purge only");
    }

    d->tokens =
        tk_service_new(d->mongo, d->secret, d->secret_len, err, sizeof(err));
    if (d->tokens == NULL) {
        return main_refuse(err);
    }
    if (d->mongo == NULL) {
        log_warn("single-use tokens use the memory backend: nothing is "
                 "durable or shared between instances (set --mongo)");
    } else if (tk_service_ttl_index(d->tokens) == TK_TTL_UNSUPPORTED) {
        log_info("the MongoDB server has no TTL indexes: expired tokens "
                 "are removed by the periodic purge only");
    }
    return 0;
}


static void main_close_handle(uv_handle_t *handle, void *arg) {
    (void)arg;
    if (!uv_is_closing(handle)) {
        uv_close(handle, NULL);
    }
}


/* The server has drained: release the backends and let the loop end. */
static void main_drained(void *arg) {
    daemon_t *d = arg;

    d->srv = NULL;
    /* Keep catching signals until the very end, so a second SIGTERM
     * during the last steps does not kill the process; unref'd handles do
     * not keep the loop alive. */
    uv_unref((uv_handle_t *)&d->sigterm);
    uv_unref((uv_handle_t *)&d->sigint);
    uv_unref((uv_handle_t *)&d->sighup);
    if (d->hk != NULL) {
        hk_stop(d->hk);
        d->hk = NULL;
    }
    if (d->ratelimit != NULL) {
        d->ratelimit->ops->close(d->ratelimit);
        d->ratelimit = NULL;
    }
    if (d->workers != NULL) {
        wk_pool_close(d->workers);
        d->workers = NULL;
    }
    log_info("stopped");
}


static void main_signal(uv_signal_t *handle, int signum) {
    daemon_t *d = handle->data;

    if (d->srv == NULL) {
        return;
    }
    log_info("shutting down signal=%s", signum == SIGTERM ? "TERM" : "INT");
    srv_shutdown(d->srv, main_drained, d);
}


static void main_cleanup(daemon_t *d) {
    sigset_t block;
    char err[256];

    if (d->ratelimit != NULL) {
        d->ratelimit->ops->close(d->ratelimit);
    }
    if (d->workers != NULL) {
        wk_pool_close(d->workers);
    }
    /* Closing the signal handles restores the default actions, which would
     * let a late SIGTERM kill a process that is exiting cleanly: block the
     * signals first. Then run the close callbacks and close the loop. */
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, NULL);
    uv_walk(d->loop, main_close_handle, NULL);
    uv_run(d->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(d->loop) != 0) {
        log_warn("event loop closed with handles still open");
    }
    if (d->apikeys != NULL) {
        /* Verify only notes last-used times in memory: write them out
         * before they are lost with the process. */
        if (ak_flush_usage(d->apikeys, clock_mono_ms() + MAIN_FLUSH_MS, err,
                           sizeof(err)) != CPS_OK) {
            log_warn("last-used times of API keys not saved: %s", err);
        }
        ak_service_free(d->apikeys);
    }
    ss_service_free(d->sessions);
    tk_service_free(d->tokens);
    if (d->keystore != NULL) {
        ks_free(d->keystore);
    }
    if (d->mongo != NULL) {
        mg_close(d->mongo);
    }
    if (d->secret != NULL) {
        crypto_cleanse(d->secret, d->secret_len);
        free(d->secret);
    }
    main_free_config(d->config);
}


int main(int argc, char **argv) {
    daemon_t d;
    char err[512];

    memset(&d, 0, sizeof(d));
    if (cfg_parse(&d.cfg, argc, argv, err, sizeof(err)) != 0) {
        fprintf(stderr, "cpstored: %s\nTry 'cpstored --help'.\n", err);
        return 2;
    }
    if (d.cfg.help) {
        cfg_usage(stdout);
        return 0;
    }
    if (d.cfg.version) {
        printf("cpstored %s\n", CPSTORE_VERSION);
        return 0;
    }
    log_set_level((log_level_t)d.cfg.log_level);
    signal(SIGPIPE, SIG_IGN);
    main_raise_nofile(d.cfg.srv.max_connections);
    d.loop = uv_default_loop();

    d.config = main_load_config(&d.cfg, err, sizeof(err));
    if (d.config == NULL) {
        d.exit_code = main_refuse(err);
    }
    if (d.exit_code == 0) {
        d.exit_code = main_secret(&d);
    }
    if (d.exit_code == 0) {
        d.exit_code = main_backends(&d);
    }
    if (d.exit_code == 0) {
        d.be = (srv_backends_t){
            .ratelimit = d.ratelimit,
            .apikeys = d.apikeys,
            .sessions = d.sessions,
            .tokens = d.tokens,
            .keystore = d.keystore,
            .workers = d.workers,
            .config = d.config,
        };

        d.srv = srv_start(d.loop, &d.cfg.srv, &d.be, err, sizeof(err));
        if (d.srv == NULL) {
            d.exit_code = main_refuse(err);
        }
    }
    if (d.exit_code != 0) {
        main_cleanup(&d);
        return d.exit_code;
    }

    uv_signal_init(d.loop, &d.sigterm);
    uv_signal_init(d.loop, &d.sigint);
    d.sigterm.data = &d;
    d.sigint.data = &d;
    uv_signal_start(&d.sigterm, main_signal, SIGTERM);
    uv_signal_start(&d.sigint, main_signal, SIGINT);
    uv_signal_init(d.loop, &d.sighup);
    d.sighup.data = &d;
    uv_signal_start(&d.sighup, main_reload, SIGHUP);

    /* Purges and usage flushes; main_reload keeps d.config current. */
    d.hk = hk_start(d.loop, &d.be, (const cf_file_t *const *)&d.config);
    if (d.hk != NULL) {
        hk_run(d.hk);
    }

    log_info("listening addr=%s version=%s profile=%s ratelimit=%s "
             "apikeys=%s",
             srv_address(d.srv), CPSTORE_VERSION,
             d.cfg.profile == CFG_PROFILE_PRODUCTION ? "production" : "dev",
             d.ratelimit->ops->kind, ks_kind(d.keystore));

    uv_run(d.loop, UV_RUN_DEFAULT);
    main_cleanup(&d);
    return 0;
}
