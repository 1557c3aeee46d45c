/*
 * What every rate-limit backend shares: the argument rules of check_many.
 * The bound on the total cost is the backends' own as well as the service
 * layer's: on Redis every admitted unit is one sorted-set member written by
 * one script, during which Redis serves no one else.
 */
#include "ratelimit.h"

#include <string.h>


bool rl_many_valid(const rl_request_t *reqs,
                   size_t n,
                   size_t *first,
                   size_t *second) {
    uint64_t total = 0;

    if (n == 0 || n > RL_MANY_MAX) {
        return false;
    }
    /* Written so that no sum can wrap, whatever the costs. */
    for (size_t i = 0; i < n; i++) {
        if (reqs[i].cost > LIM_RL_COST_MAX - total) {
            return false;
        }
        total += reqs[i].cost;
    }
    /* At most 16 keys: comparing every pair is cheaper than hashing. */
    for (size_t j = 1; j < n; j++) {
        for (size_t i = 0; i < j; i++) {
            if (reqs[i].key_len == reqs[j].key_len &&
                memcmp(reqs[i].key, reqs[j].key, reqs[i].key_len) == 0) {
                if (first != NULL) {
                    *first = i;
                }
                if (second != NULL) {
                    *second = j;
                }
                return false;
            }
        }
    }
    return true;
}
