/*
 * In-process key store. Each record sits in two uthash tables, by hash (for
 * verify) and by key_id (so that key_id stays unique, as _id is in MongoDB).
 * One mutex guards both; records are copied in and out under it, so a
 * caller never holds a pointer into the table.
 *
 * uthash is built with HASH_NONFATAL_OOM: an allocation failure inside it
 * leaves the element out of the table (hh.tbl == NULL) instead of exiting.
 */
#define HASH_NONFATAL_OOM 1

#include "keystore.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include "status.h"

typedef struct ks_mem_entry {
    ks_record_t rec;
    UT_hash_handle hh;    /* by rec.hash */
    UT_hash_handle hh_id; /* by rec.key_id */
} ks_mem_entry_t;

typedef struct ks_memory {
    ks_store_t base; /* first member */
    pthread_mutex_t lock;
    ks_mem_entry_t *by_hash;
    ks_mem_entry_t *by_id;
} ks_memory_t;


static void ks_mem_set_err(char *err, size_t err_len, const char *msg) {
    if (err != NULL && err_len > 0) {
        snprintf(err, err_len, "%s", msg);
    }
}


static int ks_mem_insert(ks_store_t *store,
                         const ks_record_t *rec,
                         int64_t deadline_mono_ms,
                         char *err,
                         size_t err_len) {
    ks_memory_t *m = (ks_memory_t *)store;
    ks_mem_entry_t *e;
    ks_mem_entry_t *found = NULL;
    int rc = CPS_OK;

    (void)deadline_mono_ms; /* nothing here waits */
    if (rec->key_id == NULL) {
        ks_mem_set_err(err, err_len, "record has no key_id");
        return CPS_INTERNAL;
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL || ks_record_copy(&e->rec, rec) != CPS_OK) {
        free(e);
        ks_mem_set_err(err, err_len, "out of memory");
        return CPS_INTERNAL;
    }

    pthread_mutex_lock(&m->lock);
    HASH_FIND(hh, m->by_hash, e->rec.hash, KS_HASH_LEN, found);
    if (found == NULL) {
        HASH_FIND(hh_id, m->by_id, e->rec.key_id, strlen(e->rec.key_id), found);
    }
    if (found != NULL) {
        rc = CPS_ALREADY_EXISTS;
        ks_mem_set_err(err, err_len, "a key with this key_id or hash exists");
    } else {
        HASH_ADD(hh, m->by_hash, rec.hash, KS_HASH_LEN, e);
        if (e->hh.tbl != NULL) {
            HASH_ADD_KEYPTR(hh_id, m->by_id, e->rec.key_id,
                            strlen(e->rec.key_id), e);
            if (e->hh_id.tbl == NULL) {
                HASH_DELETE(hh, m->by_hash, e);
            }
        }
        if (e->hh.tbl == NULL || e->hh_id.tbl == NULL) {
            rc = CPS_INTERNAL;
            ks_mem_set_err(err, err_len, "out of memory");
        }
    }
    pthread_mutex_unlock(&m->lock);

    if (rc != CPS_OK) {
        ks_record_clear(&e->rec);
        free(e);
    }
    return rc;
}


static int ks_mem_find_by_hash(ks_store_t *store,
                               const uint8_t hash[KS_HASH_LEN],
                               int64_t deadline_mono_ms,
                               ks_record_t *out,
                               char *err,
                               size_t err_len) {
    ks_memory_t *m = (ks_memory_t *)store;
    ks_mem_entry_t *found = NULL;
    int rc = CPS_NOT_FOUND;

    (void)deadline_mono_ms;
    pthread_mutex_lock(&m->lock);
    HASH_FIND(hh, m->by_hash, hash, KS_HASH_LEN, found);
    if (found != NULL) {
        rc = ks_record_copy(out, &found->rec);
    }
    pthread_mutex_unlock(&m->lock);

    if (rc == CPS_INTERNAL) {
        ks_mem_set_err(err, err_len, "out of memory");
    }
    return rc;
}


static int ks_mem_ping(ks_store_t *store,
                       int64_t deadline_mono_ms,
                       char *err,
                       size_t err_len) {
    (void)store;
    (void)deadline_mono_ms;
    (void)err;
    (void)err_len;
    return CPS_OK;
}


static void ks_mem_destroy(ks_store_t *store) {
    ks_memory_t *m = (ks_memory_t *)store;
    ks_mem_entry_t *e;
    ks_mem_entry_t *tmp;

    HASH_CLEAR(hh_id, m->by_id);
    HASH_ITER(hh, m->by_hash, e, tmp) {
        HASH_DELETE(hh, m->by_hash, e);
        ks_record_clear(&e->rec);
        free(e);
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}


static const ks_ops_t ks_memory_ops = {
    .kind = "memory",
    .insert = ks_mem_insert,
    .find_by_hash = ks_mem_find_by_hash,
    .ping = ks_mem_ping,
    .destroy = ks_mem_destroy,
};


ks_store_t *ks_memory_new(void) {
    ks_memory_t *m = calloc(1, sizeof(*m));

    if (m == NULL) {
        return NULL;
    }
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        return NULL;
    }
    m->base.ops = &ks_memory_ops;
    return &m->base;
}
