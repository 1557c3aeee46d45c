/*
 * last_used_at below the RPC layer: verify notes the time in memory,
 * ak_flush_usage() writes it to the key store. Every behaviour runs on the
 * memory store and on the MongoDB store (CPSTORE_TEST_MONGO_URI, a fresh
 * database per test, dropped at the end). Two services on one store stand
 * for two cpstored instances on one database.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apikeys.h"
#include "clock.h"
#include "harness.h"
#include "keystore.h"
#include "mongo.h"
#include "status.h"

#define PREFIX "cpk_test"

static const uint8_t secret[32] = "test secret of thirty-two bytes";

static struct {
    mg_t *mg;
    ks_store_t *store;
    ak_service_t *svc;   /* instance 1 */
    ak_service_t *other; /* instance 2, on the same store */
    char db[96];
} fx;


/* ---- fixtures ----------------------------------------------------------- */

static void fx_services(void) {
    cr_assert_not_null(fx.store);
    fx.svc = ak_service_new(fx.store, secret, sizeof(secret), PREFIX);
    fx.other = ak_service_new(fx.store, secret, sizeof(secret), PREFIX);
    cr_assert_not_null(fx.svc);
    cr_assert_not_null(fx.other);
}


static void fx_memory(void) {
    memset(&fx, 0, sizeof(fx));
    fx.store = ks_memory_new();
    fx_services();
}


static void fx_mongo(void) {
    char err[256] = "";

    memset(&fx, 0, sizeof(fx));
    h_unique(fx.db, sizeof(fx.db), "cpsuse");
    fx.mg = mg_open(h_mongo_uri(), fx.db, err, sizeof(err));
    cr_assert_not_null(fx.mg, "mg_open: %s", err);
    fx.store = ks_mongo_new(fx.mg, err, sizeof(err));
    cr_assert_not_null(fx.store, "ks_mongo_new: %s", err);
    fx_services();
}


static void fx_done(void) {
    ak_service_free(fx.svc);
    ak_service_free(fx.other);
    ks_free(fx.store);
    if (fx.mg != NULL) {
        mongoc_client_t *client = mg_pop(fx.mg);
        mongoc_database_t *db = mongoc_client_get_database(client, fx.db);
        bson_error_t error;

        if (!mongoc_database_drop(db, &error)) {
            cr_log_warn("drop %s: %s", fx.db, error.message);
        }
        mongoc_database_destroy(db);
        mg_push(fx.mg, client);
    }
    mg_close(fx.mg);
    memset(&fx, 0, sizeof(fx));
}


#define BOTH_STORES(name)                                                      \
    static void name(void);                                                    \
    Test(usage_memory, name, .init = fx_memory, .fini = fx_done,               \
         .timeout = 60) {                                                      \
        name();                                                                \
    }                                                                          \
    Test(usage_mongo, name, .init = fx_mongo, .fini = fx_done,                 \
         .timeout = 60) {                                                      \
        name();                                                                \
    }                                                                          \
    static void name(void)


/* ---- helpers ------------------------------------------------------------ */

typedef struct made_key {
    char key[128];
    char key_id[48];
} made_key_t;


static made_key_t make_key(void) {
    Cpstore__V1__CreateApiKeyRequest req =
        CPSTORE__V1__CREATE_API_KEY_REQUEST__INIT;
    Cpstore__V1__CreateApiKeyResponse resp;
    made_key_t k;
    char err[256] = "";
    int rc;

    req.user_id = "user-1";
    rc = ak_create(fx.svc, &req, clock_mono_ms() + 10000, &resp, err,
                   sizeof(err));
    cr_assert_eq(rc, CPS_OK, "create: %s (%s)", cps_status_name(rc), err);
    snprintf(k.key, sizeof(k.key), "%s", resp.key);
    snprintf(k.key_id, sizeof(k.key_id), "%s", resp.key_id);
    ak_create_response_clear(&resp);
    return k;
}


static Cpstore__V1__VerifyCode verify_with(ak_service_t *svc, const char *key) {
    Cpstore__V1__VerifyApiKeyRequest req =
        CPSTORE__V1__VERIFY_API_KEY_REQUEST__INIT;
    Cpstore__V1__VerifyApiKeyResponse resp;
    Cpstore__V1__VerifyCode code;
    char err[256] = "";
    int rc;

    req.key = (char *)key;
    rc = ak_verify(svc, &req, clock_mono_ms() + 10000, &resp, err, sizeof(err));
    cr_assert_eq(rc, CPS_OK, "verify: %s (%s)", cps_status_name(rc), err);
    code = resp.code;
    ak_verify_response_clear(&resp);
    return code;
}


static int flush(ak_service_t *svc, int64_t deadline_mono_ms) {
    char err[256] = "";

    return ak_flush_usage(svc, deadline_mono_ms, err, sizeof(err));
}


static void flush_ok(ak_service_t *svc) {
    char err[256] = "";
    int rc = ak_flush_usage(svc, clock_mono_ms() + 10000, err, sizeof(err));

    cr_assert_eq(rc, CPS_OK, "flush: %s (%s)", cps_status_name(rc), err);
}


/* The key's last_used_at as Get reports it. */
static int64_t last_used(const char *key_id) {
    Cpstore__V1__GetApiKeyRequest req = CPSTORE__V1__GET_API_KEY_REQUEST__INIT;
    Cpstore__V1__GetApiKeyResponse resp;
    char err[256] = "";
    int64_t t;
    int rc;

    req.key_id = (char *)key_id;
    rc = ak_get(fx.svc, &req, clock_mono_ms() + 10000, &resp, err, sizeof(err));
    cr_assert_eq(rc, CPS_OK, "get: %s (%s)", cps_status_name(rc), err);
    t = resp.key->last_used_at_ms;
    ak_get_response_clear(&resp);
    return t;
}


#define V_VALID   CPSTORE__V1__VERIFY_CODE__VALID
#define V_REVOKED CPSTORE__V1__VERIFY_CODE__REVOKED


/* ---- behaviours --------------------------------------------------------- */

BOTH_STORES(verify_alone_writes_no_last_used_time) {
    made_key_t k = make_key();

    for (int i = 0; i < 3; i++) {
        cr_assert_eq(verify_with(fx.svc, k.key), V_VALID);
    }
    cr_assert_eq(last_used(k.key_id), 0);
}


BOTH_STORES(a_flush_writes_the_time_of_the_latest_verify) {
    made_key_t k = make_key();
    made_key_t idle = make_key();
    int64_t before, after;

    cr_assert_eq(verify_with(fx.svc, k.key), V_VALID);
    usleep(5000);
    before = clock_now_ms();
    cr_assert_eq(verify_with(fx.svc, k.key), V_VALID);
    after = clock_now_ms();
    flush_ok(fx.svc);

    cr_assert_geq(last_used(k.key_id), before);
    cr_assert_leq(last_used(k.key_id), after);
    cr_assert_eq(last_used(idle.key_id), 0);
}


BOTH_STORES(flushes_in_any_order_never_move_last_used_back) {
    made_key_t k = make_key();
    int64_t before, after;

    /* Instance 1 sees the key first, instance 2 later; 2 flushes first. */
    cr_assert_eq(verify_with(fx.svc, k.key), V_VALID);
    usleep(5000);
    before = clock_now_ms();
    cr_assert_eq(verify_with(fx.other, k.key), V_VALID);
    after = clock_now_ms();
    flush_ok(fx.other);
    flush_ok(fx.svc);

    cr_assert_geq(last_used(k.key_id), before);
    cr_assert_leq(last_used(k.key_id), after);
}


BOTH_STORES(a_failed_flush_keeps_the_times_for_the_next_one) {
    made_key_t k = make_key();
    int64_t before, after;

    before = clock_now_ms();
    cr_assert_eq(verify_with(fx.svc, k.key), V_VALID);
    after = clock_now_ms();

    /* A deadline already passed: nothing can be written. */
    cr_assert_eq(flush(fx.svc, clock_mono_ms() - 1), CPS_DEADLINE_EXCEEDED);
    cr_assert_eq(last_used(k.key_id), 0);

    flush_ok(fx.svc);
    cr_assert_geq(last_used(k.key_id), before);
    cr_assert_leq(last_used(k.key_id), after);
}


BOTH_STORES(a_refused_key_still_counts_as_used) {
    made_key_t k = make_key();
    Cpstore__V1__RevokeApiKeyRequest req =
        CPSTORE__V1__REVOKE_API_KEY_REQUEST__INIT;
    Cpstore__V1__RevokeApiKeyResponse resp;
    char err[256] = "";
    int64_t before;

    req.key_id = k.key_id;
    cr_assert_eq(ak_revoke(fx.svc, &req, 0, &resp, err, sizeof(err)), CPS_OK,
                 "%s", err);
    before = clock_now_ms();
    cr_assert_eq(verify_with(fx.svc, k.key), V_REVOKED);
    flush_ok(fx.svc);
    cr_assert_geq(last_used(k.key_id), before);
}


BOTH_STORES(a_flush_with_nothing_noted_is_ok) {
    flush_ok(fx.svc);
}


/* ---- concurrency ------------------------------------------------------- */

#define THREADS  4
#define KEYS_PER 4
#define ROUNDS   10

typedef struct worker {
    pthread_t thread;
    made_key_t keys[KEYS_PER];
    int64_t last_start[KEYS_PER]; /* wall clock before the last verify */
    int failures;
} worker_t;

static volatile int flusher_stop;
static int flusher_failures;


static void *worker_main(void *p) {
    worker_t *w = p;

    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < KEYS_PER; i++) {
            Cpstore__V1__VerifyApiKeyRequest req =
                CPSTORE__V1__VERIFY_API_KEY_REQUEST__INIT;
            Cpstore__V1__VerifyApiKeyResponse resp;
            char err[256];

            req.key = w->keys[i].key;
            w->last_start[i] = clock_now_ms();
            if (ak_verify(fx.svc, &req, clock_mono_ms() + 10000, &resp, err,
                          sizeof(err)) != CPS_OK ||
                resp.code != V_VALID) {
                w->failures++;
            }
            ak_verify_response_clear(&resp);
        }
    }
    return NULL;
}


static void *flusher_main(void *p) {
    (void)p;
    while (!flusher_stop) {
        if (flush(fx.svc, clock_mono_ms() + 10000) != CPS_OK) {
            flusher_failures++;
        }
        usleep(1000);
    }
    return NULL;
}


/* Flushes that run while verifies note times lose none of them: after a
 * last flush, every key shows a time no earlier than its last verify. */
BOTH_STORES(flushing_while_verifying_loses_no_time) {
    static worker_t workers[THREADS];
    pthread_t flusher;

    memset(workers, 0, sizeof(workers));
    flusher_stop = 0;
    flusher_failures = 0;
    for (int t = 0; t < THREADS; t++) {
        for (int i = 0; i < KEYS_PER; i++) {
            workers[t].keys[i] = make_key();
        }
    }
    cr_assert_eq(pthread_create(&flusher, NULL, flusher_main, NULL), 0);
    for (int t = 0; t < THREADS; t++) {
        cr_assert_eq(
            pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]),
            0);
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(workers[t].thread, NULL);
    }
    flusher_stop = 1;
    pthread_join(flusher, NULL);
    flush_ok(fx.svc);

    cr_assert_eq(flusher_failures, 0);
    for (int t = 0; t < THREADS; t++) {
        cr_assert_eq(workers[t].failures, 0);
        for (int i = 0; i < KEYS_PER; i++) {
            cr_assert_geq(last_used(workers[t].keys[i].key_id),
                          workers[t].last_start[i], "thread %d key %d", t, i);
        }
    }
}


/* A key whose document is gone has nothing to update: the flush goes on
 * with the other keys. */
Test(usage_mongo,
     a_flush_skips_keys_whose_document_is_gone,
     .init = fx_mongo,
     .fini = fx_done,
     .timeout = 60) {
    made_key_t gone = make_key();
    made_key_t kept = make_key();
    mongoc_client_t *client;
    mongoc_collection_t *coll;
    bson_t *filter;
    bson_error_t error;

    cr_assert_eq(verify_with(fx.svc, gone.key), V_VALID);
    cr_assert_eq(verify_with(fx.svc, kept.key), V_VALID);
    client = mg_pop(fx.mg);
    coll = mongoc_client_get_collection(client, fx.db, "api_keys");
    filter = BCON_NEW("_id", BCON_UTF8(gone.key_id));
    cr_assert(mongoc_collection_delete_one(coll, filter, NULL, NULL, &error),
              "%s", error.message);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
    mg_push(fx.mg, client);

    flush_ok(fx.svc);
    cr_assert_neq(last_used(kept.key_id), 0);
}
