/*
 * The rest of an API key's life through cpstored: Get, List, Revoke,
 * Rotate and last_used_at, on the MongoDB-compatible server of
 * CPSTORE_TEST_MONGO_URI (FerretDB in the test suite) and on the memory
 * backend. Each behaviour is written once (LC_TEST) and runs in both
 * suites; what needs two cpstored processes on one database runs on
 * MongoDB only. Each mongo test gets a database of its own, dropped at the
 * end.
 */
#include <criterion/criterion.h>

#include <mongoc/mongoc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pb_decode.h>

#include "clock.h"
#include "crypto.h"
#include "harness.h"

#define SECRET "test-secret-0123456789abcdef0123456789abcdef"

#define ST_OK                  0
#define ST_INVALID_ARGUMENT    3
#define ST_NOT_FOUND           5
#define ST_FAILED_PRECONDITION 9

static h_proc_t server;   /* instance A */
static h_proc_t server_b; /* instance B, on A's database (mongo only) */
static int on_mongo;
static char db_name[96];
static char mongo_arg[400];
static char db_arg[128];


/* ---- servers ----------------------------------------------------------- */

static void start_mongo_instance(h_proc_t *p) {
    const char *args[] = {mongo_arg, db_arg, NULL};
    const char *env[] = {"CPSTORE_SECRET=" SECRET, NULL};

    h_cpstored_start(p, args, env);
}


static void start_mongo_backend(void) {
    on_mongo = 1;
    h_unique(db_name, sizeof(db_name), "cpstore_lc");
    snprintf(mongo_arg, sizeof(mongo_arg), "--mongo=%s", h_mongo_uri());
    snprintf(db_arg, sizeof(db_arg), "--mongo-db=%s", db_name);
    start_mongo_instance(&server);
}


/* Two cpstored processes, one database, one secret. */
static void start_two_mongo_instances(void) {
    start_mongo_backend();
    start_mongo_instance(&server_b);
}


static void start_memory_backend(void) {
    const char *env[] = {"CPSTORE_SECRET=" SECRET, NULL};

    on_mongo = 0;
    h_cpstored_start(&server, NULL, env);
}


static void stop_servers(void) {
    h_proc_stop(&server);
    h_proc_stop(&server_b);
    if (on_mongo) {
        mongoc_client_t *client;
        mongoc_database_t *db;

        mongoc_init();
        client = mongoc_client_new(h_mongo_uri());
        cr_assert_not_null(client);
        db = mongoc_client_get_database(client, db_name);
        mongoc_database_drop(db, NULL);
        mongoc_database_destroy(db);
        mongoc_client_destroy(client);
        mongoc_cleanup();
    }
}


#define LC_TEST(name)                                                          \
    static void name##_body(void);                                             \
    Test(lc_mongo, name, .init = start_mongo_backend, .fini = stop_servers,    \
         .timeout = 90) {                                                      \
        name##_body();                                                         \
    }                                                                          \
    Test(lc_memory, name, .init = start_memory_backend, .fini = stop_servers,  \
         .timeout = 90) {                                                      \
        name##_body();                                                         \
    }                                                                          \
    static void name##_body(void)


/* ---- calls ------------------------------------------------------------- */

/* A key with every attribute set: two scopes, an org and a project, an
 * expiry an hour away and two metadata entries. */
static cpstore_v1_CreateApiKeyResponse create_full_key(cpc_t *c,
                                                       const char *user) {
    cpstore_v1_CreateApiKeyRequest req =
        cpstore_v1_CreateApiKeyRequest_init_zero;
    cpstore_v1_CreateApiKeyResponse resp;
    cpc_reply_t reply;

    snprintf(req.user_id, sizeof(req.user_id), "%s", user);
    strcpy(req.name, "deploy bot");
    strcpy(req.scopes[req.scopes_count++], "memory:read");
    strcpy(req.scopes[req.scopes_count++], "billing:*");
    strcpy(req.org_id, "org-1");
    strcpy(req.project_id, "proj-1");
    req.expires_at_ms = clock_now_ms() + 3600 * 1000;
    strcpy(req.metadata[0].key, "team");
    strcpy(req.metadata[0].value, "core");
    strcpy(req.metadata[1].key, "env");
    strcpy(req.metadata[1].value, "ci");
    req.metadata_count = 2;
    cr_assert_eq(cpc_apikeys_create(c, &req, &resp, &reply), CPC_OK, "%s",
                 cpc_last_error(c));
    cr_assert_eq(reply.status, ST_OK, "create: %s", reply.error.message);
    return resp;
}


/* A key of user with one scope, expiring at expires_at_ms (0: never). */
static cpstore_v1_CreateApiKeyResponse
create_key(cpc_t *c, const char *user, int64_t expires_at_ms) {
    cpstore_v1_CreateApiKeyRequest req =
        cpstore_v1_CreateApiKeyRequest_init_zero;
    cpstore_v1_CreateApiKeyResponse resp;
    cpc_reply_t reply;

    snprintf(req.user_id, sizeof(req.user_id), "%s", user);
    strcpy(req.scopes[req.scopes_count++], "a:b");
    req.expires_at_ms = expires_at_ms;
    cr_assert_eq(cpc_apikeys_create(c, &req, &resp, &reply), CPC_OK, "%s",
                 cpc_last_error(c));
    cr_assert_eq(reply.status, ST_OK, "create: %s", reply.error.message);
    return resp;
}


static cpstore_v1_VerifyApiKeyResponse verify(cpc_t *c,
                                              const char *key,
                                              const char *scope,
                                              const char *org,
                                              const char *project) {
    cpstore_v1_VerifyApiKeyRequest req =
        cpstore_v1_VerifyApiKeyRequest_init_zero;
    cpstore_v1_VerifyApiKeyResponse resp;
    cpc_reply_t reply;

    snprintf(req.key, sizeof(req.key), "%s", key);
    if (scope != NULL) {
        strcpy(req.required_scopes[req.required_scopes_count++], scope);
    }
    if (org != NULL) {
        strcpy(req.org_id, org);
    }
    if (project != NULL) {
        strcpy(req.project_id, project);
    }
    cr_assert_eq(cpc_apikeys_verify(c, &req, &resp, &reply), CPC_OK, "%s",
                 cpc_last_error(c));
    cr_assert_eq(reply.status, ST_OK, "verify: %s", reply.error.message);
    return resp;
}


static cpstore_v1_VerifyCode verify_code(cpc_t *c, const char *key) {
    return verify(c, key, NULL, NULL, NULL).code;
}


/* 1 when the len bytes at needle occur in the reply's payload. */
static int
payload_holds(const cpc_reply_t *reply, const void *needle, size_t len) {
    for (size_t i = 0; i + len <= reply->payload_len; i++) {
        if (memcmp(reply->payload + i, needle, len) == 0) {
            return 1;
        }
    }
    return 0;
}


/*
 * Fail when the payload holds the key, any eight characters of its random
 * part, or its HMAC (the stored hash) raw or in hex: what a Get or List
 * answer must never carry, whichever field it might hide in.
 */
static void expect_no_secret_in(const cpc_reply_t *reply, const char *key) {
    const char *random = strrchr(key, '_') + 1;
    uint8_t hash[CRYPTO_SHA256_LEN];
    char hash_hex[2 * CRYPTO_SHA256_LEN + 1];

    cr_assert_not(payload_holds(reply, key, strlen(key)),
                  "the answer holds the key");
    for (size_t i = 0; i + 8 <= strlen(random); i++) {
        cr_assert_not(payload_holds(reply, random + i, 8),
                      "the answer holds \"%.8s\" of the key", random + i);
    }
    cr_assert_eq(
        crypto_hmac_sha256(SECRET, strlen(SECRET), key, strlen(key), hash), 0);
    crypto_hex(hash, sizeof(hash), hash_hex);
    cr_assert_not(payload_holds(reply, hash, sizeof(hash)),
                  "the answer holds the key's hash");
    cr_assert_not(payload_holds(reply, hash_hex, 16),
                  "the answer holds the key's hash in hex");
}


/* Get; the reply's status, with *out filled when it is OK. When hide is
 * not NULL, the answer must not carry that key. */
static int get_key(cpc_t *c,
                   const char *key_id,
                   cpstore_v1_ApiKey *out,
                   const char *hide) {
    cpstore_v1_GetApiKeyRequest req = cpstore_v1_GetApiKeyRequest_init_zero;
    static cpstore_v1_GetApiKeyResponse resp;
    cpc_reply_t reply;

    snprintf(req.key_id, sizeof(req.key_id), "%s", key_id);
    cr_assert_eq(cpc_call(c, cpstore_v1_ApiKeysMethod_API_KEYS_METHOD_GET,
                          cpstore_v1_GetApiKeyRequest_fields, &req,
                          cpstore_v1_GetApiKeyResponse_fields, &resp, &reply),
                 CPC_OK, "%s", cpc_last_error(c));
    if (reply.status == ST_OK) {
        cr_assert(resp.has_key);
        *out = resp.key;
        if (hide != NULL) {
            expect_no_secret_in(&reply, hide);
        }
    }
    return reply.status;
}


/* A List answer, decoded item by item into a growing array. */
typedef struct listed {
    cpstore_v1_ApiKey *keys;
    size_t n;
    size_t cap;
} listed_t;


static bool
list_item(pb_istream_t *stream, const pb_field_t *field, void **arg) {
    listed_t *l = *arg;

    (void)field;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        cpstore_v1_ApiKey *keys = realloc(l->keys, cap * sizeof(*keys));

        if (keys == NULL) {
            return false;
        }
        l->keys = keys;
        l->cap = cap;
    }
    if (!pb_decode(stream, cpstore_v1_ApiKey_fields, &l->keys[l->n])) {
        return false;
    }
    l->n++;
    return true;
}


/* The user's keys as List answers; none of the keys in hide (NULL
 * terminated, may be NULL) may appear in the answer. */
static listed_t list_keys(cpc_t *c, const char *user, const char *const *hide) {
    cpstore_v1_ListApiKeysRequest req = cpstore_v1_ListApiKeysRequest_init_zero;
    cpstore_v1_ListApiKeysResponse resp =
        cpstore_v1_ListApiKeysResponse_init_zero;
    listed_t l = {0};
    cpc_reply_t reply;

    snprintf(req.user_id, sizeof(req.user_id), "%s", user);
    resp.keys.funcs.decode = list_item;
    resp.keys.arg = &l;
    cr_assert_eq(cpc_call(c, cpstore_v1_ApiKeysMethod_API_KEYS_METHOD_LIST,
                          cpstore_v1_ListApiKeysRequest_fields, &req,
                          cpstore_v1_ListApiKeysResponse_fields, &resp, &reply),
                 CPC_OK, "%s", cpc_last_error(c));
    cr_assert_eq(reply.status, ST_OK, "list: %s", reply.error.message);
    for (size_t i = 0; hide != NULL && hide[i] != NULL; i++) {
        expect_no_secret_in(&reply, hide[i]);
    }
    return l;
}


static int revoke_key(cpc_t *c, const char *key_id, int64_t *revoked_at) {
    cpstore_v1_RevokeApiKeyRequest req =
        cpstore_v1_RevokeApiKeyRequest_init_zero;
    cpstore_v1_RevokeApiKeyResponse resp;
    cpc_reply_t reply;

    snprintf(req.key_id, sizeof(req.key_id), "%s", key_id);
    cr_assert_eq(cpc_call(c, cpstore_v1_ApiKeysMethod_API_KEYS_METHOD_REVOKE,
                          cpstore_v1_RevokeApiKeyRequest_fields, &req,
                          cpstore_v1_RevokeApiKeyResponse_fields, &resp,
                          &reply),
                 CPC_OK, "%s", cpc_last_error(c));
    if (reply.status == ST_OK && revoked_at != NULL) {
        *revoked_at = resp.revoked_at_ms;
    }
    return reply.status;
}


static int rotate_key(cpc_t *c,
                      const char *key_id,
                      uint64_t grace_ms,
                      cpstore_v1_RotateApiKeyResponse *out) {
    cpstore_v1_RotateApiKeyRequest req =
        cpstore_v1_RotateApiKeyRequest_init_zero;
    cpc_reply_t reply;

    snprintf(req.key_id, sizeof(req.key_id), "%s", key_id);
    req.grace_ms = grace_ms;
    cr_assert_eq(cpc_call(c, cpstore_v1_ApiKeysMethod_API_KEYS_METHOD_ROTATE,
                          cpstore_v1_RotateApiKeyRequest_fields, &req,
                          cpstore_v1_RotateApiKeyResponse_fields, out, &reply),
                 CPC_OK, "%s", cpc_last_error(c));
    return reply.status;
}


/* Sleep until the wall clock has passed t_ms. */
static void sleep_past(int64_t t_ms) {
    int64_t now = clock_now_ms();

    if (now <= t_ms) {
        usleep((useconds_t)(t_ms - now + 50) * 1000);
    }
}


/* The attributes a rotation must carry over, compared field by field. */
static void expect_same_attributes(const cpstore_v1_ApiKey *a,
                                   const cpstore_v1_ApiKey *b) {
    cr_assert_str_eq(a->user_id, b->user_id);
    cr_assert_str_eq(a->name, b->name);
    cr_assert_eq(a->scopes_count, b->scopes_count);
    for (pb_size_t i = 0; i < a->scopes_count; i++) {
        cr_assert_str_eq(a->scopes[i], b->scopes[i]);
    }
    cr_assert_str_eq(a->org_id, b->org_id);
    cr_assert_str_eq(a->project_id, b->project_id);
    cr_assert_eq(a->expires_at_ms, b->expires_at_ms);
    cr_assert_eq(a->metadata_count, b->metadata_count);
    for (pb_size_t i = 0; i < a->metadata_count; i++) {
        cr_assert_str_eq(a->metadata[i].key, b->metadata[i].key);
        cr_assert_str_eq(a->metadata[i].value, b->metadata[i].value);
    }
}


/* ---- Get and List ------------------------------------------------------ */

LC_TEST(get_describes_every_attribute_and_never_the_key) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_CreateApiKeyResponse k = create_full_key(c, "user-1");
    static cpstore_v1_ApiKey got;

    cr_assert_eq(get_key(c, k.key_id, &got, k.key), ST_OK);
    cr_assert_str_eq(got.key_id, k.key_id);
    cr_assert_str_eq(got.hint, k.info.hint);
    cr_assert_eq(got.created_at_ms, k.info.created_at_ms);
    cr_assert_eq(got.revoked_at_ms, 0);
    cr_assert_eq(got.last_used_at_ms, 0);
    cr_assert_str_eq(got.rotated_from, "");
    expect_same_attributes(&got, &k.info);
    cr_assert_str_eq(got.scopes[1], "billing:*");
    cr_assert_str_eq(got.metadata[1].value, "ci");
    cpc_close(c);
}


LC_TEST(unknown_key_ids_are_not_found_and_empty_ones_invalid) {
    cpc_t *c = h_connect(&server);
    static cpstore_v1_ApiKey got;
    static cpstore_v1_RotateApiKeyResponse rotated;
    const char *unknown = "key_000000000000000000000000";

    cr_assert_eq(get_key(c, unknown, &got, NULL), ST_NOT_FOUND);
    cr_assert_eq(revoke_key(c, unknown, NULL), ST_NOT_FOUND);
    cr_assert_eq(rotate_key(c, unknown, 1000, &rotated), ST_NOT_FOUND);
    cr_assert_eq(get_key(c, "", &got, NULL), ST_INVALID_ARGUMENT);
    cr_assert_eq(revoke_key(c, "", NULL), ST_INVALID_ARGUMENT);
    cpc_close(c);
}


LC_TEST(a_payload_that_is_no_request_is_invalid_argument) {
    static const uint16_t methods[] = {
        cpstore_v1_ApiKeysMethod_API_KEYS_METHOD_GET,
        cpstore_v1_ApiKeysMethod_API_KEYS_METHOD_LIST,
        cpstore_v1_ApiKeysMethod_API_KEYS_METHOD_REVOKE,
        cpstore_v1_ApiKeysMethod_API_KEYS_METHOD_ROTATE,
    };
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
    cpc_t *c = h_connect(&server);
    cpc_reply_t reply;
    uint32_t id;

    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        cr_assert_eq(cpc_send_raw(c, methods[i], junk, sizeof(junk), &id),
                     CPC_OK);
        cr_assert_eq(cpc_recv(c, &reply), CPC_OK);
        cr_assert_eq(reply.request_id, id);
        cr_assert_eq(reply.status, ST_INVALID_ARGUMENT, "method 0x%04x: %d",
                     methods[i], reply.status);
    }
    cpc_close(c);
}


LC_TEST(list_gives_the_users_keys_newest_first_and_never_a_key) {
    cpc_t *c = h_connect(&server);
    static cpstore_v1_CreateApiKeyResponse k[3];
    cpstore_v1_CreateApiKeyResponse other;
    const char *hide[4];
    listed_t l;

    for (int i = 0; i < 3; i++) {
        k[i] = create_key(c, "alice", 0);
        hide[i] = k[i].key;
        usleep(3000); /* distinct creation times */
    }
    hide[3] = NULL;
    other = create_key(c, "bob", 0);

    l = list_keys(c, "alice", hide);
    cr_assert_eq(l.n, 3);
    for (size_t i = 0; i < 3; i++) {
        cr_assert_str_eq(l.keys[i].key_id, k[2 - i].key_id, "position %zu", i);
        cr_assert_str_eq(l.keys[i].user_id, "alice");
        cr_assert_str_neq(l.keys[i].key_id, other.key_id);
    }
    free(l.keys);

    l = list_keys(c, "nobody", NULL);
    cr_assert_eq(l.n, 0);
    free(l.keys);
    cpc_close(c);
}


LC_TEST(list_stops_at_the_fifty_newest_keys) {
    cpc_t *c = h_connect(&server);
    static char ids[52][48];
    listed_t l;

    for (int i = 0; i < 52; i++) {
        cpstore_v1_CreateApiKeyResponse k = create_key(c, "carol", 0);

        strcpy(ids[i], k.key_id);
        usleep(2000);
    }
    l = list_keys(c, "carol", NULL);
    cr_assert_eq(l.n, 50);
    for (size_t i = 0; i < 50; i++) {
        cr_assert_str_eq(l.keys[i].key_id, ids[51 - i], "position %zu", i);
    }
    free(l.keys);
    cpc_close(c);
}


LC_TEST(list_shows_revoked_and_rotated_keys_with_their_state) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_CreateApiKeyResponse a = create_key(c, "dave", 0);
    cpstore_v1_CreateApiKeyResponse b;
    static cpstore_v1_RotateApiKeyResponse r;
    int64_t revoked_at;
    listed_t l;

    usleep(3000);
    cr_assert_eq(revoke_key(c, a.key_id, &revoked_at), ST_OK);
    b = create_key(c, "dave", 0);
    usleep(3000);
    cr_assert_eq(rotate_key(c, b.key_id, 60000, &r), ST_OK);

    /* Newest first: the rotated key, its predecessor, the revoked one. */
    l = list_keys(c, "dave", (const char *const[]){a.key, b.key, r.key, NULL});
    cr_assert_eq(l.n, 3);
    cr_assert_str_eq(l.keys[0].key_id, r.key_id);
    cr_assert_str_eq(l.keys[0].rotated_from, b.key_id);
    cr_assert_str_eq(l.keys[1].key_id, b.key_id);
    cr_assert_eq(l.keys[1].expires_at_ms, r.old_expires_at_ms);
    cr_assert_str_eq(l.keys[2].key_id, a.key_id);
    cr_assert_eq(l.keys[2].revoked_at_ms, revoked_at);
    free(l.keys);
    cpc_close(c);
}


/* ---- Revoke ------------------------------------------------------------ */

LC_TEST(a_revoked_key_is_refused_at_once_and_get_says_when) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_CreateApiKeyResponse k = create_full_key(c, "user-1");
    static cpstore_v1_ApiKey got;
    int64_t before, after, revoked_at = 0;

    cr_assert_eq(verify_code(c, k.key), cpstore_v1_VerifyCode_VALID);
    before = clock_now_ms();
    cr_assert_eq(revoke_key(c, k.key_id, &revoked_at), ST_OK);
    after = clock_now_ms();
    cr_assert_geq(revoked_at, before);
    cr_assert_leq(revoked_at, after);

    cr_assert_eq(verify_code(c, k.key), cpstore_v1_VerifyCode_REVOKED);
    cr_assert_eq(get_key(c, k.key_id, &got, k.key), ST_OK);
    cr_assert_eq(got.revoked_at_ms, revoked_at);
    cpc_close(c);
}


LC_TEST(revoking_twice_keeps_the_first_revocation_time) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_CreateApiKeyResponse k = create_key(c, "user-1", 0);
    int64_t first = 0, second = 0;

    cr_assert_eq(revoke_key(c, k.key_id, &first), ST_OK);
    usleep(20 * 1000);
    cr_assert_eq(revoke_key(c, k.key_id, &second), ST_OK);
    cr_assert_neq(first, 0);
    cr_assert_eq(second, first);
    cpc_close(c);
}


/* Instance A has just verified the key (and would serve it from a cache,
 * if it had one); B revokes it; A's next verify must not say VALID. */
Test(lc_two_instances,
     revoke_through_b_is_seen_through_a_at_once,
     .init = start_two_mongo_instances,
     .fini = stop_servers,
     .timeout = 90) {
    cpc_t *a = h_connect(&server);
    cpc_t *b = h_connect(&server_b);
    cpstore_v1_CreateApiKeyResponse k = create_full_key(a, "user-1");

    cr_assert_eq(verify(a, k.key, "memory:read", NULL, NULL).code,
                 cpstore_v1_VerifyCode_VALID);
    cr_assert_eq(verify(b, k.key, "memory:read", NULL, NULL).code,
                 cpstore_v1_VerifyCode_VALID);
    cr_assert_eq(revoke_key(b, k.key_id, NULL), ST_OK);
    cr_assert_eq(verify(a, k.key, "memory:read", NULL, NULL).code,
                 cpstore_v1_VerifyCode_REVOKED);
    cr_assert_eq(verify(b, k.key, "memory:read", NULL, NULL).code,
                 cpstore_v1_VerifyCode_REVOKED);
    cpc_close(a);
    cpc_close(b);
}


/* ---- Rotate ------------------------------------------------------------ */

LC_TEST(a_rotated_key_keeps_its_attributes_and_the_old_one_its_grace) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_CreateApiKeyResponse old = create_full_key(c, "user-1");
    static cpstore_v1_RotateApiKeyResponse r;
    static cpstore_v1_ApiKey got;
    cpstore_v1_VerifyApiKeyResponse v;
    const uint64_t grace = 2000;
    int64_t before, after;

    before = clock_now_ms();
    cr_assert_eq(rotate_key(c, old.key_id, grace, &r), ST_OK);
    after = clock_now_ms();
    cr_assert_str_neq(r.key, old.key);
    cr_assert_str_neq(r.key_id, old.key_id);
    cr_assert(r.has_info);
    cr_assert_str_eq(r.info.key_id, r.key_id);
    cr_assert_str_eq(r.info.rotated_from, old.key_id);
    cr_assert_geq(r.old_expires_at_ms, before + (int64_t)grace);
    cr_assert_leq(r.old_expires_at_ms, after + (int64_t)grace);

    /* The new key: the same owner, scopes, binding, expiry and metadata. */
    expect_same_attributes(&r.info, &old.info);
    cr_assert_eq(get_key(c, r.key_id, &got, r.key), ST_OK);
    expect_same_attributes(&got, &old.info);
    cr_assert_str_eq(got.rotated_from, old.key_id);
    v = verify(c, r.key, "billing:write", "org-1", "proj-1");
    cr_assert_eq(v.code, cpstore_v1_VerifyCode_VALID);
    cr_assert_str_eq(v.user_id, "user-1");
    cr_assert_eq(v.scopes_count, 2);
    cr_assert_eq(verify(c, r.key, NULL, "org-2", NULL).code,
                 cpstore_v1_VerifyCode_CONTEXT_MISMATCH);
    cr_assert_eq(verify(c, r.key, "memory:write", NULL, NULL).code,
                 cpstore_v1_VerifyCode_INSUFFICIENT_SCOPE);

    /* The old key: valid through the grace period, expired after it. */
    cr_assert_eq(verify_code(c, old.key), cpstore_v1_VerifyCode_VALID);
    cr_assert_eq(get_key(c, old.key_id, &got, old.key), ST_OK);
    cr_assert_eq(got.expires_at_ms, r.old_expires_at_ms);
    sleep_past(r.old_expires_at_ms);
    cr_assert_eq(verify_code(c, old.key), cpstore_v1_VerifyCode_EXPIRED);
    cr_assert_eq(verify_code(c, r.key), cpstore_v1_VerifyCode_VALID);
    cpc_close(c);
}


LC_TEST(the_grace_period_never_outlives_the_old_keys_own_expiry) {
    cpc_t *c = h_connect(&server);
    int64_t expires = clock_now_ms() + 1500;
    cpstore_v1_CreateApiKeyResponse old = create_key(c, "user-1", expires);
    static cpstore_v1_RotateApiKeyResponse r;
    static cpstore_v1_ApiKey got;

    cr_assert_eq(rotate_key(c, old.key_id, 3600 * 1000, &r), ST_OK);
    cr_assert_eq(r.old_expires_at_ms, expires);
    cr_assert_eq(r.info.expires_at_ms, expires);
    cr_assert_eq(get_key(c, old.key_id, &got, NULL), ST_OK);
    cr_assert_eq(got.expires_at_ms, expires);
    sleep_past(expires);
    cr_assert_eq(verify_code(c, old.key), cpstore_v1_VerifyCode_EXPIRED);
    cpc_close(c);
}


LC_TEST(a_rotation_without_grace_ends_the_old_key_at_once) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_CreateApiKeyResponse old = create_key(c, "user-1", 0);
    static cpstore_v1_RotateApiKeyResponse r;

    cr_assert_eq(rotate_key(c, old.key_id, 0, &r), ST_OK);
    cr_assert_eq(verify_code(c, old.key), cpstore_v1_VerifyCode_EXPIRED);
    cr_assert_eq(verify_code(c, r.key), cpstore_v1_VerifyCode_VALID);
    cpc_close(c);
}


LC_TEST(revoked_expired_or_already_rotated_keys_cannot_be_rotated) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_CreateApiKeyResponse revoked = create_key(c, "user-1", 0);
    cpstore_v1_CreateApiKeyResponse expired =
        create_key(c, "user-1", clock_now_ms() + 300);
    cpstore_v1_CreateApiKeyResponse rotated = create_key(c, "user-1", 0);
    static cpstore_v1_RotateApiKeyResponse r;
    static cpstore_v1_RotateApiKeyResponse next;
    listed_t l;

    cr_assert_eq(revoke_key(c, revoked.key_id, NULL), ST_OK);
    cr_assert_eq(rotate_key(c, revoked.key_id, 1000, &r),
                 ST_FAILED_PRECONDITION);

    sleep_past(expired.info.expires_at_ms);
    cr_assert_eq(rotate_key(c, expired.key_id, 1000, &r),
                 ST_FAILED_PRECONDITION);

    /* Rotated once: its successor is the key to rotate, not it. */
    cr_assert_eq(rotate_key(c, rotated.key_id, 60000, &r), ST_OK);
    cr_assert_eq(rotate_key(c, rotated.key_id, 60000, &next),
                 ST_FAILED_PRECONDITION);
    cr_assert_eq(rotate_key(c, r.key_id, 60000, &next), ST_OK);
    cr_assert_str_eq(next.info.rotated_from, r.key_id);

    /* The refusals created nothing: three keys, two successors. */
    l = list_keys(c, "user-1", NULL);
    cr_assert_eq(l.n, 5);
    free(l.keys);
    cpc_close(c);
}


/* Many rotations of one key at once, over 10 connections spread over the
 * instances (two on MongoDB, one on memory), each connection pipelining
 * its share: a rotation's winner must be decided by the store, not by
 * each caller's earlier read. */
#define RACE_CONNECTIONS 10
#define RACE_PER_CONN    3
#define RACE_TOTAL       (RACE_CONNECTIONS * RACE_PER_CONN)

typedef struct race_conn {
    cpc_t *c;
    const char *key_id;
    pthread_barrier_t *start;
    int failures;      /* transport errors and undecodable replies */
    char failure[600]; /* the last one */
    int statuses[RACE_PER_CONN];
    char new_ids[RACE_PER_CONN][48];
} race_conn_t;


/* Pipeline this connection's rotations, then collect the answers. No
 * Criterion asserts on this thread: the main thread judges. */
static void *race_run(void *arg) {
    race_conn_t *rc = arg;
    cpstore_v1_RotateApiKeyRequest req =
        cpstore_v1_RotateApiKeyRequest_init_zero;
    uint32_t id;

    snprintf(req.key_id, sizeof(req.key_id), "%s", rc->key_id);
    req.grace_ms = 60000;
    pthread_barrier_wait(rc->start);
    for (int i = 0; i < RACE_PER_CONN; i++) {
        if (cpc_send(rc->c, cpstore_v1_ApiKeysMethod_API_KEYS_METHOD_ROTATE,
                     cpstore_v1_RotateApiKeyRequest_fields, &req,
                     &id) != CPC_OK) {
            rc->failures++;
        }
    }
    for (int i = 0; i < RACE_PER_CONN; i++) {
        cpstore_v1_RotateApiKeyResponse resp =
            cpstore_v1_RotateApiKeyResponse_init_zero;
        cpc_reply_t reply;

        rc->statuses[i] = -1;
        if (cpc_recv(rc->c, &reply) != CPC_OK) {
            snprintf(rc->failure, sizeof(rc->failure), "%s",
                     cpc_last_error(rc->c));
            rc->failures++;
            continue;
        }
        rc->statuses[i] = reply.status;
        if (reply.status != ST_OK) {
            continue;
        }
        if (cpc_decode(&reply, cpstore_v1_RotateApiKeyResponse_fields, &resp) !=
            CPC_OK) {
            snprintf(rc->failure, sizeof(rc->failure), "undecodable answer");
            rc->failures++;
            continue;
        }
        snprintf(rc->new_ids[i], sizeof(rc->new_ids[i]), "%s", resp.key_id);
    }
    return NULL;
}


LC_TEST(of_thirty_rotations_of_one_key_at_once_exactly_one_wins) {
    race_conn_t conns[RACE_CONNECTIONS];
    pthread_t threads[RACE_CONNECTIONS];
    pthread_barrier_t start;
    h_proc_t *instances[2] = {&server, &server_b};
    size_t n_instances = 1;
    cpc_t *c = h_connect(&server);
    cpstore_v1_CreateApiKeyResponse old = create_key(c, "racer", 0);
    const char *winner = NULL;
    int ok = 0, refused = 0, successors = 0;
    listed_t l;

    if (on_mongo) {
        start_mongo_instance(&server_b);
        n_instances = 2;
    }
    memset(conns, 0, sizeof(conns));
    pthread_barrier_init(&start, NULL, RACE_CONNECTIONS);
    for (int i = 0; i < RACE_CONNECTIONS; i++) {
        conns[i].c = h_connect(instances[(size_t)i % n_instances]);
        cpc_set_budget(conns[i].c, 30000);
        conns[i].key_id = old.key_id;
        conns[i].start = &start;
    }
    for (int i = 0; i < RACE_CONNECTIONS; i++) {
        cr_assert_eq(pthread_create(&threads[i], NULL, race_run, &conns[i]), 0);
    }
    for (int i = 0; i < RACE_CONNECTIONS; i++) {
        pthread_join(threads[i], NULL);
    }
    pthread_barrier_destroy(&start);

    for (int i = 0; i < RACE_CONNECTIONS; i++) {
        cr_assert_eq(conns[i].failures, 0, "connection %d: %s", i,
                     conns[i].failure);
        for (int j = 0; j < RACE_PER_CONN; j++) {
            if (conns[i].statuses[j] == ST_OK) {
                ok++;
                winner = conns[i].new_ids[j];
            } else if (conns[i].statuses[j] == ST_FAILED_PRECONDITION) {
                refused++;
            }
        }
        cpc_close(conns[i].c);
    }
    cr_assert_eq(ok, 1, "%d rotations succeeded", ok);
    cr_assert_eq(refused, RACE_TOTAL - 1, "%d rotations were refused", refused);

    /* The user's keys: the old one and the one successor that won. */
    l = list_keys(c, "racer", NULL);
    for (size_t i = 0; i < l.n; i++) {
        if (strcmp(l.keys[i].rotated_from, old.key_id) == 0) {
            successors++;
            cr_assert_str_eq(l.keys[i].key_id, winner);
        }
    }
    cr_assert_eq(successors, 1, "%d successors are stored", successors);
    cr_assert_eq(l.n, 2);
    free(l.keys);
    cpc_close(c);
}


/* ---- last_used_at ------------------------------------------------------ */

/* Verify notes the time in memory only; stopping instance A writes it
 * out, and instance B then reads it from the database. */
Test(lc_two_instances,
     last_used_at_reaches_the_database_when_a_stops,
     .init = start_two_mongo_instances,
     .fini = stop_servers,
     .timeout = 90) {
    cpc_t *a = h_connect(&server);
    cpc_t *b = h_connect(&server_b);
    cpstore_v1_CreateApiKeyResponse k = create_key(a, "user-1", 0);
    cpstore_v1_CreateApiKeyResponse unused = create_key(a, "user-1", 0);
    static cpstore_v1_ApiKey got;
    int64_t before, after;
    int status;

    before = clock_now_ms();
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(verify_code(a, k.key), cpstore_v1_VerifyCode_VALID);
    }
    after = clock_now_ms();
    cpc_close(a);
    status = h_proc_stop(&server);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "instance A did not stop cleanly: %d", status);

    cr_assert_eq(get_key(b, k.key_id, &got, NULL), ST_OK);
    cr_assert_geq(got.last_used_at_ms, before);
    cr_assert_leq(got.last_used_at_ms, after);
    cr_assert_eq(get_key(b, unused.key_id, &got, NULL), ST_OK);
    cr_assert_eq(got.last_used_at_ms, 0);
    cpc_close(b);
}
