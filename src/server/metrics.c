/*
 * The counters of metrics.h: one static array, indexed by mt_counter_t.
 */
#include "metrics.h"

#include <stddef.h>

typedef struct mt_info {
    const char *name;
    const char *help;
} mt_info_t;

static const mt_info_t mt_info[MT_COUNT] = {
    [MT_RL_FALLBACK_ALLOW] = {"ratelimit_fallback_allow",
                              "Rate-limit calls admitted by the fallback "
                              "while the backend was unreachable."},
    [MT_RL_FALLBACK_DENY] = {"ratelimit_fallback_deny",
                             "Rate-limit calls denied by the fallback while "
                             "the backend was unreachable."},
    [MT_RL_UNAVAILABLE_ERROR] = {"ratelimit_unavailable_error",
                                 "Rate-limit calls failed because the "
                                 "backend was unreachable."},
};

static uint64_t mt_values[MT_COUNT];


void mt_inc(mt_counter_t c) {
    if ((unsigned)c < MT_COUNT) {
        mt_values[c]++;
    }
}


uint64_t mt_get(mt_counter_t c) {
    return (unsigned)c < MT_COUNT ? mt_values[c] : 0;
}


const char *mt_name(mt_counter_t c) {
    return (unsigned)c < MT_COUNT ? mt_info[c].name : NULL;
}


const char *mt_help(mt_counter_t c) {
    return (unsigned)c < MT_COUNT ? mt_info[c].help : NULL;
}
