/*
 * In-process rate-limit backend: the semantics of rl_script.c, without a
 * server, for trying cpstore out and for tests. Nothing is shared between
 * processes and nothing survives a restart.
 *
 * Design note.
 *
 * - Clock. The loop's monotonic clock, refreshed on every check
 *   (uv_update_time, then uv_now): integer milliseconds, as in Redis, and
 *   the same clock the caller's libuv timers run on, so a caller that waits
 *   retry_after_ms on a timer is admitted exactly then.
 *
 * - A key holds a FIFO of (time, cost) entries, oldest first, in a ring
 *   buffer, with the running total of their costs. Admissions in the same
 *   millisecond share an entry. An entry at time t leaves the window when
 *   now >= t + window, so a check first drops entries with t <= now -
 *   window, then compares total + cost with the limit. Only admitted
 *   requests are stored; a cost above the limit (every cost, under limit 0)
 *   is denied with retry_after_ms 0.
 *
 * - retry_after_ms of a denied request: it fits once k = used + cost - limit
 *   more units have left, that is when the entry holding the k-th oldest
 *   unit leaves: its time plus the window, minus now.
 *
 * - Keys live in a uthash table. A key is dead once its newest entry has
 *   left the window (expires_at, the counterpart of Redis's PEXPIRE). A
 *   periodic, unref'd timer sweeps a slice of the table per tick, sized so
 *   that a full pass takes about RL_MEMORY_PASS_MS, and frees dead keys: the
 *   memory held is bounded by the keys active in the last window, never by
 *   every key ever seen. The sweep is the only place keys are freed, so its
 *   cursor stays valid between ticks.
 *
 * - Several limits (check_many) are decided as the script decides them:
 *   every key is trimmed and counted first, and the request is added to
 *   all of them only if each has room. Everything that can fail (a new key,
 *   a larger ring) is allocated before the first unit is added, so running
 *   out of memory admits nothing rather than part of a request. Being
 *   synchronous on the loop thread, the decision is atomic for free.
 *
 * The callback runs before check() returns: everything here is synchronous.
 */
#include "ratelimit.h"

#include <stdlib.h>
#include <string.h>

#define HASH_NONFATAL_OOM 1
#include <uthash.h>

#include "status.h"

#define RL_MEMORY_TICK_MS   250u
#define RL_MEMORY_PASS_MS   1000u
#define RL_MEMORY_SLICE_MIN 64u
#define RL_MEMORY_RING_MIN  4u

typedef struct rl_memory_entry {
    uint64_t at; /* loop time of admission, ms */
    uint64_t cost;
} rl_memory_entry_t;

typedef struct rl_memory_key {
    UT_hash_handle hh;
    rl_memory_entry_t *ring; /* owned; cap entries */
    size_t cap;
    size_t head; /* index of the oldest entry */
    size_t count;
    uint64_t total;      /* sum of the entries' costs */
    uint64_t expires_at; /* when the newest entry leaves its window */
    size_t key_len;
    char key[]; /* not NUL-terminated */
} rl_memory_key_t;

typedef struct rl_memory {
    rl_backend_t base; /* first member: the ops see an rl_backend_t */
    uv_loop_t *loop;
    uv_timer_t sweep;
    rl_memory_key_t *keys;   /* uthash head */
    rl_memory_key_t *cursor; /* next key the sweep looks at; NULL: start */
    bool closing;
} rl_memory_t;


static rl_memory_entry_t *rl_memory_at(rl_memory_key_t *k, size_t i) {
    return &k->ring[(k->head + i) % k->cap];
}


/* Move the entries to a ring of cap slots (cap >= count). */
static int rl_memory_resize(rl_memory_key_t *k, size_t cap) {
    rl_memory_entry_t *ring = malloc(cap * sizeof(*ring));

    if (ring == NULL) {
        return CPS_RESOURCE_EXHAUSTED;
    }
    for (size_t i = 0; i < k->count; i++) {
        ring[i] = *rl_memory_at(k, i);
    }
    free(k->ring);
    k->ring = ring;
    k->cap = cap;
    k->head = 0;
    return CPS_OK;
}


/* Drop the entries that have left the window ending at now. */
static void rl_memory_trim(rl_memory_key_t *k, uint64_t now, uint64_t window) {
    while (k->count > 0) {
        rl_memory_entry_t *e = rl_memory_at(k, 0);

        if (e->at + window > now) {
            break;
        }
        k->total -= e->cost;
        k->head = (k->head + 1) % k->cap;
        k->count--;
    }
    /* Give memory back after a burst; failure to shrink is harmless. */
    if (k->cap > RL_MEMORY_RING_MIN && k->count < k->cap / 4) {
        rl_memory_resize(k, k->cap / 2);
    }
}


/* Make room for one more admission at now, so that rl_memory_push() at
 * now cannot fail. */
static int rl_memory_reserve(rl_memory_key_t *k, uint64_t now) {
    if (k->count > 0 && rl_memory_at(k, k->count - 1)->at == now) {
        return CPS_OK; /* shares the newest entry */
    }
    if (k->count < k->cap) {
        return CPS_OK;
    }
    return rl_memory_resize(k, k->cap ? k->cap * 2 : RL_MEMORY_RING_MIN);
}


/* Add an admission; the caller has reserved room for it. */
static void rl_memory_push(rl_memory_key_t *k, uint64_t now, uint64_t cost) {
    if (k->count > 0 && rl_memory_at(k, k->count - 1)->at == now) {
        rl_memory_at(k, k->count - 1)->cost += cost;
    } else {
        *rl_memory_at(k, k->count) = (rl_memory_entry_t){now, cost};
        k->count++;
    }
    k->total += cost;
}


static rl_memory_key_t *
rl_memory_key_add(rl_memory_t *m, const char *key, size_t len) {
    rl_memory_key_t *k = calloc(1, sizeof(*k) + len);
    unsigned before = HASH_COUNT(m->keys);

    if (k == NULL) {
        return NULL;
    }
    memcpy(k->key, key, len);
    k->key_len = len;
    HASH_ADD_KEYPTR(hh, m->keys, k->key, k->key_len, k);
    if (HASH_COUNT(m->keys) != before + 1) {
        free(k);
        return NULL;
    }
    return k;
}


static void rl_memory_key_free(rl_memory_t *m, rl_memory_key_t *k) {
    HASH_DELETE(hh, m->keys, k);
    free(k->ring);
    free(k);
}


/* Time when the k-th oldest admitted unit (k >= 1) leaves the window. */
static uint64_t
rl_memory_kth_leaves(rl_memory_key_t *k, uint64_t kth, uint64_t window) {
    uint64_t seen = 0;

    for (size_t i = 0; i < k->count; i++) {
        rl_memory_entry_t *e = rl_memory_at(k, i);

        seen += e->cost;
        if (seen >= kth) {
            return e->at + window;
        }
    }
    return 0; /* unreachable: kth <= total */
}


static bool rl_memory_fits(const rl_request_t *req, uint64_t used) {
    return req->cost <= req->limit && used + req->cost <= req->limit;
}


/*
 * Decide the n checks of reqs together, as the script does: trim and count
 * every key, then admit on every key only if each has room. res gets one
 * result per check. Returns CPS_OK, or CPS_RESOURCE_EXHAUSTED with nothing
 * admitted anywhere.
 */
static int rl_memory_decide(rl_memory_t *m,
                            const rl_request_t *reqs,
                            size_t n,
                            rl_result_t *res) {
    rl_memory_key_t *keys[RL_MANY_MAX];
    uint64_t used[RL_MANY_MAX];
    bool all = true;
    uint64_t now;

    uv_update_time(m->loop);
    now = uv_now(m->loop);

    for (size_t i = 0; i < n; i++) {
        HASH_FIND(hh, m->keys, reqs[i].key, reqs[i].key_len, keys[i]);
        if (keys[i] != NULL) {
            rl_memory_trim(keys[i], now, reqs[i].window_ms);
        }
        used[i] = keys[i] ? keys[i]->total : 0;
        res[i] = (rl_result_t){.limit = reqs[i].limit};
        res[i].allowed = rl_memory_fits(&reqs[i], used[i]);
        all = all && res[i].allowed;
    }

    if (all) {
        /* Every allocation first, so that a failure admits nothing. A key
         * created here and left empty is dead (expires_at 0) and swept. */
        for (size_t i = 0; i < n; i++) {
            if (keys[i] == NULL) {
                keys[i] = rl_memory_key_add(m, reqs[i].key, reqs[i].key_len);
            }
            if (keys[i] == NULL || rl_memory_reserve(keys[i], now) != CPS_OK) {
                return CPS_RESOURCE_EXHAUSTED;
            }
        }
        for (size_t i = 0; i < n; i++) {
            rl_memory_push(keys[i], now, reqs[i].cost);
            used[i] += reqs[i].cost;
        }
    }

    for (size_t i = 0; i < n; i++) {
        const rl_request_t *req = &reqs[i];
        rl_memory_key_t *k = keys[i];

        if (!res[i].allowed && req->cost <= req->limit) {
            res[i].retry_after_ms =
                rl_memory_kth_leaves(k, used[i] + req->cost - req->limit,
                                     req->window_ms) -
                now;
        }
        res[i].remaining = used[i] < req->limit ? req->limit - used[i] : 0;
        if (k != NULL && k->count > 0) {
            k->expires_at = rl_memory_at(k, k->count - 1)->at + req->window_ms;
            res[i].reset_after_ms = k->expires_at - now;
        } else if (k != NULL) {
            k->expires_at = now;
        }
    }
    return CPS_OK;
}


static int rl_memory_check(rl_backend_t *base,
                           const rl_request_t *req,
                           rl_done_cb cb,
                           void *arg) {
    rl_memory_t *m = (rl_memory_t *)base;
    rl_result_t res;
    int rc;

    if (m->closing) {
        return CPS_UNAVAILABLE;
    }
    rc = rl_memory_decide(m, req, 1, &res);
    if (rc != CPS_OK) {
        return rc;
    }
    cb(arg, CPS_OK, &res, NULL);
    return CPS_OK;
}


static int rl_memory_check_many(rl_backend_t *base,
                                const rl_request_t *reqs,
                                size_t n,
                                rl_many_done_cb cb,
                                void *arg) {
    rl_memory_t *m = (rl_memory_t *)base;
    rl_result_t res[RL_MANY_MAX];
    int rc;

    if (m->closing) {
        return CPS_UNAVAILABLE;
    }
    if (!rl_many_valid(reqs, n, NULL, NULL)) {
        return CPS_INVALID_ARGUMENT;
    }
    rc = rl_memory_decide(m, reqs, n, res);
    if (rc != CPS_OK) {
        return rc;
    }
    cb(arg, CPS_OK, res, n, NULL);
    return CPS_OK;
}


/* One sweep tick: look at a slice of the keys, free the dead ones. */
static void rl_memory_on_sweep(uv_timer_t *timer) {
    rl_memory_t *m = timer->data;
    unsigned count = HASH_COUNT(m->keys);
    unsigned slice = count / (RL_MEMORY_PASS_MS / RL_MEMORY_TICK_MS) + 1;
    uint64_t now = uv_now(m->loop);
    rl_memory_key_t *k = m->cursor ? m->cursor : m->keys;

    if (slice < RL_MEMORY_SLICE_MIN) {
        slice = RL_MEMORY_SLICE_MIN;
    }
    while (k != NULL && slice-- > 0) {
        rl_memory_key_t *next = k->hh.next;

        if (now >= k->expires_at) {
            rl_memory_key_free(m, k);
        }
        k = next;
    }
    m->cursor = k;
}


static bool rl_memory_is_up(rl_backend_t *base, char *detail, size_t len) {
    return true;
}


static void rl_memory_closed(uv_handle_t *handle) {
    rl_memory_t *m = handle->data;
    rl_memory_key_t *k;
    rl_memory_key_t *tmp;

    HASH_ITER(hh, m->keys, k, tmp) {
        rl_memory_key_free(m, k);
    }
    free(m);
}


static void rl_memory_close(rl_backend_t *base) {
    rl_memory_t *m = (rl_memory_t *)base;

    m->closing = true;
    uv_close((uv_handle_t *)&m->sweep, rl_memory_closed);
}


static const rl_backend_ops_t rl_memory_ops = {
    .kind = "memory",
    .check = rl_memory_check,
    .check_many = rl_memory_check_many,
    .is_up = rl_memory_is_up,
    .close = rl_memory_close,
};


rl_backend_t *rl_memory_new(uv_loop_t *loop) {
    rl_memory_t *m = calloc(1, sizeof(*m));

    if (m == NULL) {
        return NULL;
    }
    m->base.ops = &rl_memory_ops;
    m->loop = loop;
    uv_timer_init(loop, &m->sweep);
    m->sweep.data = m;
    uv_timer_start(&m->sweep, rl_memory_on_sweep, RL_MEMORY_TICK_MS,
                   RL_MEMORY_TICK_MS);
    uv_unref((uv_handle_t *)&m->sweep);
    return &m->base;
}


size_t rl_memory_key_count(const rl_backend_t *be) {
    const rl_memory_t *m = (const rl_memory_t *)be;

    return HASH_COUNT(m->keys);
}
