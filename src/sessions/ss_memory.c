/*
 * In-process session store, for trying cpstore without servers and for
 * tests: nothing is durable or shared between instances.
 *
 * Each record sits in two uthash tables, by token hash (validate) and by
 * session_id (revoke by id, and uniqueness as _id gives it in MongoDB).
 * One mutex guards both, and every operation runs whole under it, so the
 * races the MongoDB store has to reason about cannot happen here. Records
 * are copied in and out under the lock; no caller holds a pointer into the
 * tables. Listing and revoking by user scan every record: this store is
 * not meant for many sessions.
 *
 * uthash is built with HASH_NONFATAL_OOM: an allocation failure inside it
 * leaves the element out of the table (hh.tbl == NULL) instead of exiting.
 */
#define HASH_NONFATAL_OOM 1

#include "ss_store.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include "status.h"

typedef struct ss_mem_entry {
    ss_record_t rec;
    UT_hash_handle hh;    /* by rec.hash */
    UT_hash_handle hh_id; /* by rec.session_id */
} ss_mem_entry_t;

typedef struct ss_memory {
    ss_store_t base; /* first member */
    pthread_mutex_t lock;
    ss_mem_entry_t *by_hash;
    ss_mem_entry_t *by_id;
} ss_memory_t;


static ss_mem_entry_t *ss_mem_find_id(ss_memory_t *m, const char *id) {
    ss_mem_entry_t *found = NULL;

    HASH_FIND(hh_id, m->by_id, id, strlen(id), found);
    return found;
}


/* Add e to both tables; 0 when uthash ran out of memory (e is then in
 * neither). Under the lock. */
static int ss_mem_add(ss_memory_t *m, ss_mem_entry_t *e) {
    HASH_ADD(hh, m->by_hash, rec.hash, SS_HASH_LEN, e);
    if (e->hh.tbl == NULL) {
        return 0;
    }
    HASH_ADD_KEYPTR(hh_id, m->by_id, e->rec.session_id,
                    strlen(e->rec.session_id), e);
    if (e->hh_id.tbl == NULL) {
        HASH_DELETE(hh, m->by_hash, e);
        return 0;
    }
    return 1;
}


static int ss_mem_insert(ss_store_t *store,
                         const ss_record_t *rec,
                         int64_t deadline_mono_ms,
                         char *err,
                         size_t err_len) {
    ss_memory_t *m = (ss_memory_t *)store;
    ss_mem_entry_t *e;
    ss_mem_entry_t *found = NULL;
    int rc = CPS_OK;

    (void)deadline_mono_ms; /* nothing here waits */
    e = calloc(1, sizeof(*e));
    if (e == NULL || ss_record_copy(&e->rec, rec) != CPS_OK) {
        free(e);
        ss_set_err(err, err_len, "out of memory");
        return CPS_INTERNAL;
    }

    pthread_mutex_lock(&m->lock);
    HASH_FIND(hh, m->by_hash, e->rec.hash, SS_HASH_LEN, found);
    if (found != NULL || ss_mem_find_id(m, e->rec.session_id) != NULL) {
        rc = CPS_ALREADY_EXISTS;
    } else if (!ss_mem_add(m, e)) {
        rc = CPS_INTERNAL;
        ss_set_err(err, err_len, "out of memory");
    }
    pthread_mutex_unlock(&m->lock);

    if (rc != CPS_OK) {
        ss_record_clear(&e->rec);
        free(e);
    }
    return rc;
}


/* Copy a found entry out, or report NOT_FOUND. Under the lock. */
static int ss_mem_copy_out(const ss_mem_entry_t *e,
                           ss_record_t *out,
                           char *err,
                           size_t err_len) {
    if (e == NULL) {
        return CPS_NOT_FOUND;
    }
    if (ss_record_copy(out, &e->rec) != CPS_OK) {
        ss_set_err(err, err_len, "out of memory");
        return CPS_INTERNAL;
    }
    return CPS_OK;
}


static int ss_mem_find_by_hash(ss_store_t *store,
                               const uint8_t hash[SS_HASH_LEN],
                               int64_t deadline_mono_ms,
                               ss_record_t *out,
                               char *err,
                               size_t err_len) {
    ss_memory_t *m = (ss_memory_t *)store;
    ss_mem_entry_t *found = NULL;
    int rc;

    (void)deadline_mono_ms;
    pthread_mutex_lock(&m->lock);
    HASH_FIND(hh, m->by_hash, hash, SS_HASH_LEN, found);
    rc = ss_mem_copy_out(found, out, err, err_len);
    pthread_mutex_unlock(&m->lock);
    return rc;
}


static int ss_mem_find_by_id(ss_store_t *store,
                             const char *session_id,
                             int64_t deadline_mono_ms,
                             ss_record_t *out,
                             char *err,
                             size_t err_len) {
    ss_memory_t *m = (ss_memory_t *)store;
    int rc;

    (void)deadline_mono_ms;
    pthread_mutex_lock(&m->lock);
    rc = ss_mem_copy_out(ss_mem_find_id(m, session_id), out, err, err_len);
    pthread_mutex_unlock(&m->lock);
    return rc;
}


static int ss_mem_touch(ss_store_t *store,
                        const char *session_id,
                        int64_t idle_expires_at_ms,
                        int64_t last_seen_at_ms,
                        int64_t deadline_mono_ms,
                        char *err,
                        size_t err_len) {
    ss_memory_t *m = (ss_memory_t *)store;
    ss_mem_entry_t *e;
    int rc = CPS_NOT_FOUND;

    (void)deadline_mono_ms;
    (void)err;
    (void)err_len;
    pthread_mutex_lock(&m->lock);
    e = ss_mem_find_id(m, session_id);
    if (e != NULL) {
        e->rec.idle_expires_at_ms = idle_expires_at_ms;
        e->rec.last_seen_at_ms = last_seen_at_ms;
        rc = CPS_OK;
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}


static int ss_mem_revoke(ss_store_t *store,
                         const ss_record_t *rec,
                         int64_t revoked_at_ms,
                         int64_t deadline_mono_ms,
                         char *err,
                         size_t err_len) {
    ss_memory_t *m = (ss_memory_t *)store;
    ss_mem_entry_t *e;
    int rc = CPS_NOT_FOUND;

    (void)deadline_mono_ms;
    (void)err;
    (void)err_len;
    pthread_mutex_lock(&m->lock);
    e = ss_mem_find_id(m, rec->session_id);
    if (e != NULL && e->rec.revoked_at_ms != 0) {
        rc = CPS_ALREADY_EXISTS;
    } else if (e != NULL) {
        e->rec.revoked_at_ms = revoked_at_ms;
        rc = CPS_OK;
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}


static int ss_mem_revoke_all(ss_store_t *store,
                             const char *user_id,
                             int64_t now_ms,
                             int64_t deadline_mono_ms,
                             uint32_t *revoked,
                             char *err,
                             size_t err_len) {
    ss_memory_t *m = (ss_memory_t *)store;
    ss_mem_entry_t *e;
    ss_mem_entry_t *tmp;

    (void)deadline_mono_ms;
    (void)err;
    (void)err_len;
    *revoked = 0;
    pthread_mutex_lock(&m->lock);
    HASH_ITER(hh, m->by_hash, e, tmp) {
        if (strcmp(e->rec.user_id, user_id) == 0 &&
            ss_record_live(&e->rec, now_ms)) {
            e->rec.revoked_at_ms = now_ms;
            if (*revoked < UINT32_MAX) {
                (*revoked)++;
            }
        }
    }
    pthread_mutex_unlock(&m->lock);
    return CPS_OK;
}


/* Newest first: later created_at_ms, then the greater session_id. */
static int ss_mem_newer_first(const void *a, const void *b) {
    const ss_record_t *ra = *(const ss_record_t *const *)a;
    const ss_record_t *rb = *(const ss_record_t *const *)b;

    if (ra->created_at_ms != rb->created_at_ms) {
        return ra->created_at_ms > rb->created_at_ms ? -1 : 1;
    }
    return -strcmp(ra->session_id, rb->session_id);
}


static int ss_mem_list(ss_store_t *store,
                       const char *user_id,
                       int64_t now_ms,
                       size_t max,
                       int64_t deadline_mono_ms,
                       ss_record_t *out,
                       size_t *n,
                       char *err,
                       size_t err_len) {
    ss_memory_t *m = (ss_memory_t *)store;
    const ss_record_t **live = NULL;
    size_t n_live = 0;
    ss_mem_entry_t *e;
    ss_mem_entry_t *tmp;
    int rc = CPS_OK;

    (void)deadline_mono_ms;
    *n = 0;
    pthread_mutex_lock(&m->lock);
    live = calloc(HASH_CNT(hh, m->by_hash) + 1, sizeof(*live));
    if (live == NULL) {
        rc = CPS_INTERNAL;
        goto done;
    }
    HASH_ITER(hh, m->by_hash, e, tmp) {
        if (strcmp(e->rec.user_id, user_id) == 0 &&
            ss_record_live(&e->rec, now_ms)) {
            live[n_live++] = &e->rec;
        }
    }
    qsort(live, n_live, sizeof(*live), ss_mem_newer_first);
    for (size_t i = 0; i < n_live && i < max; i++) {
        if (ss_record_copy(&out[i], live[i]) != CPS_OK) {
            rc = CPS_INTERNAL;
            break;
        }
        *n = i + 1;
    }

done:
    pthread_mutex_unlock(&m->lock);
    free(live);
    if (rc != CPS_OK) {
        ss_set_err(err, err_len, "out of memory");
    }
    return rc;
}


static int ss_mem_purge(ss_store_t *store,
                        int64_t now_ms,
                        int64_t deadline_mono_ms,
                        uint64_t *removed,
                        char *err,
                        size_t err_len) {
    ss_memory_t *m = (ss_memory_t *)store;
    ss_mem_entry_t *e;
    ss_mem_entry_t *tmp;

    (void)deadline_mono_ms;
    (void)err;
    (void)err_len;
    *removed = 0;
    pthread_mutex_lock(&m->lock);
    HASH_ITER(hh, m->by_hash, e, tmp) {
        if (e->rec.absolute_expires_at_ms <= now_ms) {
            HASH_DELETE(hh, m->by_hash, e);
            HASH_DELETE(hh_id, m->by_id, e);
            ss_record_clear(&e->rec);
            free(e);
            (*removed)++;
        }
    }
    pthread_mutex_unlock(&m->lock);
    return CPS_OK;
}


static ss_ttl_t ss_mem_ttl_status(const ss_store_t *store) {
    (void)store;
    return SS_TTL_NONE;
}


static void ss_mem_destroy(ss_store_t *store) {
    ss_memory_t *m = (ss_memory_t *)store;
    ss_mem_entry_t *e;
    ss_mem_entry_t *tmp;

    HASH_CLEAR(hh_id, m->by_id);
    HASH_ITER(hh, m->by_hash, e, tmp) {
        HASH_DELETE(hh, m->by_hash, e);
        ss_record_clear(&e->rec);
        free(e);
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}


static const ss_store_ops_t ss_memory_ops = {
    .kind = "memory",
    .insert = ss_mem_insert,
    .find_by_hash = ss_mem_find_by_hash,
    .find_by_id = ss_mem_find_by_id,
    .touch = ss_mem_touch,
    .revoke = ss_mem_revoke,
    .revoke_all = ss_mem_revoke_all,
    .list = ss_mem_list,
    .purge = ss_mem_purge,
    .ttl_status = ss_mem_ttl_status,
    .destroy = ss_mem_destroy,
};


ss_store_t *ss_memory_new(void) {
    ss_memory_t *m = calloc(1, sizeof(*m));

    if (m == NULL) {
        return NULL;
    }
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        return NULL;
    }
    m->base.ops = &ss_memory_ops;
    return &m->base;
}
