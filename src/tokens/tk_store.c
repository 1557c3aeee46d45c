/*
 * Token store records and the deadline-checking wrappers around a
 * backend's operations.
 */
#include "tk_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "status.h"


void tk_record_init(tk_record_t *rec) {
    memset(rec, 0, sizeof(*rec));
}


void tk_record_clear(tk_record_t *rec) {
    free(rec->kind);
    free(rec->subject);
    free(rec->client_id);
    free(rec->redirect_uri);
    free(rec->pkce_challenge);
    for (size_t i = 0; i < rec->n_metadata; i++) {
        free(rec->metadata[i].key);
        free(rec->metadata[i].value);
    }
    free(rec->metadata);
    tk_record_init(rec);
}


/* strdup that maps NULL to NULL. 0 when out of memory. */
static int tk_dup(char **dst, const char *src) {
    *dst = NULL;
    if (src == NULL) {
        return 1;
    }
    *dst = strdup(src);
    return *dst != NULL;
}


int tk_record_copy(tk_record_t *dst, const tk_record_t *src) {
    tk_record_init(dst);
    memcpy(dst->token_id, src->token_id, sizeof(dst->token_id));
    memcpy(dst->hash, src->hash, TK_HASH_LEN);
    dst->created_at_ms = src->created_at_ms;
    dst->expires_at_ms = src->expires_at_ms;
    dst->purge_at_ms = src->purge_at_ms;
    dst->revoked_at_ms = src->revoked_at_ms;
    if (!tk_dup(&dst->kind, src->kind) ||
        !tk_dup(&dst->subject, src->subject) ||
        !tk_dup(&dst->client_id, src->client_id) ||
        !tk_dup(&dst->redirect_uri, src->redirect_uri) ||
        !tk_dup(&dst->pkce_challenge, src->pkce_challenge)) {
        goto fail;
    }
    if (src->n_metadata > 0) {
        dst->metadata = calloc(src->n_metadata, sizeof(*dst->metadata));
        if (dst->metadata == NULL) {
            goto fail;
        }
        for (size_t i = 0; i < src->n_metadata; i++) {
            dst->n_metadata = i + 1;
            if (!tk_dup(&dst->metadata[i].key, src->metadata[i].key) ||
                !tk_dup(&dst->metadata[i].value, src->metadata[i].value)) {
                goto fail;
            }
        }
    }
    return CPS_OK;

fail:
    tk_record_clear(dst);
    return CPS_INTERNAL;
}


/* CPS_OK while the deadline has not passed (0: none). */
static int tk_store_check_deadline(int64_t deadline_mono_ms,
                                   const char *what,
                                   char *err,
                                   size_t err_len) {
    if (deadline_mono_ms != 0 && clock_mono_ms() >= deadline_mono_ms) {
        if (err != NULL && err_len > 0) {
            snprintf(err, err_len, "%s: deadline passed", what);
        }
        return CPS_DEADLINE_EXCEEDED;
    }
    return CPS_OK;
}


int tk_store_insert(tk_store_t *store,
                    const tk_record_t *rec,
                    int64_t deadline_mono_ms,
                    char *err,
                    size_t err_len) {
    int rc =
        tk_store_check_deadline(deadline_mono_ms, "insert token", err, err_len);

    if (rc != CPS_OK) {
        return rc;
    }
    return store->ops->insert(store, rec, deadline_mono_ms, err, err_len);
}


int tk_store_find_by_hash(tk_store_t *store,
                          const uint8_t hash[TK_HASH_LEN],
                          int64_t deadline_mono_ms,
                          tk_record_t *out,
                          char *err,
                          size_t err_len) {
    int rc =
        tk_store_check_deadline(deadline_mono_ms, "find token", err, err_len);

    if (rc != CPS_OK) {
        return rc;
    }
    return store->ops->find_by_hash(store, hash, deadline_mono_ms, out, err,
                                    err_len);
}


int tk_store_spend(tk_store_t *store,
                   const tk_spend_t *spend,
                   int64_t deadline_mono_ms,
                   char *err,
                   size_t err_len) {
    int rc =
        tk_store_check_deadline(deadline_mono_ms, "spend token", err, err_len);

    if (rc != CPS_OK) {
        return rc;
    }
    return store->ops->spend(store, spend, deadline_mono_ms, err, err_len);
}


int tk_store_find_spend(tk_store_t *store,
                        const char *token_id,
                        int64_t deadline_mono_ms,
                        tk_spend_t *out,
                        char *err,
                        size_t err_len) {
    int rc = tk_store_check_deadline(deadline_mono_ms, "find spent mark", err,
                                     err_len);

    if (rc != CPS_OK) {
        return rc;
    }
    return store->ops->find_spend(store, token_id, deadline_mono_ms, out, err,
                                  err_len);
}


int tk_store_mark_revoked(tk_store_t *store,
                          const char *token_id,
                          int64_t at_ms,
                          int64_t deadline_mono_ms,
                          char *err,
                          size_t err_len) {
    int rc =
        tk_store_check_deadline(deadline_mono_ms, "revoke token", err, err_len);

    if (rc != CPS_OK) {
        return rc;
    }
    return store->ops->mark_revoked(store, token_id, at_ms, deadline_mono_ms,
                                    err, err_len);
}


int tk_store_purge(tk_store_t *store,
                   int64_t cutoff_ms,
                   int64_t deadline_mono_ms,
                   uint64_t *removed,
                   char *err,
                   size_t err_len) {
    int rc =
        tk_store_check_deadline(deadline_mono_ms, "purge tokens", err, err_len);

    *removed = 0;
    if (rc != CPS_OK) {
        return rc;
    }
    return store->ops->purge(store, cutoff_ms, deadline_mono_ms, removed, err,
                             err_len);
}


tk_ttl_index_t tk_store_ttl_index(tk_store_t *store) {
    return store->ops->ttl_index(store);
}


const char *tk_store_kind(const tk_store_t *store) {
    return store->ops->kind;
}


void tk_store_free(tk_store_t *store) {
    if (store != NULL) {
        store->ops->destroy(store);
    }
}
