/*
 * What every key store shares: the record's memory management and the
 * wrappers that check the deadline before handing a call to a backend.
 */
#include "keystore.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "status.h"


void ks_record_init(ks_record_t *rec) {
    memset(rec, 0, sizeof(*rec));
}


void ks_record_clear(ks_record_t *rec) {
    free(rec->key_id);
    free(rec->hint);
    free(rec->user_id);
    free(rec->name);
    for (size_t i = 0; i < rec->n_scopes; i++) {
        free(rec->scopes[i]);
    }
    free(rec->scopes);
    free(rec->org_id);
    free(rec->project_id);
    free(rec->rotated_from);
    free(rec->rotated_to);
    for (size_t i = 0; i < rec->n_metadata; i++) {
        free(rec->metadata[i].key);
        free(rec->metadata[i].value);
    }
    free(rec->metadata);
    memset(rec, 0, sizeof(*rec));
}


/* Copy an optional string: NULL stays NULL. 0 on allocation failure. */
static int ks_dup(char **dst, const char *src) {
    if (src == NULL) {
        *dst = NULL;
        return 1;
    }
    *dst = strdup(src);
    return *dst != NULL;
}


static int ks_copy_lists(ks_record_t *dst, const ks_record_t *src) {
    if (src->n_scopes > 0) {
        dst->scopes = calloc(src->n_scopes, sizeof(*dst->scopes));
        if (dst->scopes == NULL) {
            return 0;
        }
        dst->n_scopes = src->n_scopes;
        for (size_t i = 0; i < src->n_scopes; i++) {
            if (!ks_dup(&dst->scopes[i], src->scopes[i])) {
                return 0;
            }
        }
    }
    if (src->n_metadata > 0) {
        dst->metadata = calloc(src->n_metadata, sizeof(*dst->metadata));
        if (dst->metadata == NULL) {
            return 0;
        }
        dst->n_metadata = src->n_metadata;
        for (size_t i = 0; i < src->n_metadata; i++) {
            if (!ks_dup(&dst->metadata[i].key, src->metadata[i].key) ||
                !ks_dup(&dst->metadata[i].value, src->metadata[i].value)) {
                return 0;
            }
        }
    }
    return 1;
}


int ks_record_copy(ks_record_t *dst, const ks_record_t *src) {
    ks_record_init(dst);
    memcpy(dst->hash, src->hash, KS_HASH_LEN);
    dst->created_at_ms = src->created_at_ms;
    dst->expires_at_ms = src->expires_at_ms;
    dst->revoked_at_ms = src->revoked_at_ms;
    dst->last_used_at_ms = src->last_used_at_ms;

    if (!ks_dup(&dst->key_id, src->key_id) || !ks_dup(&dst->hint, src->hint) ||
        !ks_dup(&dst->user_id, src->user_id) ||
        !ks_dup(&dst->name, src->name) || !ks_dup(&dst->org_id, src->org_id) ||
        !ks_dup(&dst->project_id, src->project_id) ||
        !ks_dup(&dst->rotated_from, src->rotated_from) ||
        !ks_dup(&dst->rotated_to, src->rotated_to) ||
        !ks_copy_lists(dst, src)) {
        ks_record_clear(dst);
        return CPS_INTERNAL;
    }
    return CPS_OK;
}


void ks_records_free(ks_record_t *recs, size_t n) {
    if (recs == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        ks_record_clear(&recs[i]);
    }
    free(recs);
}


/* CPS_DEADLINE_EXCEEDED, with a reason, once the deadline has passed. */
static int
ks_check_deadline(int64_t deadline_mono_ms, char *err, size_t err_len) {
    if (deadline_mono_ms != 0 && clock_mono_ms() >= deadline_mono_ms) {
        if (err != NULL && err_len > 0) {
            snprintf(err, err_len,
                     "deadline passed before the key store "
                     "was called");
        }
        return CPS_DEADLINE_EXCEEDED;
    }
    return CPS_OK;
}


const char *ks_kind(const ks_store_t *store) {
    return store->ops->kind;
}


int ks_insert(ks_store_t *store,
              const ks_record_t *rec,
              int64_t deadline_mono_ms,
              char *err,
              size_t err_len) {
    int rc = ks_check_deadline(deadline_mono_ms, err, err_len);

    if (rc != CPS_OK) {
        return rc;
    }
    return store->ops->insert(store, rec, deadline_mono_ms, err, err_len);
}


int ks_find_by_hash(ks_store_t *store,
                    const uint8_t hash[KS_HASH_LEN],
                    int64_t deadline_mono_ms,
                    ks_record_t *out,
                    char *err,
                    size_t err_len) {
    int rc = ks_check_deadline(deadline_mono_ms, err, err_len);

    if (rc != CPS_OK) {
        return rc;
    }
    return store->ops->find_by_hash(store, hash, deadline_mono_ms, out, err,
                                    err_len);
}


int ks_find_by_id(ks_store_t *store,
                  const char *key_id,
                  int64_t deadline_mono_ms,
                  ks_record_t *out,
                  char *err,
                  size_t err_len) {
    int rc = ks_check_deadline(deadline_mono_ms, err, err_len);

    if (rc != CPS_OK) {
        return rc;
    }
    return store->ops->find_by_id(store, key_id, deadline_mono_ms, out, err,
                                  err_len);
}


int ks_list_by_user(ks_store_t *store,
                    const char *user_id,
                    size_t max,
                    int64_t deadline_mono_ms,
                    ks_record_t **out,
                    size_t *n,
                    char *err,
                    size_t err_len) {
    int rc;

    *out = NULL;
    *n = 0;
    rc = ks_check_deadline(deadline_mono_ms, err, err_len);
    if (rc != CPS_OK) {
        return rc;
    }
    return store->ops->list_by_user(store, user_id, max, deadline_mono_ms, out,
                                    n, err, err_len);
}


int ks_revoke(ks_store_t *store,
              const char *key_id,
              int64_t at_ms,
              int64_t deadline_mono_ms,
              ks_record_t *out,
              char *err,
              size_t err_len) {
    int rc = ks_check_deadline(deadline_mono_ms, err, err_len);

    if (rc != CPS_OK) {
        return rc;
    }
    return store->ops->revoke(store, key_id, at_ms, deadline_mono_ms, out, err,
                              err_len);
}


int ks_retire(ks_store_t *store,
              const char *key_id,
              int64_t at_ms,
              const char *successor,
              int64_t deadline_mono_ms,
              ks_record_t *out,
              char *err,
              size_t err_len) {
    int rc = ks_check_deadline(deadline_mono_ms, err, err_len);

    if (rc != CPS_OK) {
        return rc;
    }
    return store->ops->retire(store, key_id, at_ms, successor, deadline_mono_ms,
                              out, err, err_len);
}


int ks_claim_rotation(ks_store_t *store,
                      const char *key_id,
                      const char *successor,
                      int64_t at_ms,
                      int64_t deadline_mono_ms,
                      char **winner,
                      char *err,
                      size_t err_len) {
    int rc;

    if (winner != NULL) {
        *winner = NULL;
    }
    rc = ks_check_deadline(deadline_mono_ms, err, err_len);
    if (rc != CPS_OK) {
        return rc;
    }
    return store->ops->claim_rotation(store, key_id, successor, at_ms,
                                      deadline_mono_ms, winner, err, err_len);
}


int ks_release_rotation(ks_store_t *store,
                        const char *key_id,
                        const char *successor,
                        int64_t deadline_mono_ms,
                        char *err,
                        size_t err_len) {
    int rc = ks_check_deadline(deadline_mono_ms, err, err_len);

    if (rc != CPS_OK) {
        return rc;
    }
    return store->ops->release_rotation(store, key_id, successor,
                                        deadline_mono_ms, err, err_len);
}


int ks_touch(ks_store_t *store,
             const char *key_id,
             int64_t at_ms,
             int64_t deadline_mono_ms,
             char *err,
             size_t err_len) {
    int rc = ks_check_deadline(deadline_mono_ms, err, err_len);

    if (rc != CPS_OK) {
        return rc;
    }
    return store->ops->touch(store, key_id, at_ms, deadline_mono_ms, err,
                             err_len);
}


int ks_ping(ks_store_t *store,
            int64_t deadline_mono_ms,
            char *err,
            size_t err_len) {
    int rc = ks_check_deadline(deadline_mono_ms, err, err_len);

    if (rc != CPS_OK) {
        return rc;
    }
    return store->ops->ping(store, deadline_mono_ms, err, err_len);
}


void ks_free(ks_store_t *store) {
    if (store != NULL) {
        store->ops->destroy(store);
    }
}
