#include "duration.h"

#include <stdio.h>
#include <string.h>

#include "status.h"

typedef struct duration_unit {
    const char *name;
    uint64_t ms;
} duration_unit_t;

/* Largest first: duration_format() takes the first that divides exactly. */
static const duration_unit_t duration_units[] = {
    {"d", 24ull * 60 * 60 * 1000},
    {"h", 60ull * 60 * 1000},
    {"m", 60ull * 1000},
    {"s", 1000},
    {"ms", 1},
};

#define DURATION_NUNITS (sizeof(duration_units) / sizeof(duration_units[0]))


static const duration_unit_t *duration_find_unit(const char *name) {
    for (size_t i = 0; i < DURATION_NUNITS; i++) {
        if (strcmp(duration_units[i].name, name) == 0) {
            return &duration_units[i];
        }
    }
    return NULL;
}


int duration_parse(const char *s, uint64_t *ms) {
    const duration_unit_t *unit;
    uint64_t n = 0;
    const char *p = s;

    if (s == NULL || *s < '0' || *s > '9') {
        return CPS_INVALID_ARGUMENT;
    }

    for (; *p >= '0' && *p <= '9'; p++) {
        uint64_t digit = (uint64_t)(*p - '0');

        if (n > (UINT64_MAX - digit) / 10) {
            return CPS_INVALID_ARGUMENT;
        }
        n = n * 10 + digit;
    }

    if (*p == '\0') {
        /* A bare number is ambiguous; only zero means the same in any unit. */
        if (n != 0) {
            return CPS_INVALID_ARGUMENT;
        }
        *ms = 0;
        return CPS_OK;
    }

    unit = duration_find_unit(p);
    if (unit == NULL || n > UINT64_MAX / unit->ms) {
        return CPS_INVALID_ARGUMENT;
    }
    *ms = n * unit->ms;
    return CPS_OK;
}


int duration_format(uint64_t ms, char *buf, size_t len) {
    const duration_unit_t *unit = &duration_units[DURATION_NUNITS - 1];
    int n;

    if (ms != 0) {
        for (size_t i = 0; i < DURATION_NUNITS; i++) {
            if (ms % duration_units[i].ms == 0) {
                unit = &duration_units[i];
                break;
            }
        }
    }

    n = snprintf(buf, len, "%llu%s", (unsigned long long)(ms / unit->ms),
                 unit->name);
    if (n < 0 || (size_t)n >= len) {
        if (len > 0) {
            buf[0] = '\0';
        }
        return CPS_OUT_OF_RANGE;
    }
    return CPS_OK;
}
