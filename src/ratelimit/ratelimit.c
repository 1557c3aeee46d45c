/*
 * What every rate-limit backend shares: the argument rules of check_many.
 */
#include "ratelimit.h"

#include <string.h>


bool rl_many_valid(const rl_request_t *reqs,
                   size_t n,
                   size_t *first,
                   size_t *second) {
    if (n == 0 || n > RL_MANY_MAX) {
        return false;
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
