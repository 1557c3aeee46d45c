/*
 * In-process key store. Each record sits in two uthash tables, by hash (for
 * verify) and by key_id (so that key_id stays unique, as _id is in MongoDB).
 * One mutex guards both; records are copied in and out under it, so a
 * caller never holds a pointer into the table.
 *
 * Listing a user's keys scans every record: this store is for trying
 * cpstore and for tests, where that is a few thousand at most.
 *
 * Rotation claims sit in a third table, by the rotated key's key_id. The
 * mutex already serialises everything here, so a claim is a plain
 * find-or-add; the table exists so that rotation follows the same steps,
 * and answers the same way, on both backends.
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

/* A rotation claim: key_id was (or is being) rotated to successor. */
typedef struct ks_mem_claim {
    char *key_id;
    char *successor;
    int64_t at_ms;
    UT_hash_handle hh; /* by key_id */
} ks_mem_claim_t;

typedef struct ks_memory {
    ks_store_t base; /* first member */
    pthread_mutex_t lock;
    ks_mem_entry_t *by_hash;
    ks_mem_entry_t *by_id;
    ks_mem_claim_t *claims;
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


/* The entry with this key_id, or NULL. Call with the lock held. */
static ks_mem_entry_t *ks_mem_by_id(ks_memory_t *m, const char *key_id) {
    ks_mem_entry_t *found = NULL;

    HASH_FIND(hh_id, m->by_id, key_id, strlen(key_id), found);
    return found;
}


static int ks_mem_find_by_id(ks_store_t *store,
                             const char *key_id,
                             int64_t deadline_mono_ms,
                             ks_record_t *out,
                             char *err,
                             size_t err_len) {
    ks_memory_t *m = (ks_memory_t *)store;
    ks_mem_entry_t *found;
    int rc = CPS_NOT_FOUND;

    (void)deadline_mono_ms;
    pthread_mutex_lock(&m->lock);
    found = ks_mem_by_id(m, key_id);
    if (found != NULL) {
        rc = ks_record_copy(out, &found->rec);
    }
    pthread_mutex_unlock(&m->lock);

    if (rc == CPS_INTERNAL) {
        ks_mem_set_err(err, err_len, "out of memory");
    }
    return rc;
}


/* qsort order of a listing: newest first, then by key_id so that keys
 * created in the same millisecond still come in a stable order. */
static int ks_mem_newer_first(const void *a, const void *b) {
    const ks_record_t *ra = *(const ks_record_t *const *)a;
    const ks_record_t *rb = *(const ks_record_t *const *)b;

    if (ra->created_at_ms != rb->created_at_ms) {
        return ra->created_at_ms < rb->created_at_ms ? 1 : -1;
    }
    return strcmp(rb->key_id, ra->key_id);
}


/* Copy the newest max of the user's records into *out. Call with the
 * lock held. */
static int ks_mem_collect(ks_memory_t *m,
                          const char *user_id,
                          size_t max,
                          ks_record_t **out,
                          size_t *n) {
    const ks_record_t **mine;
    ks_mem_entry_t *e;
    ks_mem_entry_t *tmp;
    size_t count = 0;
    int rc = CPS_OK;

    HASH_ITER(hh_id, m->by_id, e, tmp) {
        count += strcmp(e->rec.user_id, user_id) == 0;
    }
    if (count == 0 || max == 0) {
        return CPS_OK;
    }
    mine = calloc(count, sizeof(*mine));
    if (mine == NULL) {
        return CPS_INTERNAL;
    }
    count = 0;
    HASH_ITER(hh_id, m->by_id, e, tmp) {
        if (strcmp(e->rec.user_id, user_id) == 0) {
            mine[count++] = &e->rec;
        }
    }
    qsort(mine, count, sizeof(*mine), ks_mem_newer_first);
    if (count > max) {
        count = max;
    }

    *out = calloc(count, sizeof(**out));
    if (*out == NULL) {
        rc = CPS_INTERNAL;
    }
    for (size_t i = 0; rc == CPS_OK && i < count; i++) {
        rc = ks_record_copy(&(*out)[i], mine[i]);
        if (rc == CPS_OK) {
            *n = i + 1;
        }
    }
    free(mine);
    if (rc != CPS_OK) {
        ks_records_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return rc;
}


static int ks_mem_list_by_user(ks_store_t *store,
                               const char *user_id,
                               size_t max,
                               int64_t deadline_mono_ms,
                               ks_record_t **out,
                               size_t *n,
                               char *err,
                               size_t err_len) {
    ks_memory_t *m = (ks_memory_t *)store;
    int rc;

    (void)deadline_mono_ms;
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&m->lock);
    rc = ks_mem_collect(m, user_id, max, out, n);
    pthread_mutex_unlock(&m->lock);

    if (rc != CPS_OK) {
        ks_mem_set_err(err, err_len, "out of memory");
    }
    return rc;
}


/* The one-way changes of a record, applied under the lock. */
typedef enum ks_mem_change {
    KS_MEM_REVOKE,
    KS_MEM_RETIRE,
    KS_MEM_TOUCH,
} ks_mem_change_t;


/* Apply change to the record key_id and copy the result into out (when
 * not NULL). successor is retire's, NULL for the others. */
static int ks_mem_change(ks_memory_t *m,
                         ks_mem_change_t change,
                         const char *key_id,
                         int64_t at_ms,
                         const char *successor,
                         ks_record_t *out,
                         char *err,
                         size_t err_len) {
    ks_mem_entry_t *found;
    ks_record_t *rec;
    char *rotated_to = NULL;
    int rc = CPS_OK;

    /* Allocated before anything changes, so that running out of memory
     * changes nothing. */
    if (successor != NULL && (rotated_to = strdup(successor)) == NULL) {
        ks_mem_set_err(err, err_len, "out of memory");
        return CPS_INTERNAL;
    }
    pthread_mutex_lock(&m->lock);
    found = ks_mem_by_id(m, key_id);
    if (found == NULL) {
        pthread_mutex_unlock(&m->lock);
        free(rotated_to);
        return CPS_NOT_FOUND;
    }
    rec = &found->rec;
    switch (change) {
    case KS_MEM_REVOKE:
        if (rec->revoked_at_ms == 0) {
            rec->revoked_at_ms = at_ms;
        }
        break;
    case KS_MEM_RETIRE:
        free(rec->rotated_to);
        rec->rotated_to = rotated_to;
        if (rec->expires_at_ms == 0 || rec->expires_at_ms > at_ms) {
            rec->expires_at_ms = at_ms;
        }
        break;
    case KS_MEM_TOUCH:
        if (rec->last_used_at_ms < at_ms) {
            rec->last_used_at_ms = at_ms;
        }
        break;
    }
    if (out != NULL) {
        rc = ks_record_copy(out, rec);
    }
    pthread_mutex_unlock(&m->lock);

    if (rc != CPS_OK) {
        ks_mem_set_err(err, err_len, "out of memory");
    }
    return rc;
}


static int ks_mem_revoke(ks_store_t *store,
                         const char *key_id,
                         int64_t at_ms,
                         int64_t deadline_mono_ms,
                         ks_record_t *out,
                         char *err,
                         size_t err_len) {
    (void)deadline_mono_ms;
    return ks_mem_change((ks_memory_t *)store, KS_MEM_REVOKE, key_id, at_ms,
                         NULL, out, err, err_len);
}


static int ks_mem_retire(ks_store_t *store,
                         const char *key_id,
                         int64_t at_ms,
                         const char *successor,
                         int64_t deadline_mono_ms,
                         ks_record_t *out,
                         char *err,
                         size_t err_len) {
    (void)deadline_mono_ms;
    return ks_mem_change((ks_memory_t *)store, KS_MEM_RETIRE, key_id, at_ms,
                         successor, out, err, err_len);
}


static int ks_mem_touch(ks_store_t *store,
                        const char *key_id,
                        int64_t at_ms,
                        int64_t deadline_mono_ms,
                        char *err,
                        size_t err_len) {
    (void)deadline_mono_ms;
    return ks_mem_change((ks_memory_t *)store, KS_MEM_TOUCH, key_id, at_ms,
                         NULL, NULL, err, err_len);
}


static void ks_mem_claim_free(ks_mem_claim_t *claim) {
    if (claim != NULL) {
        free(claim->key_id);
        free(claim->successor);
        free(claim);
    }
}


static int ks_mem_claim_rotation(ks_store_t *store,
                                 const char *key_id,
                                 const char *successor,
                                 int64_t at_ms,
                                 int64_t deadline_mono_ms,
                                 char **winner,
                                 char *err,
                                 size_t err_len) {
    ks_memory_t *m = (ks_memory_t *)store;
    ks_mem_claim_t *claim = calloc(1, sizeof(*claim));
    ks_mem_claim_t *found = NULL;
    int rc = CPS_OK;

    (void)deadline_mono_ms;
    /* Allocated before the lock, so that running out of memory claims
     * nothing. */
    if (claim == NULL || (claim->key_id = strdup(key_id)) == NULL ||
        (claim->successor = strdup(successor)) == NULL) {
        ks_mem_claim_free(claim);
        ks_mem_set_err(err, err_len, "out of memory");
        return CPS_INTERNAL;
    }
    claim->at_ms = at_ms;

    pthread_mutex_lock(&m->lock);
    HASH_FIND_STR(m->claims, key_id, found);
    if (found != NULL) {
        rc = CPS_ALREADY_EXISTS;
        if (winner != NULL) {
            *winner = strdup(found->successor);
        }
    } else {
        HASH_ADD_KEYPTR(hh, m->claims, claim->key_id, strlen(claim->key_id),
                        claim);
        if (claim->hh.tbl == NULL) {
            rc = CPS_INTERNAL;
        }
    }
    pthread_mutex_unlock(&m->lock);

    if (rc == CPS_ALREADY_EXISTS) {
        ks_mem_set_err(err, err_len, "the key has a rotation claim already");
    } else if (rc == CPS_INTERNAL) {
        ks_mem_set_err(err, err_len, "out of memory");
    }
    if (rc != CPS_OK) {
        ks_mem_claim_free(claim);
    }
    return rc;
}


static int ks_mem_release_rotation(ks_store_t *store,
                                   const char *key_id,
                                   const char *successor,
                                   int64_t deadline_mono_ms,
                                   char *err,
                                   size_t err_len) {
    ks_memory_t *m = (ks_memory_t *)store;
    ks_mem_claim_t *found = NULL;

    (void)deadline_mono_ms;
    (void)err;
    (void)err_len;
    pthread_mutex_lock(&m->lock);
    HASH_FIND_STR(m->claims, key_id, found);
    if (found != NULL && strcmp(found->successor, successor) == 0) {
        HASH_DEL(m->claims, found);
    } else {
        found = NULL;
    }
    pthread_mutex_unlock(&m->lock);
    ks_mem_claim_free(found);
    return CPS_OK;
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
    ks_mem_claim_t *claim;
    ks_mem_claim_t *claim_tmp;

    HASH_ITER(hh, m->claims, claim, claim_tmp) {
        HASH_DEL(m->claims, claim);
        ks_mem_claim_free(claim);
    }
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
    .find_by_id = ks_mem_find_by_id,
    .list_by_user = ks_mem_list_by_user,
    .revoke = ks_mem_revoke,
    .retire = ks_mem_retire,
    .claim_rotation = ks_mem_claim_rotation,
    .release_rotation = ks_mem_release_rotation,
    .touch = ks_mem_touch,
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
