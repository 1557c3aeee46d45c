/*
 * Process-wide counters: plain uint64_t values that only the loop thread
 * touches, so that counting costs an increment and no lock. Health.Check
 * reports them (HealthCheckResponse.counters); a Prometheus exporter can
 * walk the same table with mt_name(), mt_help() and mt_get().
 *
 * Counters only ever go up, from 0 at process start; a name, once
 * published, keeps its meaning.
 */
#ifndef CPSTORE_METRICS_H
#define CPSTORE_METRICS_H

#include <stdint.h>

typedef enum mt_counter {
    /* Rate-limit calls answered by the `unavailable = allow` fallback. */
    MT_RL_FALLBACK_ALLOW = 0,
    /* Rate-limit calls answered by the `unavailable = deny` fallback. */
    MT_RL_FALLBACK_DENY,
    /* Rate-limit calls failed because the backend was unreachable or did
     * not answer in time, under `unavailable = error`. */
    MT_RL_UNAVAILABLE_ERROR,
    MT_COUNT
} mt_counter_t;

/* Add one. Loop thread only. */
void mt_inc(mt_counter_t c);

/* The current value. Loop thread only. */
uint64_t mt_get(mt_counter_t c);

/* The counter's stable name ("ratelimit_fallback_allow"): lower case,
 * [a-z0-9_], usable as a Prometheus metric name. */
const char *mt_name(mt_counter_t c);

/* One sentence saying what it counts. */
const char *mt_help(mt_counter_t c);

#endif
