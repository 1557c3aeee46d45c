/*
 * Sessions through cpstored, on the MongoDB-compatible server of
 * CPSTORE_TEST_MONGO_URI (FerretDB in the test suite) and on the memory
 * backend. Each behaviour is written once (SS_TEST) and runs in both
 * suites; each mongo test gets a database of its own, dropped at the end.
 *
 * Every server starts with a configuration file of its own: default
 * timeouts of 45m idle and 6h absolute (so that a test can tell them from
 * the built-in 30m and 12h), and a touch interval of 100ms, short enough
 * for sessions with a one-second idle timeout to slide. The touch test
 * (SS_TEST_SLOW_TOUCH) uses a 3s interval instead, so that several
 * validates fit within one interval.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <mongoc/mongoc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "harness.h"

#include <pb_decode.h>

#include "cpstore/v1/sessions.pb-c.h"
#include "cpstore/v1/sessions.pb.h"

#define SECRET "test-secret-0123456789abcdef0123456789abcdef"

#define CONFIG_FAST_TOUCH                                                      \
    "[session]\n"                                                              \
    "idle_timeout = 45m\n"                                                     \
    "absolute_lifetime = 6h\n"                                                 \
    "touch_interval = 100ms\n"
#define CONFIG_SLOW_TOUCH                                                      \
    "[session]\n"                                                              \
    "touch_interval = 3s\n"

#define MINUTE_MS (60 * 1000)
#define HOUR_MS   (60 * MINUTE_MS)

#define ST_INVALID_ARGUMENT 3

typedef cpstore_v1_CreateSessionResponse created_t;
typedef cpstore_v1_ValidateSessionResponse validated_t;

static h_proc_t server;
static int on_mongo;
static char db_name[96];
static char mongo_arg[400];
static char db_arg[128];
static char config_path[512];
static char config_arg[600];


/* ---- fixtures ---------------------------------------------------------- */

static void make_config(const char *text) {
    const char *tmp = getenv("TMPDIR");
    char name[128];
    FILE *f;

    h_unique(name, sizeof(name), "cpstored-sessions");
    snprintf(config_path, sizeof(config_path), "%s/%s.ini", tmp ? tmp : "/tmp",
             name);
    snprintf(config_arg, sizeof(config_arg), "--config=%s", config_path);
    f = fopen(config_path, "w");
    cr_assert_not_null(f, "%s: %s", config_path, strerror(errno));
    cr_assert(fputs(text, f) >= 0);
    cr_assert_eq(fclose(f), 0);
}


static void start_mongo(const char *config) {
    const char *args[] = {mongo_arg, db_arg, config_arg, NULL};
    const char *env[] = {"CPSTORE_SECRET=" SECRET, NULL};

    on_mongo = 1;
    make_config(config);
    h_unique(db_name, sizeof(db_name), "cpstore_ss");
    snprintf(mongo_arg, sizeof(mongo_arg), "--mongo=%s", h_mongo_uri());
    snprintf(db_arg, sizeof(db_arg), "--mongo-db=%s", db_name);
    h_cpstored_start(&server, args, env);
}


static void start_memory(const char *config) {
    const char *args[] = {config_arg, NULL};
    const char *env[] = {"CPSTORE_SECRET=" SECRET, NULL};

    on_mongo = 0;
    make_config(config);
    h_cpstored_start(&server, args, env);
}


static void start_mongo_fast(void) {
    start_mongo(CONFIG_FAST_TOUCH);
}


static void start_memory_fast(void) {
    start_memory(CONFIG_FAST_TOUCH);
}


static void start_mongo_slow(void) {
    start_mongo(CONFIG_SLOW_TOUCH);
}


static void start_memory_slow(void) {
    start_memory(CONFIG_SLOW_TOUCH);
}


static mongoc_client_t *mongo_client(void) {
    mongoc_client_t *client;

    mongoc_init();
    client = mongoc_client_new(h_mongo_uri());
    cr_assert_not_null(client);
    return client;
}


static void stop_server(void) {
    h_proc_stop(&server);
    unlink(config_path);
    if (on_mongo) {
        mongoc_client_t *client = mongo_client();
        mongoc_database_t *db = mongoc_client_get_database(client, db_name);

        mongoc_database_drop(db, NULL);
        mongoc_database_destroy(db);
        mongoc_client_destroy(client);
        mongoc_cleanup();
    }
}


#define SS_TEST_WITH(name, mongo_init, memory_init)                            \
    static void name##_body(void);                                             \
    Test(ss_mongo, name, .init = mongo_init, .fini = stop_server,              \
         .timeout = 90) {                                                      \
        name##_body();                                                         \
    }                                                                          \
    Test(ss_memory, name, .init = memory_init, .fini = stop_server,            \
         .timeout = 90) {                                                      \
        name##_body();                                                         \
    }                                                                          \
    static void name##_body(void)

#define SS_TEST(name) SS_TEST_WITH(name, start_mongo_fast, start_memory_fast)
#define SS_TEST_SLOW_TOUCH(name)                                               \
    SS_TEST_WITH(name, start_mongo_slow, start_memory_slow)


/* ---- calls ------------------------------------------------------------- */

typedef struct session_opts {
    const char *user;
    const char *kind;
    uint64_t idle_ms;
    uint64_t absolute_ms;
    const char *meta[4][2];
} session_opts_t;


static created_t create_on(cpc_t *c, const session_opts_t *o) {
    static cpstore_v1_CreateSessionRequest req;
    created_t resp;
    cpc_reply_t reply;

    memset(&req, 0, sizeof(req));
    snprintf(req.user_id, sizeof(req.user_id), "%s",
             o->user != NULL ? o->user : "user-1");
    if (o->kind != NULL) {
        snprintf(req.kind, sizeof(req.kind), "%s", o->kind);
    }
    req.idle_timeout_ms = o->idle_ms;
    req.absolute_lifetime_ms = o->absolute_ms;
    for (int i = 0; i < 4 && o->meta[i][0] != NULL; i++) {
        snprintf(req.metadata[i].key, sizeof(req.metadata[i].key), "%s",
                 o->meta[i][0]);
        snprintf(req.metadata[i].value, sizeof(req.metadata[i].value), "%s",
                 o->meta[i][1]);
        req.metadata_count++;
    }
    cr_assert_eq(cpc_call(c, cpstore_v1_SessionsMethod_SESSIONS_METHOD_CREATE,
                          cpstore_v1_CreateSessionRequest_fields, &req,
                          cpstore_v1_CreateSessionResponse_fields, &resp,
                          &reply),
                 CPC_OK, "%s", cpc_last_error(c));
    cr_assert_eq(reply.status, 0, "create failed: %s", reply.error.message);
    cr_assert_neq(resp.token[0], '\0');
    cr_assert(resp.has_session);
    return resp;
}


static created_t
create_for(cpc_t *c, const char *user, uint64_t idle_ms, uint64_t absolute_ms) {
    session_opts_t o = {
        .user = user, .idle_ms = idle_ms, .absolute_ms = absolute_ms};

    return create_on(c, &o);
}


static validated_t validate(cpc_t *c, const char *token) {
    cpstore_v1_ValidateSessionRequest req =
        cpstore_v1_ValidateSessionRequest_init_zero;
    validated_t resp;
    cpc_reply_t reply;

    snprintf(req.token, sizeof(req.token), "%s", token);
    cr_assert_eq(cpc_call(c, cpstore_v1_SessionsMethod_SESSIONS_METHOD_VALIDATE,
                          cpstore_v1_ValidateSessionRequest_fields, &req,
                          cpstore_v1_ValidateSessionResponse_fields, &resp,
                          &reply),
                 CPC_OK, "%s", cpc_last_error(c));
    cr_assert_eq(reply.status, 0, "validate failed: %s", reply.error.message);
    cr_assert_eq(resp.valid, resp.code == cpstore_v1_SessionCode_SESSION_VALID);
    return resp;
}


static cpstore_v1_SessionCode code_of(cpc_t *c, const char *token) {
    return validate(c, token).code;
}


/* Revoke by token or by id; the reply's status goes to *status. */
static int
revoke_raw(cpc_t *c, const char *token, const char *id, int *status) {
    cpstore_v1_RevokeSessionRequest req =
        cpstore_v1_RevokeSessionRequest_init_zero;
    cpstore_v1_RevokeSessionResponse resp = {0};
    cpc_reply_t reply;

    if (token != NULL) {
        snprintf(req.token, sizeof(req.token), "%s", token);
    }
    if (id != NULL) {
        snprintf(req.session_id, sizeof(req.session_id), "%s", id);
    }
    cr_assert_eq(cpc_call(c, cpstore_v1_SessionsMethod_SESSIONS_METHOD_REVOKE,
                          cpstore_v1_RevokeSessionRequest_fields, &req,
                          cpstore_v1_RevokeSessionResponse_fields, &resp,
                          &reply),
                 CPC_OK, "%s", cpc_last_error(c));
    *status = reply.status;
    return resp.revoked;
}


static int revoke_one(cpc_t *c, const char *token, const char *id) {
    int status;
    int revoked = revoke_raw(c, token, id, &status);

    cr_assert_eq(status, 0, "revoke failed with status %d", status);
    return revoked;
}


static uint32_t revoke_all(cpc_t *c, const char *user) {
    cpstore_v1_RevokeAllSessionsRequest req =
        cpstore_v1_RevokeAllSessionsRequest_init_zero;
    cpstore_v1_RevokeAllSessionsResponse resp = {0};
    cpc_reply_t reply;

    snprintf(req.user_id, sizeof(req.user_id), "%s", user);
    cr_assert_eq(
        cpc_call(c, cpstore_v1_SessionsMethod_SESSIONS_METHOD_REVOKE_ALL,
                 cpstore_v1_RevokeAllSessionsRequest_fields, &req,
                 cpstore_v1_RevokeAllSessionsResponse_fields, &resp, &reply),
        CPC_OK, "%s", cpc_last_error(c));
    cr_assert_eq(reply.status, 0, "revoke-all failed: %s", reply.error.message);
    return resp.revoked;
}


/* What List answered: its sessions and the raw payload they came in. */
typedef struct listed {
    cpstore_v1_Session sessions[64];
    size_t n;
    uint8_t payload[1 << 20];
    size_t payload_len;
} listed_t;


static bool
decode_session(pb_istream_t *stream, const pb_field_t *field, void **arg) {
    listed_t *l = *arg;

    (void)field;
    if (l->n >= sizeof(l->sessions) / sizeof(l->sessions[0])) {
        return false;
    }
    memset(&l->sessions[l->n], 0, sizeof(l->sessions[0]));
    if (!pb_decode(stream, cpstore_v1_Session_fields, &l->sessions[l->n])) {
        return false;
    }
    l->n++;
    return true;
}


static listed_t *list(cpc_t *c, const char *user) {
    static listed_t l;
    cpstore_v1_ListSessionsRequest req =
        cpstore_v1_ListSessionsRequest_init_zero;
    cpstore_v1_ListSessionsResponse resp = {0};
    cpc_reply_t reply;

    memset(&l, 0, sizeof(l));
    snprintf(req.user_id, sizeof(req.user_id), "%s", user);
    resp.sessions.funcs.decode = decode_session;
    resp.sessions.arg = &l;
    cr_assert_eq(cpc_call(c, cpstore_v1_SessionsMethod_SESSIONS_METHOD_LIST,
                          cpstore_v1_ListSessionsRequest_fields, &req,
                          cpstore_v1_ListSessionsResponse_fields, &resp,
                          &reply),
                 CPC_OK, "%s", cpc_last_error(c));
    cr_assert_eq(reply.status, 0, "list failed: %s", reply.error.message);
    cr_assert(reply.payload_len <= sizeof(l.payload));
    memcpy(l.payload, reply.payload, reply.payload_len);
    l.payload_len = reply.payload_len;
    return &l;
}


/* Send a protobuf-c message as the payload of method; the status. */
static int call_raw(cpc_t *c, uint16_t method, const ProtobufCMessage *msg) {
    uint8_t buf[4096];
    size_t len = protobuf_c_message_get_packed_size(msg);
    cpc_reply_t reply;
    uint32_t id;

    cr_assert(len <= sizeof(buf));
    protobuf_c_message_pack(msg, buf);
    cr_assert_eq(cpc_send_raw(c, method, buf, len, &id), CPC_OK);
    cr_assert_eq(cpc_recv(c, &reply), CPC_OK, "%s", cpc_last_error(c));
    cr_assert_eq(reply.request_id, id);
    return reply.status;
}


static void sleep_until(int64_t wall_ms) {
    int64_t now = clock_now_ms();

    if (now < wall_ms) {
        usleep((useconds_t)(wall_ms - now) * 1000);
    }
}


/* True when the len bytes at hay hold needle. */
static int holds(const void *hay, size_t len, const char *needle) {
    size_t n = strlen(needle);
    const uint8_t *h = hay;

    for (size_t i = 0; n > 0 && i + n <= len; i++) {
        if (memcmp(h + i, needle, n) == 0) {
            return 1;
        }
    }
    return 0;
}


/* Fail when text holds the token or any 8 characters of its random part. */
static void
assert_holds_no_piece_of(const void *text, size_t len, const char *token) {
    const char *random = strchr(token, '_') + 1;
    size_t rlen = strlen(random);

    cr_assert_not(holds(text, len, token), "the token itself is there");
    for (size_t i = 0; i + 8 <= rlen; i++) {
        char piece[9];

        memcpy(piece, random + i, 8);
        piece[8] = '\0';
        cr_assert_not(holds(text, len, piece), "\"%s\" of the token is there",
                      piece);
    }
}


/* ---- create ------------------------------------------------------------ */

SS_TEST(create_returns_a_long_random_token_and_a_public_id) {
    cpc_t *c = h_connect(&server);
    session_opts_t o = {
        .user = "user-1",
        .kind = "admin",
        .idle_ms = 10 * MINUTE_MS,
        .absolute_ms = HOUR_MS,
        .meta = {{"ip", "10.0.0.7"}, {"user_agent", "curl/8.0"}},
    };
    created_t a = create_on(c, &o);
    created_t b = create_on(c, &o);

    cr_assert_eq(strncmp(a.token, "cps_", 4), 0, "token %s", a.token);
    cr_assert_geq(strlen(a.token) - 4, 43, "fewer than 256 random bits");
    cr_assert_eq(strncmp(a.session_id, "ses_", 4), 0);
    cr_assert_str_eq(a.session.session_id, a.session_id);
    cr_assert_str_neq(a.token, b.token);
    cr_assert_str_neq(a.session_id, b.session_id);

    cr_assert_str_eq(a.session.user_id, "user-1");
    cr_assert_str_eq(a.session.kind, "admin");
    cr_assert_eq(a.session.idle_expires_at_ms,
                 a.session.created_at_ms + 10 * MINUTE_MS);
    cr_assert_eq(a.session.absolute_expires_at_ms,
                 a.session.created_at_ms + HOUR_MS);
    cr_assert_eq(a.session.revoked_at_ms, 0);
    cr_assert_eq(a.session.metadata_count, 2);
    cr_assert_str_eq(a.session.metadata[1].key, "user_agent");
    cr_assert_str_eq(a.session.metadata[1].value, "curl/8.0");
    cpc_close(c);
}


SS_TEST(defaults_come_from_the_configuration_file) {
    cpc_t *c = h_connect(&server);
    created_t s = create_for(c, "user-1", 0, 0);

    cr_assert_str_eq(s.session.kind, "user");
    cr_assert_eq(s.session.idle_expires_at_ms,
                 s.session.created_at_ms + 45 * MINUTE_MS);
    cr_assert_eq(s.session.absolute_expires_at_ms,
                 s.session.created_at_ms + 6 * HOUR_MS);
    cpc_close(c);
}


SS_TEST(idle_expiry_never_starts_past_the_absolute_one) {
    cpc_t *c = h_connect(&server);
    created_t s = create_for(c, "user-1", HOUR_MS, 5 * MINUTE_MS);

    cr_assert_eq(s.session.idle_expires_at_ms,
                 s.session.absolute_expires_at_ms);
    cpc_close(c);
}


SS_TEST(bad_requests_are_invalid_argument) {
    cpc_t *c = h_connect(&server);
    Cpstore__V1__CreateSessionRequest create =
        CPSTORE__V1__CREATE_SESSION_REQUEST__INIT;
    Cpstore__V1__ValidateSessionRequest validate_req =
        CPSTORE__V1__VALIDATE_SESSION_REQUEST__INIT;
    Cpstore__V1__MetadataEntry m1 = CPSTORE__V1__METADATA_ENTRY__INIT;
    Cpstore__V1__MetadataEntry m2 = CPSTORE__V1__METADATA_ENTRY__INIT;
    Cpstore__V1__MetadataEntry *meta[] = {&m1, &m2};
    char long_text[400];
    int status;

    memset(long_text, 'x', sizeof(long_text) - 1);
    long_text[sizeof(long_text) - 1] = '\0';

    /* No user. */
    cr_assert_eq(call_raw(c, cpstore_v1_SessionsMethod_SESSIONS_METHOD_CREATE,
                          &create.base),
                 ST_INVALID_ARGUMENT);

    /* A user beyond what a client can read back. */
    create.user_id = long_text;
    cr_assert_eq(call_raw(c, cpstore_v1_SessionsMethod_SESSIONS_METHOD_CREATE,
                          &create.base),
                 ST_INVALID_ARGUMENT);

    /* A kind with a space, a lifetime beyond 366 days. */
    create.user_id = (char *)"user-1";
    create.kind = (char *)"a b";
    cr_assert_eq(call_raw(c, cpstore_v1_SessionsMethod_SESSIONS_METHOD_CREATE,
                          &create.base),
                 ST_INVALID_ARGUMENT);
    create.kind = (char *)"user";
    create.absolute_lifetime_ms = 367ull * 24 * HOUR_MS;
    cr_assert_eq(call_raw(c, cpstore_v1_SessionsMethod_SESSIONS_METHOD_CREATE,
                          &create.base),
                 ST_INVALID_ARGUMENT);

    /* The same metadata key twice. */
    create.absolute_lifetime_ms = 0;
    m1.key = m2.key = (char *)"ip";
    m1.value = m2.value = (char *)"10.0.0.1";
    create.metadata = meta;
    create.n_metadata = 2;
    cr_assert_eq(call_raw(c, cpstore_v1_SessionsMethod_SESSIONS_METHOD_CREATE,
                          &create.base),
                 ST_INVALID_ARGUMENT);

    /* A token longer than any the client can send. */
    validate_req.token = long_text;
    cr_assert_eq(call_raw(c, cpstore_v1_SessionsMethod_SESSIONS_METHOD_VALIDATE,
                          &validate_req.base),
                 ST_INVALID_ARGUMENT);

    /* Revoke names exactly one session: neither or both is wrong. */
    revoke_raw(c, NULL, NULL, &status);
    cr_assert_eq(status, ST_INVALID_ARGUMENT);
    revoke_raw(c, "cps_x", "ses_x", &status);
    cr_assert_eq(status, ST_INVALID_ARGUMENT);
    cpc_close(c);
}


/* ---- validate ---------------------------------------------------------- */

SS_TEST(validate_answers_valid_with_user_and_metadata) {
    cpc_t *c = h_connect(&server);
    session_opts_t o = {.user = "alice",
                        .idle_ms = HOUR_MS,
                        .absolute_ms = 2 * HOUR_MS,
                        .meta = {{"ip", "192.0.2.1"}}};
    created_t s = create_on(c, &o);
    validated_t v = validate(c, s.token);

    cr_assert_eq(v.code, cpstore_v1_SessionCode_SESSION_VALID);
    cr_assert_str_eq(v.user_id, "alice");
    cr_assert(v.has_session);
    cr_assert_str_eq(v.session.session_id, s.session_id);
    cr_assert_eq(v.session.metadata_count, 1);
    cr_assert_str_eq(v.session.metadata[0].value, "192.0.2.1");
    cpc_close(c);
}


SS_TEST(unknown_or_altered_token_is_not_found) {
    cpc_t *c = h_connect(&server);
    created_t s = create_for(c, "user-1", HOUR_MS, HOUR_MS);
    size_t n = strlen(s.token);
    validated_t v;

    s.token[n - 1] = s.token[n - 1] == 'a' ? 'b' : 'a';
    v = validate(c, s.token);
    cr_assert_eq(v.code, cpstore_v1_SessionCode_SESSION_NOT_FOUND);
    cr_assert_eq(v.user_id[0], '\0');
    cr_assert_not(v.has_session);
    cr_assert_eq(code_of(c, ""), cpstore_v1_SessionCode_SESSION_NOT_FOUND);
    cpc_close(c);
}


/* Idle 1.5s, absolute 3.5s, used every 400ms: alive well past its first
 * idle expiry, and expired once the absolute lifetime is over. */
SS_TEST(idle_expiry_slides_but_never_past_the_absolute_lifetime) {
    cpc_t *c = h_connect(&server);
    created_t s = create_for(c, "user-1", 1500, 3500);
    int64_t first_idle = s.session.idle_expires_at_ms;
    int64_t absolute = s.session.absolute_expires_at_ms;
    int valid_after_first_idle = 0;
    validated_t v;

    while (clock_now_ms() < absolute - 300) {
        v = validate(c, s.token);
        cr_assert_eq(v.code, cpstore_v1_SessionCode_SESSION_VALID,
                     "expired %lld ms before its absolute expiry",
                     (long long)(absolute - clock_now_ms()));
        cr_assert_leq(v.session.idle_expires_at_ms, absolute);
        cr_assert_eq(v.session.absolute_expires_at_ms, absolute);
        if (clock_now_ms() > first_idle + 100) {
            valid_after_first_idle = 1;
        }
        usleep(400 * 1000);
    }
    cr_assert(valid_after_first_idle, "never used past the first idle expiry");

    sleep_until(absolute);
    cr_assert_eq(code_of(c, s.token), cpstore_v1_SessionCode_SESSION_EXPIRED);
    usleep(200 * 1000);
    cr_assert_eq(code_of(c, s.token), cpstore_v1_SessionCode_SESSION_EXPIRED);
    cpc_close(c);
}


SS_TEST(an_unused_session_expires_at_its_idle_timeout) {
    cpc_t *c = h_connect(&server);
    created_t s = create_for(c, "user-1", 1000, HOUR_MS);

    cr_assert_eq(code_of(c, s.token), cpstore_v1_SessionCode_SESSION_VALID);
    sleep_until(s.session.created_at_ms + 1000 + 1000);
    cr_assert_eq(code_of(c, s.token), cpstore_v1_SessionCode_SESSION_EXPIRED);
    /* An expired session is not brought back, nor can it be revoked. */
    cr_assert_eq(code_of(c, s.token), cpstore_v1_SessionCode_SESSION_EXPIRED);
    cr_assert_not(revoke_one(c, s.token, NULL));
    cpc_close(c);
}


/* Read a session's stored idle expiry straight from MongoDB. */
static int64_t stored_idle_expiry(const char *session_id) {
    mongoc_client_t *client = mongo_client();
    mongoc_collection_t *coll =
        mongoc_client_get_collection(client, db_name, "sessions");
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(session_id));
    mongoc_cursor_t *cursor =
        mongoc_collection_find_with_opts(coll, filter, NULL, NULL);
    const bson_t *doc;
    bson_iter_t it;
    int64_t value;

    cr_assert(mongoc_cursor_next(cursor, &doc), "no document for %s",
              session_id);
    cr_assert(bson_iter_init_find(&it, doc, "idle_expires_at"));
    cr_assert(BSON_ITER_HOLDS_DATE_TIME(&it));
    value = bson_iter_date_time(&it);
    mongoc_cursor_destroy(cursor);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    return value;
}


/*
 * Touch interval 3s, idle timeout 1h. Validates within one interval leave
 * the stored expiry as it is; the first validate after the interval moves
 * it once, and the validates right after that do not move it again. On
 * MongoDB the stored document is read as well as the answers.
 */
SS_TEST_SLOW_TOUCH(the_slide_is_written_at_most_once_per_touch_interval) {
    cpc_t *c = h_connect(&server);
    created_t s = create_for(c, "user-1", HOUR_MS, 2 * HOUR_MS);
    int64_t stored = s.session.idle_expires_at_ms;
    int64_t moved;
    validated_t v;

    for (int i = 0; i < 5; i++) {
        v = validate(c, s.token);
        cr_assert_eq(v.code, cpstore_v1_SessionCode_SESSION_VALID);
        cr_assert_eq(v.session.idle_expires_at_ms, stored,
                     "a slide was written within the touch interval");
    }
    if (on_mongo) {
        cr_assert_eq(stored_idle_expiry(s.session_id), stored);
    }

    sleep_until(s.session.created_at_ms + 3100);
    v = validate(c, s.token);
    moved = v.session.idle_expires_at_ms;
    cr_assert_gt(moved, stored, "no slide after the touch interval");
    cr_assert_geq(v.session.last_seen_at_ms, s.session.created_at_ms + 3100);
    if (on_mongo) {
        cr_assert_eq(stored_idle_expiry(s.session_id), moved);
    }
    for (int i = 0; i < 5; i++) {
        v = validate(c, s.token);
        cr_assert_eq(v.session.idle_expires_at_ms, moved,
                     "a second slide within one interval");
    }
    if (on_mongo) {
        cr_assert_eq(stored_idle_expiry(s.session_id), moved);
    }
    cpc_close(c);
}


/* ---- revoke ------------------------------------------------------------ */

SS_TEST(a_session_revoked_by_token_is_invalid_at_once) {
    cpc_t *c = h_connect(&server);
    created_t s = create_for(c, "user-1", HOUR_MS, HOUR_MS);
    validated_t v;

    cr_assert_eq(code_of(c, s.token), cpstore_v1_SessionCode_SESSION_VALID);
    cr_assert(revoke_one(c, s.token, NULL));
    v = validate(c, s.token);
    cr_assert_eq(v.code, cpstore_v1_SessionCode_SESSION_REVOKED);
    cr_assert_geq(v.session.revoked_at_ms, s.session.created_at_ms);
    cr_assert_not(revoke_one(c, s.token, NULL), "revoked twice");
    cpc_close(c);
}


SS_TEST(a_session_revoked_by_id_is_invalid_at_once) {
    cpc_t *c = h_connect(&server);
    created_t s = create_for(c, "user-1", HOUR_MS, HOUR_MS);
    created_t other = create_for(c, "user-1", HOUR_MS, HOUR_MS);

    cr_assert(revoke_one(c, NULL, s.session_id));
    cr_assert_eq(code_of(c, s.token), cpstore_v1_SessionCode_SESSION_REVOKED);
    cr_assert_not(revoke_one(c, NULL, s.session_id));
    cr_assert_eq(code_of(c, other.token), cpstore_v1_SessionCode_SESSION_VALID);
    cr_assert_not(revoke_one(c, NULL, "ses_00000000000000000000000000000000"));
    cpc_close(c);
}


SS_TEST(revoke_all_ends_every_session_of_that_user_and_no_other) {
    cpc_t *c = h_connect(&server);
    created_t mine[3];
    created_t theirs[2];

    for (int i = 0; i < 3; i++) {
        mine[i] = create_for(c, "user-a", HOUR_MS, HOUR_MS);
    }
    for (int i = 0; i < 2; i++) {
        theirs[i] = create_for(c, "user-b", HOUR_MS, HOUR_MS);
    }
    /* One of user-a's was revoked before: it is not counted again. */
    cr_assert(revoke_one(c, NULL, mine[2].session_id));

    cr_assert_eq(revoke_all(c, "user-a"), 2);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(code_of(c, mine[i].token),
                     cpstore_v1_SessionCode_SESSION_REVOKED);
    }
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(code_of(c, theirs[i].token),
                     cpstore_v1_SessionCode_SESSION_VALID);
    }
    cr_assert_eq(revoke_all(c, "user-a"), 0);
    cr_assert_eq(list(c, "user-a")->n, 0);
    cr_assert_eq(list(c, "user-b")->n, 2);
    cpc_close(c);
}


/* ---- list -------------------------------------------------------------- */

SS_TEST(list_returns_the_users_live_sessions_newest_first_without_tokens) {
    cpc_t *c = h_connect(&server);
    created_t live[3];
    created_t revoked;
    created_t expiring;
    listed_t *l;

    expiring = create_for(c, "lister", 300, HOUR_MS);
    revoked = create_for(c, "lister", HOUR_MS, HOUR_MS);
    for (int i = 0; i < 3; i++) {
        usleep(5 * 1000); /* distinct creation times, so a defined order */
        live[i] = create_for(c, "lister", HOUR_MS, HOUR_MS);
    }
    create_for(c, "someone-else", HOUR_MS, HOUR_MS);
    cr_assert(revoke_one(c, revoked.token, NULL));
    sleep_until(expiring.session.idle_expires_at_ms + 50);

    l = list(c, "lister");
    cr_assert_eq(l->n, 3, "listed %zu sessions", l->n);
    for (int i = 0; i < 3; i++) {
        cr_assert_str_eq(l->sessions[i].session_id, live[2 - i].session_id,
                         "position %d", i);
        cr_assert_str_eq(l->sessions[i].user_id, "lister");
        cr_assert_eq(l->sessions[i].revoked_at_ms, 0);
    }
    for (int i = 0; i < 3; i++) {
        assert_holds_no_piece_of(l->payload, l->payload_len, live[i].token);
    }
    cr_assert_eq(list(c, "nobody")->n, 0);
    cpc_close(c);
}


SS_TEST(list_returns_at_most_fifty_sessions) {
    cpc_t *c = h_connect(&server);
    int64_t newest = 0;
    listed_t *l;

    for (int i = 0; i < 55; i++) {
        created_t s = create_for(c, "busy", HOUR_MS, HOUR_MS);

        newest = s.session.created_at_ms;
    }
    l = list(c, "busy");
    cr_assert_eq(l->n, 50);
    cr_assert_eq(l->sessions[0].created_at_ms, newest);
    for (size_t i = 1; i < l->n; i++) {
        cr_assert_geq(l->sessions[i - 1].created_at_ms,
                      l->sessions[i].created_at_ms, "not newest first");
        cr_assert_str_neq(l->sessions[i - 1].session_id,
                          l->sessions[i].session_id);
    }
    cpc_close(c);
}


/* ---- MongoDB only ------------------------------------------------------ */

/* Every document of a collection as relaxed extended JSON, concatenated. */
static char *collection_text(mongoc_client_t *client, const char *name) {
    mongoc_collection_t *coll =
        mongoc_client_get_collection(client, db_name, name);
    bson_t filter = BSON_INITIALIZER;
    mongoc_cursor_t *cursor =
        mongoc_collection_find_with_opts(coll, &filter, NULL, NULL);
    const bson_t *doc;
    size_t cap = 1 << 16;
    size_t len = 0;
    char *text = calloc(1, cap);
    int docs = 0;

    cr_assert_not_null(text);
    while (mongoc_cursor_next(cursor, &doc)) {
        char *json = bson_as_relaxed_extended_json(doc, NULL);
        size_t n = strlen(json);

        cr_assert(len + n + 2 < cap, "collection %s is too large", name);
        memcpy(text + len, json, n);
        len += n;
        text[len++] = '\n';
        bson_free(json);
        docs++;
    }
    cr_assert_not(mongoc_cursor_error(cursor, NULL));
    cr_assert_gt(docs, 0, "collection %s is empty", name);
    mongoc_cursor_destroy(cursor);
    bson_destroy(&filter);
    mongoc_collection_destroy(coll);
    return text;
}


Test(ss_mongo,
     stored_documents_hold_no_piece_of_any_token,
     .init = start_mongo_fast,
     .fini = stop_server,
     .timeout = 60) {
    cpc_t *c = h_connect(&server);
    session_opts_t o = {.user = "user-1",
                        .idle_ms = HOUR_MS,
                        .absolute_ms = HOUR_MS,
                        .meta = {{"ip", "10.1.2.3"}}};
    created_t s[3];
    mongoc_client_t *client;
    char *sessions;
    char *revocations;

    for (int i = 0; i < 3; i++) {
        s[i] = create_on(c, &o);
    }
    cr_assert(revoke_one(c, s[0].token, NULL));
    cr_assert_eq(code_of(c, s[1].token), cpstore_v1_SessionCode_SESSION_VALID);

    client = mongo_client();
    sessions = collection_text(client, "sessions");
    revocations = collection_text(client, "session_revocations");
    for (int i = 0; i < 3; i++) {
        assert_holds_no_piece_of(sessions, strlen(sessions), s[i].token);
        assert_holds_no_piece_of(revocations, strlen(revocations), s[i].token);
        cr_assert(holds(sessions, strlen(sessions), s[i].session_id));
    }
    cr_assert(holds(sessions, strlen(sessions), "10.1.2.3"));
    free(sessions);
    free(revocations);
    mongoc_client_destroy(client);
    cpc_close(c);
}


Test(ss_mongo,
     a_revoke_through_one_instance_is_seen_by_another_at_once,
     .init = start_mongo_fast,
     .fini = stop_server,
     .timeout = 60) {
    const char *args[] = {mongo_arg, db_arg, config_arg, NULL};
    const char *env[] = {"CPSTORE_SECRET=" SECRET, NULL};
    h_proc_t other;
    cpc_t *a = h_connect(&server);
    cpc_t *b;
    created_t one;
    created_t two[2];

    h_cpstored_start(&other, args, env);
    b = h_connect(&other);

    one = create_for(a, "shared-user", HOUR_MS, HOUR_MS);
    cr_assert_eq(code_of(a, one.token), cpstore_v1_SessionCode_SESSION_VALID);
    cr_assert_eq(code_of(b, one.token), cpstore_v1_SessionCode_SESSION_VALID);
    cr_assert(revoke_one(b, one.token, NULL));
    cr_assert_eq(code_of(a, one.token), cpstore_v1_SessionCode_SESSION_REVOKED);

    two[0] = create_for(a, "shared-user", HOUR_MS, HOUR_MS);
    two[1] = create_for(b, "shared-user", HOUR_MS, HOUR_MS);
    cr_assert_eq(code_of(a, two[0].token),
                 cpstore_v1_SessionCode_SESSION_VALID);
    cr_assert_eq(revoke_all(b, "shared-user"), 2);
    cr_assert_eq(code_of(a, two[0].token),
                 cpstore_v1_SessionCode_SESSION_REVOKED);
    cr_assert_eq(code_of(a, two[1].token),
                 cpstore_v1_SessionCode_SESSION_REVOKED);

    cpc_close(b);
    cpc_close(a);
    h_proc_stop(&other);
}


/*
 * A session validated over and over through one instance, which writes a
 * slide every 100ms (the touch interval), while another instance revokes
 * it: the revocation is never undone by a slide that read the session just
 * before it. (Were revoked_at a field of the session document, FerretDB's
 * read-then-write update would let exactly that happen.)
 */
typedef struct hammer {
    const char *addr;
    const char *token;
    volatile int stop;
} hammer_t;


/* No Criterion assertions off the test's own thread: failures here show
 * up as a missing answer in the main thread's final check. */
static void *hammer_validate(void *arg) {
    hammer_t *h = arg;
    cpstore_v1_ValidateSessionRequest req =
        cpstore_v1_ValidateSessionRequest_init_zero;
    validated_t resp;
    cpc_reply_t reply;
    char err[128];
    cpc_t *c = cpc_connect(h->addr, 5000, err, sizeof(err));

    if (c == NULL) {
        return NULL;
    }
    snprintf(req.token, sizeof(req.token), "%s", h->token);
    while (!h->stop &&
           cpc_call(c, cpstore_v1_SessionsMethod_SESSIONS_METHOD_VALIDATE,
                    cpstore_v1_ValidateSessionRequest_fields, &req,
                    cpstore_v1_ValidateSessionResponse_fields, &resp,
                    &reply) == CPC_OK) {
    }
    cpc_close(c);
    return NULL;
}


Test(ss_mongo,
     slides_racing_with_a_revoke_never_undo_it,
     .init = start_mongo_fast,
     .fini = stop_server,
     .timeout = 90) {
    const char *args[] = {mongo_arg, db_arg, config_arg, NULL};
    const char *env[] = {"CPSTORE_SECRET=" SECRET, NULL};
    h_proc_t other;
    pthread_t threads[3];
    hammer_t h = {.addr = server.addr};
    cpc_t *a = h_connect(&server);
    cpc_t *b;

    h_cpstored_start(&other, args, env);
    b = h_connect(&other);
    for (int round = 0; round < 5; round++) {
        created_t s = create_for(b, "racer", 1000, HOUR_MS);

        cr_assert_eq(code_of(a, s.token), cpstore_v1_SessionCode_SESSION_VALID);
        h.token = s.token;
        h.stop = 0;
        for (int i = 0; i < 3; i++) {
            cr_assert_eq(pthread_create(&threads[i], NULL, hammer_validate, &h),
                         0);
        }
        usleep(300 * 1000);
        cr_assert(revoke_one(b, s.token, NULL), "round %d: not live", round);
        usleep(300 * 1000);
        h.stop = 1;
        for (int i = 0; i < 3; i++) {
            pthread_join(threads[i], NULL);
        }
        cr_assert_eq(code_of(b, s.token),
                     cpstore_v1_SessionCode_SESSION_REVOKED,
                     "round %d: the revocation was undone", round);
    }
    cpc_close(b);
    cpc_close(a);
    h_proc_stop(&other);
}
