/*
 * In-process token store. Token records sit in two uthash tables, by hash
 * (consume and revoke look tokens up that way) and by token_id (which must
 * stay unique, as _id is in MongoDB); spent marks sit in a third table by
 * token_id. One mutex guards all three, so "insert the spent mark unless
 * one exists" is a single step here just as the unique _id makes it one in
 * MongoDB. Records are copied in and out under the lock; a caller never
 * holds a pointer into a table.
 *
 * uthash is built with HASH_NONFATAL_OOM: an allocation failure inside it
 * leaves the element out of the table (hh.tbl == NULL) instead of exiting.
 */
#define HASH_NONFATAL_OOM 1

#include "tk_store.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include "status.h"

typedef struct tkm_token {
    tk_record_t rec;
    UT_hash_handle hh;    /* by rec.hash */
    UT_hash_handle hh_id; /* by rec.token_id */
} tkm_token_t;

typedef struct tkm_spend {
    tk_spend_t spend;
    UT_hash_handle hh; /* by spend.token_id */
} tkm_spend_t;

typedef struct tk_memory {
    tk_store_t base; /* first member */
    pthread_mutex_t lock;
    tkm_token_t *by_hash;
    tkm_token_t *by_id;
    tkm_spend_t *spends;
} tk_memory_t;


static void tkm_set_err(char *err, size_t err_len, const char *msg) {
    if (err != NULL && err_len > 0) {
        snprintf(err, err_len, "%s", msg);
    }
}


/* The token with this id, or NULL. Call with the lock held. */
static tkm_token_t *tkm_by_id(tk_memory_t *m, const char *token_id) {
    tkm_token_t *found = NULL;

    HASH_FIND(hh_id, m->by_id, token_id, strlen(token_id), found);
    return found;
}


/* Add e to both token tables, or to neither. Call with the lock held.
 * CPS_OK, CPS_ALREADY_EXISTS or CPS_INTERNAL. */
static int tkm_add(tk_memory_t *m, tkm_token_t *e) {
    tkm_token_t *found = NULL;

    HASH_FIND(hh, m->by_hash, e->rec.hash, TK_HASH_LEN, found);
    if (found != NULL || tkm_by_id(m, e->rec.token_id) != NULL) {
        return CPS_ALREADY_EXISTS;
    }
    HASH_ADD(hh, m->by_hash, rec.hash, TK_HASH_LEN, e);
    if (e->hh.tbl == NULL) {
        return CPS_INTERNAL;
    }
    HASH_ADD_KEYPTR(hh_id, m->by_id, e->rec.token_id, strlen(e->rec.token_id),
                    e);
    if (e->hh_id.tbl == NULL) {
        HASH_DELETE(hh, m->by_hash, e);
        return CPS_INTERNAL;
    }
    return CPS_OK;
}


static int tkm_insert(tk_store_t *store,
                      const tk_record_t *rec,
                      int64_t deadline_mono_ms,
                      char *err,
                      size_t err_len) {
    tk_memory_t *m = (tk_memory_t *)store;
    tkm_token_t *e;
    int rc;

    (void)deadline_mono_ms; /* nothing here waits */
    e = calloc(1, sizeof(*e));
    if (e == NULL || tk_record_copy(&e->rec, rec) != CPS_OK) {
        free(e);
        tkm_set_err(err, err_len, "out of memory");
        return CPS_INTERNAL;
    }

    pthread_mutex_lock(&m->lock);
    rc = tkm_add(m, e);
    pthread_mutex_unlock(&m->lock);

    if (rc != CPS_OK) {
        if (rc == CPS_INTERNAL) {
            tkm_set_err(err, err_len, "out of memory");
        }
        tk_record_clear(&e->rec);
        free(e);
    }
    return rc;
}


static int tkm_find_by_hash(tk_store_t *store,
                            const uint8_t hash[TK_HASH_LEN],
                            int64_t deadline_mono_ms,
                            tk_record_t *out,
                            char *err,
                            size_t err_len) {
    tk_memory_t *m = (tk_memory_t *)store;
    tkm_token_t *found = NULL;
    int rc = CPS_NOT_FOUND;

    (void)deadline_mono_ms;
    pthread_mutex_lock(&m->lock);
    HASH_FIND(hh, m->by_hash, hash, TK_HASH_LEN, found);
    if (found != NULL) {
        rc = tk_record_copy(out, &found->rec);
    }
    pthread_mutex_unlock(&m->lock);

    if (rc == CPS_INTERNAL) {
        tkm_set_err(err, err_len, "out of memory");
    }
    return rc;
}


static int tkm_spend(tk_store_t *store,
                     const tk_spend_t *spend,
                     int64_t deadline_mono_ms,
                     char *err,
                     size_t err_len) {
    tk_memory_t *m = (tk_memory_t *)store;
    tkm_spend_t *e;
    tkm_spend_t *found = NULL;
    int rc = CPS_OK;

    (void)deadline_mono_ms;
    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        tkm_set_err(err, err_len, "out of memory");
        return CPS_INTERNAL;
    }
    e->spend = *spend;

    pthread_mutex_lock(&m->lock);
    HASH_FIND_STR(m->spends, e->spend.token_id, found);
    if (found != NULL) {
        rc = CPS_ALREADY_EXISTS;
    } else {
        HASH_ADD_STR(m->spends, spend.token_id, e);
        if (e->hh.tbl == NULL) {
            rc = CPS_INTERNAL;
        }
    }
    pthread_mutex_unlock(&m->lock);

    if (rc != CPS_OK) {
        if (rc == CPS_INTERNAL) {
            tkm_set_err(err, err_len, "out of memory");
        }
        free(e);
    }
    return rc;
}


static int tkm_find_spend(tk_store_t *store,
                          const char *token_id,
                          int64_t deadline_mono_ms,
                          tk_spend_t *out,
                          char *err,
                          size_t err_len) {
    tk_memory_t *m = (tk_memory_t *)store;
    tkm_spend_t *found = NULL;
    int rc = CPS_NOT_FOUND;

    (void)deadline_mono_ms;
    (void)err;
    (void)err_len;
    pthread_mutex_lock(&m->lock);
    HASH_FIND_STR(m->spends, token_id, found);
    if (found != NULL) {
        *out = found->spend;
        rc = CPS_OK;
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}


static int tkm_mark_revoked(tk_store_t *store,
                            const char *token_id,
                            int64_t at_ms,
                            int64_t deadline_mono_ms,
                            char *err,
                            size_t err_len) {
    tk_memory_t *m = (tk_memory_t *)store;
    tkm_token_t *found;

    (void)deadline_mono_ms;
    (void)err;
    (void)err_len;
    pthread_mutex_lock(&m->lock);
    found = tkm_by_id(m, token_id);
    if (found != NULL && found->rec.revoked_at_ms == 0) {
        found->rec.revoked_at_ms = at_ms;
    }
    pthread_mutex_unlock(&m->lock);
    return CPS_OK;
}


static int tkm_purge(tk_store_t *store,
                     int64_t cutoff_ms,
                     int64_t deadline_mono_ms,
                     uint64_t *removed,
                     char *err,
                     size_t err_len) {
    tk_memory_t *m = (tk_memory_t *)store;
    tkm_token_t *t;
    tkm_token_t *t_next;
    tkm_spend_t *s;
    tkm_spend_t *s_next;

    (void)deadline_mono_ms;
    (void)err;
    (void)err_len;
    *removed = 0;
    pthread_mutex_lock(&m->lock);
    HASH_ITER(hh_id, m->by_id, t, t_next) {
        if (t->rec.expires_at_ms <= cutoff_ms) {
            HASH_DELETE(hh, m->by_hash, t);
            HASH_DELETE(hh_id, m->by_id, t);
            tk_record_clear(&t->rec);
            free(t);
            (*removed)++;
        }
    }
    HASH_ITER(hh, m->spends, s, s_next) {
        if (s->spend.expires_at_ms <= cutoff_ms) {
            HASH_DEL(m->spends, s);
            free(s);
        }
    }
    pthread_mutex_unlock(&m->lock);
    return CPS_OK;
}


static tk_ttl_index_t tkm_ttl_index(tk_store_t *store) {
    (void)store;
    return TK_TTL_NONE;
}


static void tkm_destroy(tk_store_t *store) {
    tk_memory_t *m = (tk_memory_t *)store;
    tkm_token_t *t;
    tkm_token_t *t_next;
    tkm_spend_t *s;
    tkm_spend_t *s_next;

    HASH_ITER(hh_id, m->by_id, t, t_next) {
        HASH_DELETE(hh, m->by_hash, t);
        HASH_DELETE(hh_id, m->by_id, t);
        tk_record_clear(&t->rec);
        free(t);
    }
    HASH_ITER(hh, m->spends, s, s_next) {
        HASH_DEL(m->spends, s);
        free(s);
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}


static const tk_store_ops_t tk_memory_ops = {
    .kind = "memory",
    .insert = tkm_insert,
    .find_by_hash = tkm_find_by_hash,
    .spend = tkm_spend,
    .find_spend = tkm_find_spend,
    .mark_revoked = tkm_mark_revoked,
    .purge = tkm_purge,
    .ttl_index = tkm_ttl_index,
    .destroy = tkm_destroy,
};


tk_store_t *tk_memory_new(void) {
    tk_memory_t *m = calloc(1, sizeof(*m));

    if (m == NULL) {
        return NULL;
    }
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        return NULL;
    }
    m->base.ops = &tk_memory_ops;
    return &m->base;
}
