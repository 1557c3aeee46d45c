/*
 * last_used_at without a write per verify.
 *
 * Verify is the hot path: one read of the key's record, nothing else. A
 * write per verify would double the database's work for a field that only
 * needs to be roughly current. So verify notes the time in a table of this
 * process (key_id -> latest time, under a mutex held for a hash lookup),
 * and ak_flush_usage() writes the table out now and then: one update per
 * key presented since the last flush, whatever the number of verifies.
 *
 * Flushing takes the whole table at once and gives the lock back, so that
 * verifies go on noting into a fresh table while the updates run. Entries
 * whose update fails are merged back (keeping the later time), to be
 * written by the next flush. The store only ever raises last_used_at, so
 * instances that flush in any order still converge on the latest time.
 *
 * The table holds at most AK_USAGE_MAX keys between two flushes; a key
 * first presented after that is not noted until the next flush empties the
 * table. Merging back after a failed flush may briefly take it to twice
 * that. Times noted and not yet flushed are lost if the process dies
 * without a flush (a clean stop flushes; see main.c).
 */
#define HASH_NONFATAL_OOM 1

#include "ak_internal.h"

#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include "status.h"

#define AK_USAGE_MAX 65536

struct ak_used {
    char *key_id;
    int64_t at_ms;
    UT_hash_handle hh;
};


int ak_usage_init(ak_service_t *svc) {
    svc->used = NULL;
    svc->n_used = 0;
    return pthread_mutex_init(&svc->usage_lock, NULL) == 0 ? CPS_OK
                                                           : CPS_INTERNAL;
}


static void ak_used_free(ak_used_t *e) {
    free(e->key_id);
    free(e);
}


static void ak_usage_free_table(ak_used_t **table) {
    ak_used_t *e;
    ak_used_t *tmp;

    HASH_ITER(hh, *table, e, tmp) {
        HASH_DEL(*table, e);
        ak_used_free(e);
    }
}


void ak_usage_destroy(ak_service_t *svc) {
    ak_usage_free_table(&svc->used);
    svc->n_used = 0;
    pthread_mutex_destroy(&svc->usage_lock);
}


void ak_usage_note(ak_service_t *svc, const char *key_id, int64_t at_ms) {
    ak_used_t *e = NULL;
    size_t len = strlen(key_id);

    pthread_mutex_lock(&svc->usage_lock);
    HASH_FIND(hh, svc->used, key_id, len, e);
    if (e != NULL) {
        if (e->at_ms < at_ms) {
            e->at_ms = at_ms;
        }
    } else if (svc->n_used < AK_USAGE_MAX) {
        /* Out of memory only costs a last-used time: not noted. */
        e = calloc(1, sizeof(*e));
        if (e != NULL) {
            e->key_id = strdup(key_id);
            e->at_ms = at_ms;
        }
        if (e != NULL && e->key_id != NULL) {
            HASH_ADD_KEYPTR(hh, svc->used, e->key_id, len, e);
        }
        if (e != NULL && (e->key_id == NULL || e->hh.tbl == NULL)) {
            ak_used_free(e);
        } else if (e != NULL) {
            svc->n_used++;
        }
    }
    pthread_mutex_unlock(&svc->usage_lock);
}


/* Put back what a flush could not write. No allocation: an entry either
 * moves back as it is or raises the time of the entry noted since. */
static void ak_usage_merge_back(ak_service_t *svc, ak_used_t **batch) {
    ak_used_t *e;
    ak_used_t *tmp;
    ak_used_t *found;

    pthread_mutex_lock(&svc->usage_lock);
    HASH_ITER(hh, *batch, e, tmp) {
        HASH_DEL(*batch, e);
        found = NULL;
        HASH_FIND(hh, svc->used, e->key_id, strlen(e->key_id), found);
        if (found != NULL) {
            if (found->at_ms < e->at_ms) {
                found->at_ms = e->at_ms;
            }
            ak_used_free(e);
            continue;
        }
        HASH_ADD_KEYPTR(hh, svc->used, e->key_id, strlen(e->key_id), e);
        if (e->hh.tbl == NULL) {
            ak_used_free(e);
        } else {
            svc->n_used++;
        }
    }
    pthread_mutex_unlock(&svc->usage_lock);
}


int ak_flush_usage(ak_service_t *svc,
                   int64_t deadline_mono_ms,
                   char *err,
                   size_t err_len) {
    ak_used_t *batch;
    ak_used_t *e;
    ak_used_t *tmp;
    int rc = CPS_OK;

    ak_clear_err(err, err_len);
    pthread_mutex_lock(&svc->usage_lock);
    batch = svc->used;
    svc->used = NULL;
    svc->n_used = 0;
    pthread_mutex_unlock(&svc->usage_lock);

    HASH_ITER(hh, batch, e, tmp) {
        int one = ks_touch(svc->store, e->key_id, e->at_ms, deadline_mono_ms,
                           err, err_len);

        /* A key whose record is gone has no last-used time to keep. */
        if (one == CPS_NOT_FOUND) {
            one = CPS_OK;
        }
        if (one != CPS_OK) {
            /* The store is failing or the time is up: keep the rest for
             * the next flush rather than try every key in vain. */
            rc = one;
            break;
        }
        HASH_DEL(batch, e);
        ak_used_free(e);
    }
    if (batch != NULL) {
        ak_usage_merge_back(svc, &batch);
    }
    return rc;
}
