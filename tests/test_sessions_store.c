/*
 * Sessions below the RPC layer: the ss_* service on a real store. Every
 * behaviour runs twice, on the memory store and on the MongoDB store
 * (CPSTORE_TEST_MONGO_URI, a fresh database per test, dropped at the end).
 * Here the purge, which only the server's housekeeping timer calls, and
 * the at-most-once rules of revocation under concurrent callers.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "harness.h"
#include "mongo.h"
#include "sessions.h"
#include "status.h"

#define HOUR_MS (3600 * 1000)

static const uint8_t secret[32] = "test secret of thirty-two bytes";
static const ss_settings_t settings = {
    .idle_ms = HOUR_MS,
    .absolute_ms = 2 * HOUR_MS,
    .touch_ms = 60 * 1000,
};

static struct {
    mg_t *mg;
    ss_service_t *svc;
    char db[96];
} fx;


/* ---- fixtures ----------------------------------------------------------- */

static void fx_memory(void) {
    char err[256] = "";

    memset(&fx, 0, sizeof(fx));
    fx.svc = ss_service_new(NULL, secret, sizeof(secret), err, sizeof(err));
    cr_assert_not_null(fx.svc, "ss_service_new: %s", err);
}


static void fx_mongo(void) {
    char err[256] = "";

    memset(&fx, 0, sizeof(fx));
    h_unique(fx.db, sizeof(fx.db), "cpsss");
    fx.mg = mg_open(h_mongo_uri(), fx.db, err, sizeof(err));
    cr_assert_not_null(fx.mg, "mg_open: %s", err);
    fx.svc = ss_service_new(fx.mg, secret, sizeof(secret), err, sizeof(err));
    cr_assert_not_null(fx.svc, "ss_service_new: %s", err);
}


static void fx_done(void) {
    ss_service_free(fx.svc);
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
    Test(sessions_memory, name, .init = fx_memory, .fini = fx_done,            \
         .timeout = 60) {                                                      \
        name();                                                                \
    }                                                                          \
    Test(sessions_mongo, name, .init = fx_mongo, .fini = fx_done,              \
         .timeout = 60) {                                                      \
        name();                                                                \
    }                                                                          \
    static void name(void)


/* ---- helpers ------------------------------------------------------------ */

typedef struct session {
    char token[128];
    char id[48];
    int64_t absolute;
} session_t;


static session_t create(const char *user, uint64_t absolute_ms) {
    Cpstore__V1__CreateSessionRequest req =
        CPSTORE__V1__CREATE_SESSION_REQUEST__INIT;
    Cpstore__V1__CreateSessionResponse resp;
    session_t s;
    char err[256];
    int rc;

    req.user_id = (char *)user;
    req.absolute_lifetime_ms = absolute_ms;
    rc = ss_create(fx.svc, &settings, &req, 0, &resp, err, sizeof(err));
    cr_assert_eq(rc, CPS_OK, "ss_create: %s", err);
    snprintf(s.token, sizeof(s.token), "%s", resp.token);
    snprintf(s.id, sizeof(s.id), "%s", resp.session_id);
    s.absolute = resp.session->absolute_expires_at_ms;
    ss_create_response_clear(&resp);
    return s;
}


static Cpstore__V1__SessionCode code_of(const session_t *s) {
    Cpstore__V1__ValidateSessionRequest req =
        CPSTORE__V1__VALIDATE_SESSION_REQUEST__INIT;
    Cpstore__V1__ValidateSessionResponse resp;
    Cpstore__V1__SessionCode code;
    char err[256];
    int rc;

    req.token = (char *)s->token;
    rc = ss_validate(fx.svc, &settings, &req, 0, &resp, err, sizeof(err));
    cr_assert_eq(rc, CPS_OK, "ss_validate: %s", err);
    code = resp.code;
    ss_validate_response_clear(&resp);
    return code;
}


/* ss_revoke by id; -1 on an error. Safe off the test's thread. */
static int revoke_id(const char *id) {
    Cpstore__V1__RevokeSessionRequest req =
        CPSTORE__V1__REVOKE_SESSION_REQUEST__INIT;
    Cpstore__V1__RevokeSessionResponse resp;
    char err[256];

    req.session_id = (char *)id;
    if (ss_revoke(fx.svc, &req, 0, &resp, err, sizeof(err)) != CPS_OK) {
        return -1;
    }
    return resp.revoked;
}


/* ss_revoke_all; -1 on an error. Safe off the test's thread. */
static int64_t revoke_all(const char *user) {
    Cpstore__V1__RevokeAllSessionsRequest req =
        CPSTORE__V1__REVOKE_ALL_SESSIONS_REQUEST__INIT;
    Cpstore__V1__RevokeAllSessionsResponse resp;
    char err[256];

    req.user_id = (char *)user;
    if (ss_revoke_all(fx.svc, &req, 0, &resp, err, sizeof(err)) != CPS_OK) {
        return -1;
    }
    return resp.revoked;
}


static uint64_t purge(int64_t now_ms) {
    uint64_t removed = 0;
    char err[256];
    int rc;

    rc = ss_purge(fx.svc, now_ms, clock_mono_ms() + 10000, &removed, err,
                  sizeof(err));
    cr_assert_eq(rc, CPS_OK, "ss_purge: %s", err);
    return removed;
}


static int64_t count_documents(const char *collection) {
    mongoc_client_t *client = mg_pop(fx.mg);
    mongoc_collection_t *coll =
        mongoc_client_get_collection(client, fx.db, collection);
    bson_t filter = BSON_INITIALIZER;
    bson_error_t error;
    int64_t n;

    n = mongoc_collection_count_documents(coll, &filter, NULL, NULL, NULL,
                                          &error);
    cr_assert_geq(n, 0, "count %s: %s", collection, error.message);
    bson_destroy(&filter);
    mongoc_collection_destroy(coll);
    mg_push(fx.mg, client);
    return n;
}


/* ---- service ------------------------------------------------------------ */

Test(sessions_service, a_short_secret_is_refused) {
    char err[256] = "";

    cr_assert_null(ss_service_new(NULL, secret, 31, err, sizeof(err)));
    cr_assert_neq(err[0], '\0');
}


Test(sessions_memory, has_no_ttl_index, .init = fx_memory, .fini = fx_done) {
    cr_assert_eq(ss_ttl_status(fx.svc), SS_TTL_NONE);
    cr_assert_str_eq(ss_kind(fx.svc), "memory");
}


/* FerretDB has no TTL indexes; MongoDB has. Either way the question is
 * settled by the time the service exists, for main to log. */
Test(sessions_mongo,
     knows_whether_ttl_indexes_exist,
     .init = fx_mongo,
     .fini = fx_done) {
    ss_ttl_t ttl = ss_ttl_status(fx.svc);

    cr_assert(ttl == SS_TTL_CREATED || ttl == SS_TTL_UNSUPPORTED,
              "ttl status %d", (int)ttl);
    cr_assert_str_eq(ss_kind(fx.svc), "mongodb");
}


/* ---- purge -------------------------------------------------------------- */

BOTH_STORES(purge_removes_sessions_past_their_absolute_expiry) {
    session_t brief[3];
    session_t lasting[2];
    int64_t last_brief = 0;

    for (int i = 0; i < 3; i++) {
        brief[i] = create("user-1", 60 * 1000);
        if (brief[i].absolute > last_brief) {
            last_brief = brief[i].absolute;
        }
    }
    for (int i = 0; i < 2; i++) {
        lasting[i] = create("user-1", HOUR_MS);
    }
    cr_assert_eq(revoke_id(brief[0].id), 1);
    cr_assert_eq(revoke_id(lasting[0].id), 1);

    /* Nothing is removed a moment before the first absolute expiry, and
     * a revoked session stays (answering REVOKED) until its own. */
    cr_assert_eq(purge(brief[0].absolute - 1), 0);
    cr_assert_eq(code_of(&brief[0]),
                 CPSTORE__V1__SESSION_CODE__SESSION_REVOKED);

    cr_assert_eq(purge(last_brief), 3);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(code_of(&brief[i]),
                     CPSTORE__V1__SESSION_CODE__SESSION_NOT_FOUND);
    }
    cr_assert_eq(code_of(&lasting[0]),
                 CPSTORE__V1__SESSION_CODE__SESSION_REVOKED);
    cr_assert_eq(code_of(&lasting[1]),
                 CPSTORE__V1__SESSION_CODE__SESSION_VALID);
    cr_assert_eq(purge(last_brief), 0);

    if (fx.mg != NULL) {
        cr_assert_eq(count_documents("sessions"), 2);
        cr_assert_eq(count_documents("session_revocations"), 1);
    }
}


BOTH_STORES(purge_with_nothing_to_remove_removes_nothing) {
    cr_assert_eq(purge(clock_now_ms()), 0);
    create("user-1", HOUR_MS);
    cr_assert_eq(purge(clock_now_ms()), 0);
}


/* ---- revocation under concurrency --------------------------------------- */

#define RACERS 8

typedef struct racer {
    pthread_t thread;
    const char *arg;
    int64_t result;
} racer_t;


static void *race_revoke(void *p) {
    racer_t *r = p;

    r->result = revoke_id(r->arg);
    return NULL;
}


static void *race_revoke_all(void *p) {
    racer_t *r = p;

    r->result = revoke_all(r->arg);
    return NULL;
}


static void race(racer_t *racers, void *(*fn)(void *), const char *arg) {
    for (int i = 0; i < RACERS; i++) {
        racers[i].arg = arg;
        racers[i].result = -2;
        cr_assert_eq(pthread_create(&racers[i].thread, NULL, fn, &racers[i]),
                     0);
    }
    for (int i = 0; i < RACERS; i++) {
        pthread_join(racers[i].thread, NULL);
        cr_assert_geq(racers[i].result, 0, "racer %d failed", i);
    }
}


BOTH_STORES(concurrent_revokes_of_one_session_revoke_it_once) {
    session_t s = create("user-1", HOUR_MS);
    racer_t racers[RACERS];
    int64_t yes = 0;

    race(racers, race_revoke, s.id);
    for (int i = 0; i < RACERS; i++) {
        yes += racers[i].result;
    }
    cr_assert_eq(yes, 1, "%lld callers were told they revoked it",
                 (long long)yes);
    cr_assert_eq(code_of(&s), CPSTORE__V1__SESSION_CODE__SESSION_REVOKED);
}


BOTH_STORES(concurrent_revoke_alls_count_each_session_once) {
    session_t s[10];
    racer_t racers[RACERS];
    int64_t total = 0;

    for (int i = 0; i < 10; i++) {
        s[i] = create("crowded", HOUR_MS);
    }
    race(racers, race_revoke_all, "crowded");
    for (int i = 0; i < RACERS; i++) {
        total += racers[i].result;
    }
    cr_assert_eq(total, 10, "revoked %lld times in all", (long long)total);
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(code_of(&s[i]),
                     CPSTORE__V1__SESSION_CODE__SESSION_REVOKED);
    }
}
