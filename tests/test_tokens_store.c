/*
 * Single-use tokens below the RPC layer: tk_issue, tk_consume, tk_revoke
 * and tk_purge on a real store, and the PKCE helpers against RFC 7636.
 * Store behaviours run twice, on the memory store and on the MongoDB store
 * (CPSTORE_TEST_MONGO_URI, a fresh database per test, dropped at the end).
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
#include "status.h"
#include "tk_pkce.h"
#include "tokens.h"

typedef Cpstore__V1__ConsumeCode code_t;

#define CONSUMED         CPSTORE__V1__CONSUME_CODE__CONSUME_CONSUMED
#define ALREADY_CONSUMED CPSTORE__V1__CONSUME_CODE__CONSUME_ALREADY_CONSUMED
#define NOT_FOUND        CPSTORE__V1__CONSUME_CODE__CONSUME_NOT_FOUND
#define REVOKED          CPSTORE__V1__CONSUME_CODE__CONSUME_REVOKED

#define HOUR_MS (3600 * 1000)

/* RFC 7636 appendix B. */
#define VERIFIER  "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
#define CHALLENGE "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"

static const uint8_t secret[32] = "test secret of thirty-two bytes";

static struct {
    mg_t *mg;
    tk_service_t *svc;
    char db[96];
} fx;


/* ---- fixtures ----------------------------------------------------------- */

static void fx_memory(void) {
    char err[256] = "";

    memset(&fx, 0, sizeof(fx));
    fx.svc = tk_service_new(NULL, secret, sizeof(secret), err, sizeof(err));
    cr_assert_not_null(fx.svc, "tk_service_new: %s", err);
}


static void fx_mongo(void) {
    char err[256] = "";

    memset(&fx, 0, sizeof(fx));
    h_unique(fx.db, sizeof(fx.db), "cpstk");
    fx.mg = mg_open(h_mongo_uri(), fx.db, err, sizeof(err));
    cr_assert_not_null(fx.mg, "mg_open: %s", err);
    fx.svc = tk_service_new(fx.mg, secret, sizeof(secret), err, sizeof(err));
    cr_assert_not_null(fx.svc, "tk_service_new: %s", err);
}


static void fx_done(void) {
    tk_service_free(fx.svc);
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
    Test(tokens_store_memory, name, .init = fx_memory, .fini = fx_done,        \
         .timeout = 60) {                                                      \
        name();                                                                \
    }                                                                          \
    Test(tokens_store_mongo, name, .init = fx_mongo, .fini = fx_done,          \
         .timeout = 60) {                                                      \
        name();                                                                \
    }                                                                          \
    static void name(void)


/* ---- helpers ------------------------------------------------------------ */

typedef struct issued {
    char token[TK_TOKEN_MAX + 1];
    char token_id[TK_ID_LEN + 1];
    int64_t expires_at_ms;
} issued_t;


static issued_t
issue_on(tk_service_t *svc, uint64_t ttl_ms, uint64_t reuse_window_ms) {
    Cpstore__V1__IssueTokenRequest req = CPSTORE__V1__ISSUE_TOKEN_REQUEST__INIT;
    Cpstore__V1__IssueTokenResponse resp;
    tk_kind_limits_t lim = {.max_ttl_ms = 24ull * HOUR_MS,
                            .reuse_window_ms = reuse_window_ms};
    char err[256] = "";
    issued_t out;
    int rc;

    req.kind = "oauth_code";
    req.subject = "user-1";
    req.ttl_ms = ttl_ms;
    rc = tk_issue(svc, &req, &lim, clock_mono_ms() + 10000, &resp, err,
                  sizeof(err));
    cr_assert_eq(rc, CPS_OK, "issue: %s (%s)", cps_status_name(rc), err);
    snprintf(out.token, sizeof(out.token), "%s", resp.token);
    snprintf(out.token_id, sizeof(out.token_id), "%s", resp.token_id);
    out.expires_at_ms = resp.expires_at_ms;
    tk_issue_response_clear(&resp);
    return out;
}


static issued_t issue(uint64_t ttl_ms, uint64_t reuse_window_ms) {
    return issue_on(fx.svc, ttl_ms, reuse_window_ms);
}


static code_t
consume_on(tk_service_t *svc, const char *token, int64_t *consumed_at) {
    Cpstore__V1__ConsumeTokenRequest req =
        CPSTORE__V1__CONSUME_TOKEN_REQUEST__INIT;
    Cpstore__V1__ConsumeTokenResponse resp;
    char err[256] = "";
    code_t code;
    int rc;

    req.kind = "oauth_code";
    req.token = (char *)token;
    rc =
        tk_consume(svc, &req, clock_mono_ms() + 20000, &resp, err, sizeof(err));
    cr_assert_eq(rc, CPS_OK, "consume: %s (%s)", cps_status_name(rc), err);
    code = resp.code;
    if (consumed_at != NULL) {
        *consumed_at = resp.consumed_at_ms;
    }
    tk_consume_response_clear(&resp);
    return code;
}


static code_t consume(const char *token) {
    return consume_on(fx.svc, token, NULL);
}


static uint64_t purge(int64_t now_ms, uint64_t window_ms) {
    char err[256] = "";
    uint64_t removed = 0;
    int rc;

    rc = tk_purge(fx.svc, now_ms, window_ms, clock_mono_ms() + 10000, &removed,
                  err, sizeof(err));
    cr_assert_eq(rc, CPS_OK, "purge: %s (%s)", cps_status_name(rc), err);
    return removed;
}


/* Documents with this _id in a collection of the test's database. */
static int64_t count_docs(const char *collection, const char *id) {
    mongoc_client_t *client = mg_pop(fx.mg);
    mongoc_collection_t *coll;
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(id));
    int64_t n;

    coll = mongoc_client_get_collection(client, fx.db, collection);
    n = mongoc_collection_count_documents(coll, filter, NULL, NULL, NULL, NULL);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
    mg_push(fx.mg, client);
    cr_assert_geq(n, 0);
    return n;
}


/* ---- purge -------------------------------------------------------------- */

BOTH_STORES(purge_removes_tokens_past_expiry_plus_the_reuse_window) {
    issued_t used = issue(60000, HOUR_MS);
    issued_t unused = issue(60000, HOUR_MS);
    issued_t later = issue(10 * 60000, HOUR_MS);
    int64_t edge = used.expires_at_ms + HOUR_MS;

    cr_assert_eq(consume(used.token), CONSUMED);
    cr_assert_geq(unused.expires_at_ms, used.expires_at_ms);

    /* One millisecond before expiry plus the window: everything stays,
     * and the consumed token still reports its reuse. */
    cr_assert_eq(purge(edge - 1, HOUR_MS), 0);
    cr_assert_eq(consume(used.token), ALREADY_CONSUMED);

    /* Past it for the two short tokens (the unused one may have been
     * issued a millisecond later), not for the long one. */
    cr_assert_eq(purge(unused.expires_at_ms + HOUR_MS, HOUR_MS), 2);
    cr_assert_eq(consume(used.token), NOT_FOUND);
    cr_assert_eq(consume(unused.token), NOT_FOUND);
    if (fx.mg != NULL) {
        cr_assert_eq(count_docs("tokens", used.token_id), 0);
        cr_assert_eq(count_docs("spent_tokens", used.token_id), 0,
                     "the consumed token's spent mark was kept");
        cr_assert_eq(count_docs("tokens", later.token_id), 1);
    }
    cr_assert_eq(consume(later.token), CONSUMED);

    /* Nothing left to purge at that time. */
    cr_assert_eq(purge(unused.expires_at_ms + HOUR_MS, HOUR_MS), 0);
}


BOTH_STORES(purge_uses_the_window_it_is_given) {
    issued_t t = issue(60000, HOUR_MS);

    /* A window longer than the one at issue keeps the token longer. */
    cr_assert_eq(purge(t.expires_at_ms + HOUR_MS, 2 * HOUR_MS), 0);
    /* A window of 0 removes it at expiry. */
    cr_assert_eq(purge(t.expires_at_ms, 0), 1);
    cr_assert_eq(consume(t.token), NOT_FOUND);
}


BOTH_STORES(purge_keeps_everything_before_expiry) {
    issued_t a = issue(60000, 0);
    issued_t b = issue(60000, 0);

    cr_assert_eq(purge(clock_now_ms(), 0), 0);
    cr_assert_eq(consume(a.token), CONSUMED);
    cr_assert_eq(consume(b.token), CONSUMED);
}


/* ---- exactly once, from threads ----------------------------------------- */

#define THREADS 12

typedef struct racer {
    tk_service_t *svc;
    const char *token;
    pthread_barrier_t *start;
    int revoke; /* this racer revokes instead of consuming */
    int rc;
    code_t code;
    bool revoked;
} racer_t;


static void *racer_run(void *arg) {
    racer_t *r = arg;
    char err[256];

    pthread_barrier_wait(r->start);
    if (r->revoke) {
        Cpstore__V1__RevokeTokenRequest req =
            CPSTORE__V1__REVOKE_TOKEN_REQUEST__INIT;
        Cpstore__V1__RevokeTokenResponse resp;

        req.kind = "oauth_code";
        req.token = (char *)r->token;
        r->rc = tk_revoke(r->svc, &req, clock_mono_ms() + 30000, &resp, err,
                          sizeof(err));
        r->revoked = resp.revoked;
    } else {
        Cpstore__V1__ConsumeTokenRequest req =
            CPSTORE__V1__CONSUME_TOKEN_REQUEST__INIT;
        Cpstore__V1__ConsumeTokenResponse resp;

        req.kind = "oauth_code";
        req.token = (char *)r->token;
        r->rc = tk_consume(r->svc, &req, clock_mono_ms() + 30000, &resp, err,
                           sizeof(err));
        r->code = resp.code;
        if (r->rc == CPS_OK) {
            tk_consume_response_clear(&resp);
        }
    }
    return NULL;
}


/* Run THREADS racers on one token; racer `revoker` revokes (-1: none). */
static void run_racers(racer_t *racers, const char *token, int revoker) {
    pthread_t threads[THREADS];
    pthread_barrier_t start;

    pthread_barrier_init(&start, NULL, THREADS);
    for (int i = 0; i < THREADS; i++) {
        racers[i] = (racer_t){.svc = fx.svc,
                              .token = token,
                              .start = &start,
                              .revoke = i == revoker};
        cr_assert_eq(pthread_create(&threads[i], NULL, racer_run, &racers[i]),
                     0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
    }
    pthread_barrier_destroy(&start);
    for (int i = 0; i < THREADS; i++) {
        cr_assert_eq(racers[i].rc, CPS_OK, "racer %d: %s", i,
                     cps_status_name(racers[i].rc));
    }
}


BOTH_STORES(concurrent_consumes_spend_a_token_once) {
    issued_t t = issue(0, HOUR_MS);
    racer_t racers[THREADS];
    int consumed = 0;

    run_racers(racers, t.token, -1);
    for (int i = 0; i < THREADS; i++) {
        if (racers[i].code == CONSUMED) {
            consumed++;
        } else {
            cr_assert_eq(racers[i].code, ALREADY_CONSUMED);
        }
    }
    cr_assert_eq(consumed, 1);
}


/* Revoke racing consumes: at most one consume wins, and every answer is
 * one of CONSUMED, ALREADY_CONSUMED and REVOKED. Once the revoke has
 * returned, nothing but REVOKED comes back. */
BOTH_STORES(revoke_racing_consumes_leaves_at_most_one_winner) {
    for (int round = 0; round < 3; round++) {
        issued_t t = issue(0, HOUR_MS);
        racer_t racers[THREADS];
        int consumed = 0;

        run_racers(racers, t.token, round * 5);
        for (int i = 0; i < THREADS; i++) {
            if (racers[i].revoke) {
                cr_assert(racers[i].revoked);
                continue;
            }
            cr_assert(racers[i].code == CONSUMED ||
                          racers[i].code == ALREADY_CONSUMED ||
                          racers[i].code == REVOKED,
                      "code %d", racers[i].code);
            consumed += racers[i].code == CONSUMED;
        }
        cr_assert_leq(consumed, 1);
        cr_assert_eq(consume(t.token), REVOKED);
    }
}


/* ---- service and store -------------------------------------------------- */

Test(tokens_store_memory, short_secret_is_refused) {
    char err[256] = "";

    cr_assert_null(tk_service_new(NULL, secret, 31, err, sizeof(err)));
    cr_assert_neq(err[0], '\0');
}


Test(tokens_store_memory,
     memory_store_has_no_ttl_index,
     .init = fx_memory,
     .fini = fx_done) {
    cr_assert_str_eq(tk_service_kind(fx.svc), "memory");
    cr_assert_eq(tk_service_ttl_index(fx.svc), TK_TTL_NONE);
}


/* Reached at start, the server has either made the TTL indexes or said it
 * has none; on FerretDB (the test suite's server) it has none. */
Test(tokens_store_mongo,
     ttl_index_state_is_known_after_start,
     .init = fx_mongo,
     .fini = fx_done) {
    tk_ttl_index_t ttl = tk_service_ttl_index(fx.svc);

    cr_assert_str_eq(tk_service_kind(fx.svc), "mongodb");
    if (getenv("CPSTORE_TEST_FERRETDB_BIN") != NULL) {
        cr_assert_eq(ttl, TK_TTL_UNSUPPORTED);
    } else {
        cr_assert(ttl == TK_TTL_ACTIVE || ttl == TK_TTL_UNSUPPORTED);
    }
}


/* A second service on a database that already has the collections and
 * indexes (a restart, or a second instance) starts and serves, and shares
 * the first one's tokens. */
Test(tokens_store_mongo,
     second_service_on_the_same_database_works,
     .init = fx_mongo,
     .fini = fx_done,
     .timeout = 60) {
    char err[256] = "";
    tk_service_t *again;
    issued_t mine;
    issued_t theirs;

    mine = issue(0, HOUR_MS);
    again = tk_service_new(fx.mg, secret, sizeof(secret), err, sizeof(err));
    cr_assert_not_null(again, "tk_service_new: %s", err);
    theirs = issue_on(again, 0, HOUR_MS);
    cr_assert_eq(consume_on(again, mine.token, NULL), CONSUMED);
    cr_assert_eq(consume(mine.token), ALREADY_CONSUMED);
    cr_assert_eq(consume(theirs.token), CONSUMED);
    tk_service_free(again);
}


/* ---- PKCE --------------------------------------------------------------- */

Test(tokens_pkce, s256_matches_rfc_7636_appendix_b) {
    char out[TK_PKCE_CHALLENGE_LEN + 1];

    cr_assert_eq(tk_pkce_challenge(VERIFIER, strlen(VERIFIER), out), CPS_OK);
    cr_assert_str_eq(out, CHALLENGE);
    cr_assert(tk_pkce_matches(VERIFIER, CHALLENGE));
}


Test(tokens_pkce, one_character_off_does_not_match) {
    char verifier[] = VERIFIER;
    char challenge[] = CHALLENGE;

    verifier[10] = verifier[10] == 'a' ? 'b' : 'a';
    cr_assert_not(tk_pkce_matches(verifier, CHALLENGE));
    challenge[5] = challenge[5] == 'a' ? 'b' : 'a';
    cr_assert_not(tk_pkce_matches(VERIFIER, challenge));
    cr_assert_not(tk_pkce_matches("", CHALLENGE));
    cr_assert_not(tk_pkce_matches(NULL, CHALLENGE));
}


Test(tokens_pkce, challenge_must_be_43_base64url_characters) {
    cr_assert(tk_pkce_challenge_valid(CHALLENGE));
    cr_assert_not(tk_pkce_challenge_valid(""));
    cr_assert_not(tk_pkce_challenge_valid(CHALLENGE "A"));
    cr_assert_not(tk_pkce_challenge_valid("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJ"
                                          "Sstw-c"));
    /* Standard base64 characters and padding are not base64url. */
    cr_assert_not(tk_pkce_challenge_valid("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJ"
                                          "Sstw+cM"));
    cr_assert_not(tk_pkce_challenge_valid("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJ"
                                          "Sstw/cM"));
    cr_assert_not(tk_pkce_challenge_valid("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuG"
                                          "JSstw-c="));
    /* The last character of 32 bytes carries two zero bits. */
    cr_assert_not(tk_pkce_challenge_valid("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJ"
                                          "Sstw-cN"));
}


Test(tokens_pkce, verifier_is_43_to_128_unreserved_characters) {
    char longest[129];
    char too_long[130];

    memset(longest, 'a', 128);
    longest[128] = '\0';
    memset(too_long, 'a', 129);
    too_long[129] = '\0';
    cr_assert(tk_pkce_verifier_valid(VERIFIER));
    cr_assert(tk_pkce_verifier_valid(longest));
    cr_assert(
        tk_pkce_verifier_valid("abcdefghijklmnopqrstuvwxyz-._~ABCDEFGHIJKL"
                               "MN"));
    cr_assert_not(tk_pkce_verifier_valid(too_long));
    cr_assert_not(
        tk_pkce_verifier_valid("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFO"
                               "EjX"));
    cr_assert_not(
        tk_pkce_verifier_valid("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFO"
                               "EjX k"));
}
