/*
 * API keys end to end below the RPC layer: ak_create and ak_verify on a
 * real key store. Every behaviour is run twice, on the memory store and on
 * the MongoDB store (CPSTORE_TEST_MONGO_URI, a fresh database per test,
 * dropped at the end).
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "apikeys.h"
#include "clock.h"
#include "crypto.h"
#include "harness.h"
#include "keystore.h"
#include "field_limits.h"
#include "mongo.h"
#include "status.h"

#define PREFIX       "cpk_test"
#define RANDOM_CHARS 44

typedef Cpstore__V1__VerifyCode code_t;

static const uint8_t secret[32] = "test secret of thirty-two bytes";

static struct {
    mg_t *mg;
    ks_store_t *store;
    ak_service_t *svc;
    char db[96];
} fx;


/* ---- fixtures ----------------------------------------------------------- */

static void fx_service(void) {
    cr_assert_not_null(fx.store);
    fx.svc = ak_service_new(fx.store, secret, sizeof(secret), PREFIX);
    cr_assert_not_null(fx.svc);
}


static void fx_memory(void) {
    memset(&fx, 0, sizeof(fx));
    fx.store = ks_memory_new();
    fx_service();
}


/* pool_size 0 keeps libmongoc's default. */
static void fx_mongo_pool(uint32_t pool_size) {
    char err[256] = "";

    memset(&fx, 0, sizeof(fx));
    h_unique(fx.db, sizeof(fx.db), "cpsak");
    fx.mg = mg_open(h_mongo_uri(), fx.db, err, sizeof(err));
    cr_assert_not_null(fx.mg, "mg_open: %s", err);
    mg_set_pool_size(fx.mg, pool_size);
    fx.store = ks_mongo_new(fx.mg, err, sizeof(err));
    cr_assert_not_null(fx.store, "ks_mongo_new: %s", err);
    fx_service();
}


static void fx_mongo(void) {
    fx_mongo_pool(0);
}


static void fx_mongo_small_pool(void) {
    fx_mongo_pool(2);
}


static void fx_done(void) {
    ak_service_free(fx.svc);
    ks_free(fx.store);
    if (fx.mg != NULL && fx.db[0] != '\0') {
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


/* Define one behaviour and run it on both stores. */
#define BOTH_STORES(name)                                                      \
    static void name(void);                                                    \
    Test(apikeys_memory, name, .init = fx_memory, .fini = fx_done) {           \
        name();                                                                \
    }                                                                          \
    Test(apikeys_mongo, name, .init = fx_mongo, .fini = fx_done) {             \
        name();                                                                \
    }                                                                          \
    static void name(void)


/* ---- helpers ------------------------------------------------------------ */

typedef struct key_spec {
    const char *user_id;
    char **scopes;
    size_t n_scopes;
    const char *org_id;
    const char *project_id;
    int64_t expires_at_ms;
    uint64_t expires_in_ms;
} key_spec_t;


static int try_create(const key_spec_t *spec,
                      Cpstore__V1__CreateApiKeyResponse *resp,
                      char *err,
                      size_t err_len) {
    Cpstore__V1__CreateApiKeyRequest req =
        CPSTORE__V1__CREATE_API_KEY_REQUEST__INIT;

    req.user_id = (char *)(spec->user_id ? spec->user_id : "user-1");
    req.scopes = spec->scopes;
    req.n_scopes = spec->n_scopes;
    if (spec->org_id != NULL) {
        req.org_id = (char *)spec->org_id;
    }
    if (spec->project_id != NULL) {
        req.project_id = (char *)spec->project_id;
    }
    req.expires_at_ms = spec->expires_at_ms;
    req.expires_in_ms = spec->expires_in_ms;
    return ak_create(fx.svc, &req, clock_mono_ms() + 10000, resp, err, err_len);
}


/* Create a key and return it (caller frees). */
static char *create_key(const key_spec_t *spec, int64_t *expires_at) {
    Cpstore__V1__CreateApiKeyResponse resp;
    char err[256] = "";
    char *key;
    int rc = try_create(spec, &resp, err, sizeof(err));

    cr_assert_eq(rc, CPS_OK, "create: %s (%s)", cps_status_name(rc), err);
    key = strdup(resp.key);
    if (expires_at != NULL) {
        *expires_at = resp.info->expires_at_ms;
    }
    ak_create_response_clear(&resp);
    return key;
}


static code_t verify_in(const char *key,
                        char **required,
                        size_t n_required,
                        const char *org_id,
                        const char *project_id,
                        Cpstore__V1__VerifyApiKeyResponse *resp) {
    Cpstore__V1__VerifyApiKeyRequest req =
        CPSTORE__V1__VERIFY_API_KEY_REQUEST__INIT;
    char err[256] = "";
    int rc;

    req.key = (char *)key;
    req.required_scopes = required;
    req.n_required_scopes = n_required;
    if (org_id != NULL) {
        req.org_id = (char *)org_id;
    }
    if (project_id != NULL) {
        req.project_id = (char *)project_id;
    }
    rc = ak_verify(fx.svc, &req, clock_mono_ms() + 10000, resp, err,
                   sizeof(err));
    cr_assert_eq(rc, CPS_OK, "verify: %s (%s)", cps_status_name(rc), err);
    cr_assert_eq(resp->valid, resp->code == CPSTORE__V1__VERIFY_CODE__VALID);
    return resp->code;
}


/* The verify code alone. */
static code_t verify(const char *key,
                     char **required,
                     size_t n_required,
                     const char *org_id,
                     const char *project_id) {
    Cpstore__V1__VerifyApiKeyResponse resp;
    code_t code =
        verify_in(key, required, n_required, org_id, project_id, &resp);

    ak_verify_response_clear(&resp);
    return code;
}


/* Verify needing one scope, in no org or project. */
static code_t verify_scope(const char *key, const char *scope) {
    char *required[] = {(char *)scope};

    return verify(key, required, 1, NULL, NULL);
}


/* Put a record straight into the store, in a state that takes Create
 * and a second call to reach (revoked) or that Create must refuse
 * (already expired). */
static void insert_record(const char *key,
                          const char *key_id,
                          const char *org_id,
                          int64_t expires_at_ms,
                          int64_t revoked_at_ms) {
    ks_record_t rec;
    char *scopes[] = {"memory:read"};
    char err[256] = "";
    int rc;

    ks_record_init(&rec);
    rec.key_id = (char *)key_id;
    rec.hint = PREFIX "_...test";
    rec.user_id = "user-direct";
    rec.scopes = scopes;
    rec.n_scopes = 1;
    rec.org_id = (char *)org_id;
    rec.created_at_ms = clock_now_ms() - 60000;
    rec.expires_at_ms = expires_at_ms;
    rec.revoked_at_ms = revoked_at_ms;
    cr_assert_eq(
        crypto_hmac_sha256(secret, sizeof(secret), key, strlen(key), rec.hash),
        CPS_OK);
    rc = ks_insert(fx.store, &rec, clock_mono_ms() + 10000, err, sizeof(err));
    cr_assert_eq(rc, CPS_OK, "ks_insert: %s (%s)", cps_status_name(rc), err);
}


#define V_VALID        CPSTORE__V1__VERIFY_CODE__VALID
#define V_NOT_FOUND    CPSTORE__V1__VERIFY_CODE__NOT_FOUND
#define V_REVOKED      CPSTORE__V1__VERIFY_CODE__REVOKED
#define V_EXPIRED      CPSTORE__V1__VERIFY_CODE__EXPIRED
#define V_MISMATCH     CPSTORE__V1__VERIFY_CODE__CONTEXT_MISMATCH
#define V_INSUFFICIENT CPSTORE__V1__VERIFY_CODE__INSUFFICIENT_SCOPE


/* ---- behaviours on both stores ----------------------------------------- */

BOTH_STORES(created_key_has_the_documented_shape) {
    Cpstore__V1__CreateApiKeyResponse resp;
    char *scopes[] = {"memory:read", "billing:*"};
    key_spec_t spec = {.scopes = scopes, .n_scopes = 2, .org_id = "org-1"};
    char err[256] = "";
    const char *random;

    cr_assert_eq(try_create(&spec, &resp, err, sizeof(err)), CPS_OK, "%s", err);
    cr_assert_eq(strncmp(resp.key, PREFIX "_", strlen(PREFIX) + 1), 0);
    random = resp.key + strlen(PREFIX) + 1;
    cr_assert_eq(strlen(random), RANDOM_CHARS);
    cr_assert_eq(strspn(random, CRYPTO_BASE62_ALPHABET), RANDOM_CHARS);

    cr_assert_eq(strlen(resp.key_id), 4 + 24);
    cr_assert_eq(strncmp(resp.key_id, "key_", 4), 0);
    cr_assert_eq(strspn(resp.key_id + 4, "0123456789abcdef"), 24);

    cr_assert_not_null(resp.info);
    cr_assert_str_eq(resp.info->key_id, resp.key_id);
    cr_assert_eq(strncmp(resp.info->hint, PREFIX "_...", strlen(PREFIX) + 4),
                 0);
    cr_assert_eq(strlen(resp.info->hint), strlen(PREFIX) + 4 + 4);
    cr_assert_str_eq(resp.info->user_id, "user-1");
    cr_assert_str_eq(resp.info->org_id, "org-1");
    cr_assert_eq(resp.info->n_scopes, 2);
    cr_assert_str_eq(resp.info->scopes[1], "billing:*");
    cr_assert_eq(resp.info->expires_at_ms, 0);
    cr_assert_eq(resp.info->revoked_at_ms, 0);
    cr_assert_geq(resp.info->created_at_ms, clock_now_ms() - 60000);
    ak_create_response_clear(&resp);
}


BOTH_STORES(hint_shows_the_prefix_and_the_last_four_characters) {
    Cpstore__V1__CreateApiKeyResponse resp;
    key_spec_t spec = {0};
    char expected[64];
    char err[256] = "";

    cr_assert_eq(try_create(&spec, &resp, err, sizeof(err)), CPS_OK, "%s", err);
    snprintf(expected, sizeof(expected), PREFIX "_...%s",
             resp.key + strlen(resp.key) - 4);
    cr_assert_str_eq(resp.info->hint, expected);
    ak_create_response_clear(&resp);
}


BOTH_STORES(a_created_key_verifies_with_its_owner_and_scopes) {
    Cpstore__V1__VerifyApiKeyResponse resp;
    char *scopes[] = {"memory:read", "memory:write"};
    char *required[] = {"memory:read"};
    key_spec_t spec = {.user_id = "alice", .scopes = scopes, .n_scopes = 2};
    Cpstore__V1__CreateApiKeyResponse created;
    char err[256] = "";

    cr_assert_eq(try_create(&spec, &created, err, sizeof(err)), CPS_OK, "%s",
                 err);
    cr_assert_eq(verify_in(created.key, required, 1, NULL, NULL, &resp),
                 V_VALID);
    cr_assert(resp.valid);
    cr_assert_str_eq(resp.key_id, created.key_id);
    cr_assert_str_eq(resp.user_id, "alice");
    cr_assert_eq(resp.n_scopes, 2);
    cr_assert_str_eq(resp.scopes[0], "memory:read");
    cr_assert_str_eq(resp.scopes[1], "memory:write");
    cr_assert_str_eq(resp.org_id, "");
    cr_assert_eq(resp.expires_at_ms, 0);
    ak_verify_response_clear(&resp);
    ak_create_response_clear(&created);
}


BOTH_STORES(the_store_keeps_every_attribute_of_the_key) {
    Cpstore__V1__CreateApiKeyRequest req =
        CPSTORE__V1__CREATE_API_KEY_REQUEST__INIT;
    Cpstore__V1__CreateApiKeyResponse resp;
    Cpstore__V1__MetadataEntry m1 = CPSTORE__V1__METADATA_ENTRY__INIT;
    Cpstore__V1__MetadataEntry m2 = CPSTORE__V1__METADATA_ENTRY__INIT;
    Cpstore__V1__MetadataEntry *meta[] = {&m1, &m2};
    char *scopes[] = {"memory:*"};
    uint8_t hash[KS_HASH_LEN];
    ks_record_t rec;
    char err[256] = "";

    req.user_id = "bob";
    req.name = "ci deploy key";
    req.scopes = scopes;
    req.n_scopes = 1;
    req.org_id = "org-9";
    req.project_id = "proj-3";
    req.expires_in_ms = 3600 * 1000;
    m1.key = "team";
    m1.value = "platform";
    m2.key = "ticket.id";
    m2.value = "OPS-12";
    req.metadata = meta;
    req.n_metadata = 2;
    cr_assert_eq(ak_create(fx.svc, &req, 0, &resp, err, sizeof(err)), CPS_OK,
                 "%s", err);

    crypto_hmac_sha256(secret, sizeof(secret), resp.key, strlen(resp.key),
                       hash);
    ks_record_init(&rec);
    cr_assert_eq(ks_find_by_hash(fx.store, hash, 0, &rec, err, sizeof(err)),
                 CPS_OK, "%s", err);
    cr_assert_str_eq(rec.key_id, resp.key_id);
    cr_assert_str_eq(rec.hint, resp.info->hint);
    cr_assert_str_eq(rec.user_id, "bob");
    cr_assert_str_eq(rec.name, "ci deploy key");
    cr_assert_eq(rec.n_scopes, 1);
    cr_assert_str_eq(rec.scopes[0], "memory:*");
    cr_assert_str_eq(rec.org_id, "org-9");
    cr_assert_str_eq(rec.project_id, "proj-3");
    cr_assert_eq(rec.created_at_ms, resp.info->created_at_ms);
    cr_assert_eq(rec.expires_at_ms, resp.info->created_at_ms + 3600 * 1000);
    cr_assert_eq(rec.revoked_at_ms, 0);
    cr_assert_null(rec.rotated_from);
    cr_assert_eq(rec.n_metadata, 2);
    cr_assert_str_eq(rec.metadata[1].key, "ticket.id");
    cr_assert_str_eq(rec.metadata[1].value, "OPS-12");
    ks_record_clear(&rec);
    ak_create_response_clear(&resp);
}


BOTH_STORES(a_wrong_key_is_not_found) {
    char *key = create_key(&(key_spec_t){0}, NULL);
    char *other = strdup(key);
    char long_key[LIM_API_KEY_MAX + 2];

    /* Same prefix and length, last character changed. */
    other[strlen(other) - 1] = other[strlen(other) - 1] == 'a' ? 'b' : 'a';
    cr_assert_eq(verify(other, NULL, 0, NULL, NULL), V_NOT_FOUND);
    cr_assert_eq(verify(PREFIX "_notakeyatall", NULL, 0, NULL, NULL),
                 V_NOT_FOUND);
    cr_assert_eq(verify("", NULL, 0, NULL, NULL), V_NOT_FOUND);

    memset(long_key, 'a', sizeof(long_key));
    long_key[LIM_API_KEY_MAX + 1] = '\0';
    cr_assert_eq(verify(long_key, NULL, 0, NULL, NULL), V_NOT_FOUND);

    cr_assert_eq(verify(key, NULL, 0, NULL, NULL), V_VALID);
    free(other);
    free(key);
}


BOTH_STORES(a_key_is_valid_before_its_expiry_and_expired_from_it_on) {
    Cpstore__V1__VerifyApiKeyResponse resp;
    int64_t expires_at;
    key_spec_t spec = {.expires_at_ms = clock_now_ms() + 1500};
    char *key = create_key(&spec, &expires_at);
    code_t before;

    cr_assert_eq(expires_at, spec.expires_at_ms);
    before = verify_in(key, NULL, 0, NULL, NULL, &resp);
    cr_assert_eq(resp.expires_at_ms, expires_at);
    ak_verify_response_clear(&resp);
    if (clock_now_ms() < expires_at) {
        cr_assert_eq(before, V_VALID);
    } else {
        cr_log_warn("verify finished after the expiry; the check before "
                    "expiry says nothing on this run");
    }

    while (clock_now_ms() <= expires_at) {
        nanosleep(&(struct timespec){.tv_nsec = 50 * 1000 * 1000}, NULL);
    }
    cr_assert_eq(verify(key, NULL, 0, NULL, NULL), V_EXPIRED);
    free(key);
}


BOTH_STORES(a_lifetime_counts_from_the_server_clock) {
    key_spec_t spec = {.expires_in_ms = 3600 * 1000};
    int64_t before = clock_now_ms();
    int64_t expires_at;
    char *key = create_key(&spec, &expires_at);

    cr_assert_geq(expires_at, before + 3600 * 1000);
    cr_assert_leq(expires_at, clock_now_ms() + 3600 * 1000);
    cr_assert_eq(verify(key, NULL, 0, NULL, NULL), V_VALID);
    free(key);
}


BOTH_STORES(an_exact_scope_grants_only_itself) {
    char *scopes[] = {"memory:read"};
    char *key =
        create_key(&(key_spec_t){.scopes = scopes, .n_scopes = 1}, NULL);

    cr_assert_eq(verify_scope(key, "memory:read"), V_VALID);
    cr_assert_eq(verify_scope(key, "memory:write"), V_INSUFFICIENT);
    cr_assert_eq(verify_scope(key, "billing:read"), V_INSUFFICIENT);
    free(key);
}


BOTH_STORES(a_resource_star_grants_every_action_of_that_resource) {
    char *scopes[] = {"res:*"};
    char *key =
        create_key(&(key_spec_t){.scopes = scopes, .n_scopes = 1}, NULL);

    cr_assert_eq(verify_scope(key, "res:read"), V_VALID);
    cr_assert_eq(verify_scope(key, "res:x:y"), V_VALID);
    cr_assert_eq(verify_scope(key, "other:read"), V_INSUFFICIENT);
    cr_assert_eq(verify_scope(key, "resx:read"), V_INSUFFICIENT);
    free(key);
}


BOTH_STORES(a_star_grants_everything) {
    char *scopes[] = {"*"};
    char *required[] = {"memory:read", "billing:invoices:write"};
    char *key =
        create_key(&(key_spec_t){.scopes = scopes, .n_scopes = 1}, NULL);

    cr_assert_eq(verify(key, required, 2, NULL, NULL), V_VALID);
    free(key);
}


BOTH_STORES(memory_read_does_not_grant_memory_readwrite) {
    char *scopes[] = {"memory:read"};
    char *key =
        create_key(&(key_spec_t){.scopes = scopes, .n_scopes = 1}, NULL);

    cr_assert_eq(verify_scope(key, "memory:readwrite"), V_INSUFFICIENT);
    free(key);
}


BOTH_STORES(read_star_does_not_grant_write_x) {
    char *scopes[] = {"read:*"};
    char *key =
        create_key(&(key_spec_t){.scopes = scopes, .n_scopes = 1}, NULL);

    cr_assert_eq(verify_scope(key, "write:x"), V_INSUFFICIENT);
    cr_assert_eq(verify_scope(key, "read:x"), V_VALID);
    free(key);
}


BOTH_STORES(every_required_scope_must_be_granted) {
    char *scopes[] = {"memory:read"};
    char *required[] = {"memory:read", "memory:write"};
    char *key =
        create_key(&(key_spec_t){.scopes = scopes, .n_scopes = 1}, NULL);

    cr_assert_eq(verify(key, required, 2, NULL, NULL), V_INSUFFICIENT);
    free(key);
}


BOTH_STORES(a_key_bound_to_an_org_is_refused_for_another_org) {
    char *key = create_key(&(key_spec_t){.org_id = "org-a"}, NULL);

    cr_assert_eq(verify(key, NULL, 0, "org-b", NULL), V_MISMATCH);
    cr_assert_eq(verify(key, NULL, 0, "org-a", NULL), V_VALID);
    free(key);
}


BOTH_STORES(a_key_bound_to_a_project_is_refused_for_another_project) {
    char *key = create_key(
        &(key_spec_t){.org_id = "org-a", .project_id = "proj-1"}, NULL);

    cr_assert_eq(verify(key, NULL, 0, "org-a", "proj-2"), V_MISMATCH);
    cr_assert_eq(verify(key, NULL, 0, NULL, "proj-2"), V_MISMATCH);
    cr_assert_eq(verify(key, NULL, 0, "org-a", "proj-1"), V_VALID);
    free(key);
}


BOTH_STORES(a_request_naming_no_context_gets_the_key_binding) {
    Cpstore__V1__VerifyApiKeyResponse resp;
    char *key = create_key(
        &(key_spec_t){.org_id = "org-a", .project_id = "proj-1"}, NULL);

    cr_assert_eq(verify_in(key, NULL, 0, NULL, NULL, &resp), V_VALID);
    cr_assert_str_eq(resp.org_id, "org-a");
    cr_assert_str_eq(resp.project_id, "proj-1");
    ak_verify_response_clear(&resp);
    free(key);
}


BOTH_STORES(an_unbound_key_is_accepted_in_any_context) {
    char *key = create_key(&(key_spec_t){0}, NULL);

    cr_assert_eq(verify(key, NULL, 0, "org-z", "proj-z"), V_VALID);
    free(key);
}


BOTH_STORES(a_revoked_key_answers_revoked) {
    const char *key = PREFIX "_RevokedKeyRevokedKeyRevokedKeyRevokedKey1234";

    insert_record(key, "key_000000000000000000000001", NULL, 0,
                  clock_now_ms() - 1000);
    cr_assert_eq(verify(key, NULL, 0, NULL, NULL), V_REVOKED);
}


BOTH_STORES(checks_run_in_the_documented_order) {
    const char *revoked = PREFIX "_OrderRevokedOrderRevokedOrderRevoked000001";
    const char *expired = PREFIX "_OrderExpiredOrderExpiredOrderExpired000002";
    char *wanted[] = {"billing:write"};
    char *bound;

    /* Revoked, expired, bound elsewhere and short of scope: REVOKED. */
    insert_record(revoked, "key_000000000000000000000002", "org-a",
                  clock_now_ms() - 1000, clock_now_ms() - 500);
    cr_assert_eq(verify(revoked, wanted, 1, "org-b", NULL), V_REVOKED);

    /* Expired and presented in another org: EXPIRED. */
    insert_record(expired, "key_000000000000000000000003", "org-a",
                  clock_now_ms() - 1000, 0);
    cr_assert_eq(verify(expired, wanted, 1, "org-b", NULL), V_EXPIRED);

    /* Live, in another org and short of scope: CONTEXT_MISMATCH. */
    bound = create_key(&(key_spec_t){.org_id = "org-a"}, NULL);
    cr_assert_eq(verify(bound, wanted, 1, "org-b", NULL), V_MISMATCH);
    free(bound);
}


BOTH_STORES(creating_an_expired_key_is_refused) {
    Cpstore__V1__CreateApiKeyResponse resp;
    char err[256] = "";

    cr_assert_eq(
        try_create(&(key_spec_t){.expires_at_ms = clock_now_ms() - 1000}, &resp,
                   err, sizeof(err)),
        CPS_INVALID_ARGUMENT);
    cr_assert_neq(err[0], '\0');
    /* "at or before now": an expiry of this very moment is refused too. */
    cr_assert_eq(try_create(&(key_spec_t){.expires_at_ms = clock_now_ms()},
                            &resp, err, sizeof(err)),
                 CPS_INVALID_ARGUMENT);
    cr_assert_eq(
        try_create(&(key_spec_t){.expires_at_ms = -5}, &resp, err, sizeof(err)),
        CPS_INVALID_ARGUMENT);
}


BOTH_STORES(malformed_create_requests_are_refused) {
    Cpstore__V1__CreateApiKeyResponse resp;
    char *bad_scope[] = {"memory"};
    char *star_inside[] = {"*:read"};
    char long_id[LIM_ID_MAX + 2];
    char err[256] = "";

    cr_assert_eq(
        try_create(&(key_spec_t){.user_id = ""}, &resp, err, sizeof(err)),
        CPS_INVALID_ARGUMENT);
    cr_assert_eq(try_create(&(key_spec_t){.scopes = bad_scope, .n_scopes = 1},
                            &resp, err, sizeof(err)),
                 CPS_INVALID_ARGUMENT);
    cr_assert_eq(try_create(&(key_spec_t){.scopes = star_inside, .n_scopes = 1},
                            &resp, err, sizeof(err)),
                 CPS_INVALID_ARGUMENT);
    cr_assert_eq(
        try_create(&(key_spec_t){.expires_at_ms = clock_now_ms() + 60000,
                                 .expires_in_ms = 60000},
                   &resp, err, sizeof(err)),
        CPS_INVALID_ARGUMENT);

    memset(long_id, 'u', sizeof(long_id));
    long_id[LIM_ID_MAX + 1] = '\0';
    cr_assert_eq(
        try_create(&(key_spec_t){.user_id = long_id}, &resp, err, sizeof(err)),
        CPS_INVALID_ARGUMENT);
    long_id[LIM_ID_MAX] = '\0';
    cr_assert_eq(
        try_create(&(key_spec_t){.user_id = long_id}, &resp, err, sizeof(err)),
        CPS_OK, "%s", err);
    ak_create_response_clear(&resp);
}


BOTH_STORES(an_invalid_required_scope_is_a_bad_request) {
    Cpstore__V1__VerifyApiKeyRequest req =
        CPSTORE__V1__VERIFY_API_KEY_REQUEST__INIT;
    Cpstore__V1__VerifyApiKeyResponse resp;
    char *required[] = {"memory:read "};
    char *key = create_key(&(key_spec_t){0}, NULL);
    char err[256] = "";

    req.key = key;
    req.required_scopes = required;
    req.n_required_scopes = 1;
    cr_assert_eq(ak_verify(fx.svc, &req, 0, &resp, err, sizeof(err)),
                 CPS_INVALID_ARGUMENT);
    free(key);
}


BOTH_STORES(a_passed_deadline_is_deadline_exceeded) {
    Cpstore__V1__VerifyApiKeyRequest req =
        CPSTORE__V1__VERIFY_API_KEY_REQUEST__INIT;
    Cpstore__V1__VerifyApiKeyResponse resp;
    char *key = create_key(&(key_spec_t){0}, NULL);
    char err[256] = "";

    req.key = key;
    cr_assert_eq(
        ak_verify(fx.svc, &req, clock_mono_ms() - 1, &resp, err, sizeof(err)),
        CPS_DEADLINE_EXCEEDED);
    cr_assert_null(strstr(err, key));
    free(key);
}


BOTH_STORES(the_store_refuses_a_second_record_with_the_same_hash_or_id) {
    const char *key = PREFIX "_DuplicateDuplicateDuplicateDuplicate0000001";
    ks_record_t rec;
    char err[256] = "";

    insert_record(key, "key_00000000000000000000000a", NULL, 0, 0);

    ks_record_init(&rec);
    rec.key_id = "key_00000000000000000000000b";
    rec.hint = PREFIX "_...0001";
    rec.user_id = "someone-else";
    rec.created_at_ms = clock_now_ms();
    crypto_hmac_sha256(secret, sizeof(secret), key, strlen(key), rec.hash);
    cr_assert_eq(ks_insert(fx.store, &rec, 0, err, sizeof(err)),
                 CPS_ALREADY_EXISTS);

    rec.key_id = "key_00000000000000000000000a";
    rec.hash[0] ^= 0xff;
    cr_assert_eq(ks_insert(fx.store, &rec, 0, err, sizeof(err)),
                 CPS_ALREADY_EXISTS);

    /* The first record is untouched. */
    cr_assert_eq(verify_scope(key, "memory:read"), V_VALID);
}


BOTH_STORES(the_store_answers_a_ping) {
    char err[256] = "";

    cr_assert_eq(ks_ping(fx.store, clock_mono_ms() + 5000, err, sizeof(err)),
                 CPS_OK, "%s", err);
}


/*
 * Worker threads share one service. Each thread creates keys and verifies
 * them; failures are counted there and asserted on the test's own thread,
 * since Criterion's assertions must not run elsewhere.
 */
#define THREADS      4
#define KEYS_PER     5
#define VERIFIES_PER 10

typedef struct worker_arg {
    ak_service_t *svc;
    int failures;
    char err[256];
} worker_arg_t;


static void *worker_main(void *p) {
    worker_arg_t *w = p;
    char *scopes[] = {"memory:*"};
    char *required[] = {"memory:read"};

    for (int k = 0; k < KEYS_PER; k++) {
        Cpstore__V1__CreateApiKeyRequest req =
            CPSTORE__V1__CREATE_API_KEY_REQUEST__INIT;
        Cpstore__V1__CreateApiKeyResponse created;
        Cpstore__V1__VerifyApiKeyRequest vreq =
            CPSTORE__V1__VERIFY_API_KEY_REQUEST__INIT;

        req.user_id = "threaded";
        req.scopes = scopes;
        req.n_scopes = 1;
        if (ak_create(w->svc, &req, 0, &created, w->err, sizeof(w->err)) !=
            CPS_OK) {
            w->failures++;
            continue;
        }
        vreq.key = created.key;
        vreq.required_scopes = required;
        vreq.n_required_scopes = 1;
        for (int v = 0; v < VERIFIES_PER; v++) {
            Cpstore__V1__VerifyApiKeyResponse resp;
            int rc = ak_verify(w->svc, &vreq, 0, &resp, w->err, sizeof(w->err));

            if (rc != CPS_OK || !resp.valid ||
                strcmp(resp.key_id, created.key_id) != 0) {
                w->failures++;
            }
            if (rc == CPS_OK) {
                ak_verify_response_clear(&resp);
            }
        }
        ak_create_response_clear(&created);
    }
    return NULL;
}


static void run_workers(ak_service_t *svc) {
    pthread_t threads[THREADS];
    worker_arg_t args[THREADS];

    for (int i = 0; i < THREADS; i++) {
        memset(&args[i], 0, sizeof(args[i]));
        args[i].svc = svc;
        cr_assert_eq(pthread_create(&threads[i], NULL, worker_main, &args[i]),
                     0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
    }
    for (int i = 0; i < THREADS; i++) {
        cr_assert_eq(args[i].failures, 0, "thread %d: %d failures (%s)", i,
                     args[i].failures, args[i].err);
    }
}


BOTH_STORES(threads_sharing_a_service_all_get_their_answers) {
    run_workers(fx.svc);
}


/* ---- MongoDB only ------------------------------------------------------- */

static char *stored_json(const char *key_id) {
    mongoc_client_t *client = mg_pop(fx.mg);
    mongoc_collection_t *coll =
        mongoc_client_get_collection(client, fx.db, "api_keys");
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(key_id));
    mongoc_cursor_t *cursor =
        mongoc_collection_find_with_opts(coll, filter, NULL, NULL);
    const bson_t *doc;
    char *json = NULL;
    char *copy;

    if (mongoc_cursor_next(cursor, &doc)) {
        json = bson_as_relaxed_extended_json(doc, NULL);
    }
    mongoc_cursor_destroy(cursor);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
    mg_push(fx.mg, client);
    cr_assert_not_null(json, "no document with _id %s", key_id);
    copy = strdup(json);
    bson_free(json);
    return copy;
}


Test(apikeys_mongo,
     the_stored_document_holds_no_part_of_the_key,
     .init = fx_mongo,
     .fini = fx_done) {
    Cpstore__V1__CreateApiKeyResponse resp;
    char *scopes[] = {"memory:read"};
    key_spec_t spec = {.scopes = scopes, .n_scopes = 1, .org_id = "org-a"};
    char err[256] = "";
    const char *random;
    char *json;

    cr_assert_eq(try_create(&spec, &resp, err, sizeof(err)), CPS_OK, "%s", err);
    json = stored_json(resp.key_id);
    cr_log_info("stored: %s", json);

    cr_assert_null(strstr(json, resp.key));
    random = resp.key + strlen(PREFIX) + 1;
    for (size_t i = 0; i + 8 <= strlen(random); i++) {
        char piece[9];

        memcpy(piece, random + i, 8);
        piece[8] = '\0';
        cr_assert_null(strstr(json, piece), "stored document contains \"%s\"",
                       piece);
    }
    free(json);
    ak_create_response_clear(&resp);
}


Test(apikeys_mongo,
     the_stored_document_has_the_documented_layout,
     .init = fx_mongo,
     .fini = fx_done) {
    Cpstore__V1__CreateApiKeyResponse resp;
    key_spec_t spec = {.expires_in_ms = 60000};
    char err[256] = "";
    mongoc_client_t *client;
    mongoc_collection_t *coll;
    bson_t *filter;
    bson_t *doc;
    bson_iter_t it;

    cr_assert_eq(try_create(&spec, &resp, err, sizeof(err)), CPS_OK, "%s", err);
    client = mg_pop(fx.mg);
    coll = mongoc_client_get_collection(client, fx.db, "api_keys");
    filter = BCON_NEW("_id", BCON_UTF8(resp.key_id));
    {
        mongoc_cursor_t *cursor =
            mongoc_collection_find_with_opts(coll, filter, NULL, NULL);
        const bson_t *found;

        cr_assert(mongoc_cursor_next(cursor, &found));
        doc = bson_copy(found);
        mongoc_cursor_destroy(cursor);
    }

    cr_assert(bson_iter_init_find(&it, doc, "key_hash"));
    cr_assert(BSON_ITER_HOLDS_BINARY(&it));
    cr_assert(bson_iter_init_find(&it, doc, "created_at"));
    cr_assert(BSON_ITER_HOLDS_DATE_TIME(&it));
    cr_assert_eq(bson_iter_date_time(&it), resp.info->created_at_ms);
    cr_assert(bson_iter_init_find(&it, doc, "expires_at"));
    cr_assert(BSON_ITER_HOLDS_DATE_TIME(&it));
    cr_assert_eq(bson_iter_date_time(&it), resp.info->expires_at_ms);
    cr_assert(bson_iter_init_find(&it, doc, "revoked_at"));
    cr_assert(BSON_ITER_HOLDS_NULL(&it));
    cr_assert(bson_iter_init_find(&it, doc, "org_id"));
    cr_assert(BSON_ITER_HOLDS_NULL(&it));
    cr_assert(bson_iter_init_find(&it, doc, "scopes"));
    cr_assert(BSON_ITER_HOLDS_ARRAY(&it));

    bson_destroy(doc);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
    mg_push(fx.mg, client);
    ak_create_response_clear(&resp);
}


/*
 * A store whose server cannot be reached fails create and verify with
 * UNAVAILABLE, and soon: within the two-second server selection timeout
 * mg_open sets, far from libmongoc's default of 30 s.
 */
Test(apikeys_mongo,
     an_unreachable_server_is_unavailable_for_create_and_verify,
     .fini = fx_done) {
    char uri[64];
    char err[256] = "";
    Cpstore__V1__CreateApiKeyResponse created;
    Cpstore__V1__VerifyApiKeyRequest vreq =
        CPSTORE__V1__VERIFY_API_KEY_REQUEST__INIT;
    Cpstore__V1__VerifyApiKeyResponse verified;
    const char *key = PREFIX "_UnreachableUnreachableUnreachableUnreach01";
    int64_t start;

    memset(&fx, 0, sizeof(fx));
    snprintf(uri, sizeof(uri), "mongodb://127.0.0.1:%d/", h_free_port());
    fx.mg = mg_open(uri, "cpsak_unreachable", err, sizeof(err));
    cr_assert_not_null(fx.mg, "%s", err);
    fx.store = ks_mongo_new(fx.mg, err, sizeof(err));
    cr_assert_not_null(fx.store, "%s", err);
    fx_service();

    start = clock_mono_ms();
    cr_assert_eq(try_create(&(key_spec_t){0}, &created, err, sizeof(err)),
                 CPS_UNAVAILABLE);
    cr_assert_lt(clock_mono_ms() - start, 10000);
    cr_assert_neq(err[0], '\0');
    cr_assert_str_eq(created.key, "");

    vreq.key = (char *)key;
    start = clock_mono_ms();
    cr_assert_eq(ak_verify(fx.svc, &vreq, clock_mono_ms() + 10000, &verified,
                           err, sizeof(err)),
                 CPS_UNAVAILABLE);
    cr_assert_lt(clock_mono_ms() - start, 10000);
    cr_assert_null(strstr(err, key));

    cr_assert_eq(ks_ping(fx.store, 0, err, sizeof(err)), CPS_UNAVAILABLE);
}


Test(apikeys_mongo, mg_open_refuses_a_malformed_uri) {
    char err[256] = "";

    cr_assert_null(mg_open("http://127.0.0.1/", NULL, err, sizeof(err)));
    cr_assert_neq(err[0], '\0');
}


Test(apikeys_mongo, the_database_comes_from_the_argument_the_uri_or_default) {
    char err[256] = "";
    mg_t *mg;

    mg = mg_open("mongodb://127.0.0.1:1/fromuri", "fromarg", err, sizeof(err));
    cr_assert_str_eq(mg_database_name(mg), "fromarg");
    mg_close(mg);
    mg = mg_open("mongodb://127.0.0.1:1/fromuri", NULL, err, sizeof(err));
    cr_assert_str_eq(mg_database_name(mg), "fromuri");
    mg_close(mg);
    mg = mg_open("mongodb://127.0.0.1:1/", NULL, err, sizeof(err));
    cr_assert_str_eq(mg_database_name(mg), "cpstore");
    mg_close(mg);
}


Test(apikeys_mongo,
     a_pool_smaller_than_the_thread_count_still_serves_all,
     .init = fx_mongo_small_pool,
     .fini = fx_done) {
    run_workers(fx.svc);
}
