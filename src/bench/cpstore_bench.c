/*
 * cpstore-bench: load for cpstored's RateLimiter.Check.
 *
 * Each connection runs on its own thread and keeps `pipeline` requests in
 * flight (a closed loop: a new request leaves as soon as a response comes
 * back). Latency is measured per request from send to response. Keys are
 * spread over `keys` distinct names with a limit high enough that every
 * check is admitted, so the figure is the cost of a check, not of denials.
 */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "cpstore_client.h"
#include "duration.h"
#include "rl_script.h"
#include "status.h"

#define BENCH_MAX_CONNS    256
#define BENCH_MAX_PIPELINE 1024
#define BENCH_MAX_SAMPLES  (1u << 22)

typedef struct bench_cfg {
    const char *addr;
    int conns;
    int pipeline;
    uint64_t duration_ms;
    int keys;
    int json;
} bench_cfg_t;

typedef struct bench_thread {
    const bench_cfg_t *cfg;
    int index;
    pthread_t thread;
    uint64_t ok;
    uint64_t errors;
    uint32_t *lat_us; /* one sample per answered request, capped */
    size_t nlat;
    size_t cap;
    char err[256];
} bench_thread_t;

static volatile int bench_stop;


static int64_t bench_now_us(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


static int bench_send(
    cpc_t *c, bench_thread_t *t, uint64_t n, int64_t *sent_at, uint32_t *id) {
    cpstore_v1_RateLimitCheckRequest req =
        cpstore_v1_RateLimitCheckRequest_init_zero;

    snprintf(req.key, sizeof(req.key), "bench:%d:%llu", t->index,
             (unsigned long long)(n % (uint64_t)t->cfg->keys));
    req.limit = 100000; /* the most the server accepts */
    req.window_ms = 1000;
    req.cost = 1;
    if (cpc_send(c, cpstore_v1_RateLimiterMethod_RATE_LIMITER_METHOD_CHECK,
                 cpstore_v1_RateLimitCheckRequest_fields, &req, id) != CPC_OK) {
        return -1;
    }
    sent_at[*id % BENCH_MAX_PIPELINE] = bench_now_us();
    return 0;
}


static void *bench_thread_main(void *arg) {
    bench_thread_t *t = arg;
    int64_t sent_at[BENCH_MAX_PIPELINE];
    uint64_t n = 0;
    uint32_t id;
    cpc_t *c;

    c = cpc_connect(t->cfg->addr, 5000, t->err, sizeof(t->err));
    if (c == NULL) {
        t->errors++;
        return NULL;
    }
    for (int i = 0; i < t->cfg->pipeline; i++) {
        if (bench_send(c, t, n++, sent_at, &id) != 0) {
            goto fail;
        }
    }
    for (int inflight = t->cfg->pipeline; inflight > 0; inflight--) {
        cpc_reply_t reply;

        if (cpc_recv(c, &reply) != CPC_OK) {
            goto fail;
        }
        if (reply.status == 0) {
            t->ok++;
        } else {
            t->errors++;
        }
        if (t->nlat < t->cap) {
            t->lat_us[t->nlat++] =
                (uint32_t)(bench_now_us() -
                           sent_at[reply.request_id % BENCH_MAX_PIPELINE]);
        }
        if (!bench_stop) {
            if (bench_send(c, t, n++, sent_at, &id) != 0) {
                goto fail;
            }
            inflight++;
        }
    }
    cpc_close(c);
    return NULL;

fail:
    snprintf(t->err, sizeof(t->err), "%s", cpc_last_error(c));
    t->errors++;
    cpc_close(c);
    return NULL;
}


static int bench_cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}


static double bench_pct(const uint32_t *v, size_t n, double p) {
    size_t i;

    if (n == 0) {
        return 0;
    }
    i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return v[i] / 1000.0;
}


static void bench_usage(FILE *out) {
    fprintf(out,
            "usage: cpstore-bench [options]\n\n"
            "Load cpstored with RateLimiter.Check and report throughput and "
            "latency.\n\n"
            "  --addr HOST:PORT     server (default $CPSTORE_ADDR, else "
            "127.0.0.1:7300)\n"
            "  --connections N      connections, one thread each (default 4)\n"
            "  --pipeline N         requests in flight per connection "
            "(default 16)\n"
            "  --duration D         how long to run, e.g. 10s (default 5s)\n"
            "  --keys N             distinct keys per connection (default "
            "1000)\n"
            "  --json               one JSON object instead of text\n"
            "  --print-lua          print cpstored's rate-limit Lua script "
            "and exit\n"
            "  -h, --help           this help\n");
}


static int bench_parse(bench_cfg_t *cfg, int argc, char **argv) {
    static const struct option opts[] = {
        {"addr", required_argument, NULL, 'a'},
        {"connections", required_argument, NULL, 'c'},
        {"pipeline", required_argument, NULL, 'p'},
        {"duration", required_argument, NULL, 'd'},
        {"keys", required_argument, NULL, 'k'},
        {"json", no_argument, NULL, 'j'},
        {"print-lua", no_argument, NULL, 'L'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch;

    cfg->addr =
        getenv("CPSTORE_ADDR") ? getenv("CPSTORE_ADDR") : "127.0.0.1:7300";
    cfg->conns = 4;
    cfg->pipeline = 16;
    cfg->duration_ms = 5000;
    cfg->keys = 1000;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'a':
            cfg->addr = optarg;
            break;
        case 'c':
            cfg->conns = atoi(optarg);
            break;
        case 'p':
            cfg->pipeline = atoi(optarg);
            break;
        case 'd':
            if (duration_parse(optarg, &cfg->duration_ms) != CPS_OK ||
                cfg->duration_ms == 0) {
                fprintf(stderr, "cpstore-bench: bad --duration \"%s\"\n",
                        optarg);
                return 2;
            }
            break;
        case 'k':
            cfg->keys = atoi(optarg);
            break;
        case 'j':
            cfg->json = 1;
            break;
        case 'L':
            /* For redis-benchmark, so both run the very same script. */
            fputs(rl_script_source, stdout);
            return 0;
        case 'h':
            bench_usage(stdout);
            return 0;
        default:
            bench_usage(stderr);
            return 2;
        }
    }
    if (cfg->conns < 1 || cfg->conns > BENCH_MAX_CONNS || cfg->pipeline < 1 ||
        cfg->pipeline > BENCH_MAX_PIPELINE || cfg->keys < 1) {
        fprintf(stderr,
                "cpstore-bench: --connections must be 1..%d, "
                "--pipeline 1..%d, --keys at least 1\n",
                BENCH_MAX_CONNS, BENCH_MAX_PIPELINE);
        return 2;
    }
    return -1;
}


int main(int argc, char **argv) {
    bench_cfg_t cfg = {0};
    bench_thread_t *threads;
    uint64_t ok = 0, errors = 0;
    uint32_t *all;
    size_t nall = 0;
    int64_t start, elapsed_us;
    int rc = bench_parse(&cfg, argc, argv);

    if (rc >= 0) {
        return rc;
    }
    threads = calloc((size_t)cfg.conns, sizeof(*threads));
    all = malloc(sizeof(uint32_t) * BENCH_MAX_SAMPLES);
    if (threads == NULL || all == NULL) {
        fprintf(stderr, "cpstore-bench: out of memory\n");
        return 3;
    }
    start = bench_now_us();
    for (int i = 0; i < cfg.conns; i++) {
        threads[i].cfg = &cfg;
        threads[i].index = i;
        threads[i].cap = BENCH_MAX_SAMPLES / (size_t)cfg.conns;
        threads[i].lat_us = malloc(sizeof(uint32_t) * threads[i].cap);
        pthread_create(&threads[i].thread, NULL, bench_thread_main,
                       &threads[i]);
    }
    for (uint64_t waited = 0; waited < cfg.duration_ms; waited += 1000) {
        uint64_t step =
            cfg.duration_ms - waited < 1000 ? cfg.duration_ms - waited : 1000;
        uint64_t done = 0;

        usleep((useconds_t)step * 1000);
        for (int i = 0; i < cfg.conns; i++) {
            done += threads[i].ok;
        }
        if (!cfg.json) {
            fprintf(stderr, "\r%3llus  %llu requests",
                    (unsigned long long)((waited + step) / 1000),
                    (unsigned long long)done);
        }
    }
    bench_stop = 1;
    for (int i = 0; i < cfg.conns; i++) {
        pthread_join(threads[i].thread, NULL);
        ok += threads[i].ok;
        errors += threads[i].errors;
        memcpy(all + nall, threads[i].lat_us,
               threads[i].nlat * sizeof(uint32_t));
        nall += threads[i].nlat;
        if (threads[i].err[0] != '\0') {
            fprintf(stderr, "\nconnection %d: %s\n", i, threads[i].err);
        }
        free(threads[i].lat_us);
    }
    elapsed_us = bench_now_us() - start;
    qsort(all, nall, sizeof(uint32_t), bench_cmp_u32);

    double rps = (double)ok * 1e6 / (double)elapsed_us;
    if (cfg.json) {
        printf("{\"requests\":%llu,\"errors\":%llu,\"seconds\":%.3f,"
               "\"rps\":%.0f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,"
               "\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f}\n",
               (unsigned long long)ok, (unsigned long long)errors,
               elapsed_us / 1e6, rps, bench_pct(all, nall, 50),
               bench_pct(all, nall, 90), bench_pct(all, nall, 99),
               bench_pct(all, nall, 99.9), bench_pct(all, nall, 100));
    } else {
        printf("\nconnections %d, pipeline %d, %.1f s\n"
               "requests    %llu (%llu errors)\n"
               "throughput  %.0f checks/s\n"
               "latency ms  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  "
               "max %.3f\n",
               cfg.conns, cfg.pipeline, elapsed_us / 1e6,
               (unsigned long long)ok, (unsigned long long)errors, rps,
               bench_pct(all, nall, 50), bench_pct(all, nall, 90),
               bench_pct(all, nall, 99), bench_pct(all, nall, 99.9),
               bench_pct(all, nall, 100));
    }
    free(all);
    free(threads);
    return errors > 0 ? 3 : 0;
}
