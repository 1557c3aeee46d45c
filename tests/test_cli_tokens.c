/*
 * `cpstore tokens issue | consume | revoke` run as a user runs them, as a
 * child process judged by its exit code and output, against a cpstored on
 * the memory backends. Every --json output is parsed with libbson's JSON
 * reader before it is checked.
 */
#include <criterion/criterion.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <bson/bson.h>

#include "harness.h"

/* RFC 7636 appendix B. */
#define VERIFIER  "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
#define CHALLENGE "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"

typedef struct run {
    int code;
    char *out; /* stdout and stderr together */
} run_t;

static h_proc_t server;


static void start_server(void) {
    const char *env[] = {
        "CPSTORE_SECRET=test-secret-0123456789abcdef0123456789", NULL};

    h_cpstored_start(&server, NULL, env);
}


static void stop_server(void) {
    h_proc_stop(&server);
}


/* Run `cpstore --addr <server> ARGS...` (NULL-terminated). */
static run_t cli(const char *first, ...) {
    const char *argv[40];
    char addr[80];
    size_t n = 0;
    va_list ap;
    run_t r;
    int status;

    snprintf(addr, sizeof(addr), "--addr=%s", server.addr);
    argv[n++] = CPSTORE_CLI_PATH;
    argv[n++] = addr;
    va_start(ap, first);
    for (const char *a = first; a != NULL; a = va_arg(ap, const char *)) {
        cr_assert(n < 39);
        argv[n++] = a;
    }
    va_end(ap);
    argv[n] = NULL;

    status = h_run(argv, NULL, 10000, &r.out);
    cr_assert(WIFEXITED(status), "cpstore did not exit: status %d", status);
    r.code = WEXITSTATUS(status);
    return r;
}


static void expect_exit(const run_t *r, int code) {
    cr_assert_eq(r->code, code, "exit %d, expected %d; output: %s", r->code,
                 code, r->out);
}


/* The output, which must be one line holding one JSON object. */
static bson_t *json_of(const run_t *r) {
    size_t len = strlen(r->out);
    bson_error_t error;
    bson_t *doc;

    cr_assert(len > 0 && r->out[len - 1] == '\n', "no line: '%s'", r->out);
    cr_assert(strchr(r->out, '\n') == r->out + len - 1,
              "more than one line: '%s'", r->out);
    doc = bson_new_from_json((const uint8_t *)r->out, (ssize_t)len, &error);
    cr_assert_not_null(doc, "not JSON (%s): %s", error.message, r->out);
    return doc;
}


static const char *json_str(const bson_t *doc, const char *key) {
    bson_iter_t it;

    cr_assert(bson_iter_init_find(&it, doc, key), "no '%s'", key);
    cr_assert(BSON_ITER_HOLDS_UTF8(&it), "'%s' is not a string", key);
    return bson_iter_utf8(&it, NULL);
}


static int64_t json_int(const bson_t *doc, const char *key) {
    bson_iter_t it;

    cr_assert(bson_iter_init_find(&it, doc, key), "no '%s'", key);
    cr_assert(BSON_ITER_HOLDS_INT32(&it) || BSON_ITER_HOLDS_INT64(&it),
              "'%s' is not an integer", key);
    return bson_iter_as_int64(&it);
}


/* Issue a token with --json and return it (caller frees). */
static char *issue_token(const char *first, ...) {
    const char *extra[8] = {0};
    size_t n = 0;
    va_list ap;
    run_t r;
    bson_t *doc;
    char *token;

    va_start(ap, first);
    for (const char *a = first; a != NULL; a = va_arg(ap, const char *)) {
        cr_assert(n < 8);
        extra[n++] = a;
    }
    va_end(ap);
    r = cli("--json", "tokens", "issue", "--kind", "oauth_code", "--subject",
            "user-7", "--meta", "scope=openid email", "--meta", "nonce=xyz",
            extra[0], extra[1], extra[2], extra[3], extra[4], extra[5],
            extra[6], extra[7], NULL);
    expect_exit(&r, 0);
    doc = json_of(&r);
    token = strdup(json_str(doc, "token"));
    cr_assert_eq(strncmp(token, "oauth_code_", 11), 0, "token %s", token);
    cr_assert_eq(strncmp(json_str(doc, "token_id"), "tok_", 4), 0);
    cr_assert_gt(json_int(doc, "expires_at_ms"), 0);
    bson_destroy(doc);
    free(r.out);
    return token;
}


Test(cli_tokens,
     consume_prints_json_once_then_reports_reuse,
     .init = start_server,
     .fini = stop_server,
     .timeout = 60) {
    char *token = issue_token(NULL);
    run_t r;
    bson_t *doc;
    bson_iter_t it;
    bson_iter_t meta;
    int64_t first_at;

    r = cli("--json", "tokens", "consume", "--kind", "oauth_code", "--token",
            token, NULL);
    expect_exit(&r, 0);
    doc = json_of(&r);
    cr_assert_str_eq(json_str(doc, "code"), "CONSUMED");
    cr_assert_str_eq(json_str(doc, "subject"), "user-7");
    cr_assert(bson_iter_init_find(&it, doc, "metadata"));
    cr_assert(BSON_ITER_HOLDS_DOCUMENT(&it), "metadata is not an object");
    cr_assert(bson_iter_recurse(&it, &meta));
    cr_assert(bson_iter_find(&meta, "scope"));
    cr_assert_str_eq(bson_iter_utf8(&meta, NULL), "openid email");
    cr_assert(bson_iter_find(&meta, "nonce"));
    cr_assert_str_eq(bson_iter_utf8(&meta, NULL), "xyz");
    first_at = json_int(doc, "consumed_at_ms");
    cr_assert_gt(first_at, 0);
    bson_destroy(doc);
    free(r.out);

    r = cli("--json", "tokens", "consume", "--kind", "oauth_code", "--token",
            token, NULL);
    expect_exit(&r, 1);
    doc = json_of(&r);
    cr_assert_str_eq(json_str(doc, "code"), "ALREADY_CONSUMED");
    cr_assert_eq(json_int(doc, "consumed_at_ms"), first_at);
    bson_destroy(doc);
    free(r.out);
    free(token);
}


Test(cli_tokens,
     binding_mismatch_exits_1_and_keeps_the_token,
     .init = start_server,
     .fini = stop_server,
     .timeout = 60) {
    char *token = issue_token("--client", "client-1", "--redirect-uri",
                              "https://app.example/cb", "--pkce-challenge",
                              CHALLENGE, NULL);
    run_t r;
    bson_t *doc;

    r = cli("--json", "tokens", "consume", "--kind", "oauth_code", "--token",
            token, "--client", "client-2", "--redirect-uri",
            "https://app.example/cb", "--pkce-verifier", VERIFIER, NULL);
    expect_exit(&r, 1);
    doc = json_of(&r);
    cr_assert_str_eq(json_str(doc, "code"), "BINDING_MISMATCH");
    cr_assert_str_eq(json_str(doc, "subject"), "");
    bson_destroy(doc);
    free(r.out);

    /* Readable output names the code too. */
    r = cli("tokens", "consume", "--kind", "oauth_code", "--token", token,
            "--client", "client-1", "--redirect-uri", "https://app.example/cb",
            "--pkce-verifier", VERIFIER, NULL);
    expect_exit(&r, 0);
    cr_assert_not_null(strstr(r.out, "CONSUMED"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "user-7"), "%s", r.out);
    free(r.out);
    free(token);
}


Test(cli_tokens,
     revoke_exits_0_then_consume_says_revoked,
     .init = start_server,
     .fini = stop_server,
     .timeout = 60) {
    char *token = issue_token(NULL);
    run_t r;
    bson_t *doc;

    r = cli("--json", "tokens", "revoke", "--kind", "oauth_code", "--token",
            token, NULL);
    expect_exit(&r, 0);
    cr_assert_str_eq(r.out, "{\"revoked\":true}\n");
    free(r.out);

    r = cli("--json", "tokens", "consume", "--kind", "oauth_code", "--token",
            token, NULL);
    expect_exit(&r, 1);
    doc = json_of(&r);
    cr_assert_str_eq(json_str(doc, "code"), "REVOKED");
    bson_destroy(doc);
    free(r.out);

    /* Nothing to revoke: a negative answer. */
    r = cli("tokens", "revoke", "--kind", "oauth_code", "--token",
            "oauth_code_nothing", NULL);
    expect_exit(&r, 1);
    free(r.out);
    free(token);
}


Test(cli_tokens,
     unknown_token_is_not_found_and_exits_1,
     .init = start_server,
     .fini = stop_server,
     .timeout = 60) {
    run_t r = cli("--json", "tokens", "consume", "--kind", "oauth_code",
                  "--token", "oauth_code_nothing", NULL);
    bson_t *doc;

    expect_exit(&r, 1);
    doc = json_of(&r);
    cr_assert_str_eq(json_str(doc, "code"), "NOT_FOUND");
    bson_destroy(doc);
    free(r.out);
}


/* An RPC error exits 3 and never repeats the token it was given. */
Test(cli_tokens,
     unknown_kind_exits_3_without_echoing_the_token,
     .init = start_server,
     .fini = stop_server,
     .timeout = 60) {
    char *token = issue_token(NULL);
    run_t r;

    r = cli("tokens", "consume", "--kind", "exchange_typo", "--token", token,
            NULL);
    expect_exit(&r, 3);
    cr_assert_not_null(strstr(r.out, "INVALID_ARGUMENT"), "%s", r.out);
    cr_assert_null(strstr(r.out, token + 11), "the token was echoed: %s",
                   r.out);
    free(r.out);

    r = cli("tokens", "issue", "--kind", "exchange_typo", "--subject", "u",
            NULL);
    expect_exit(&r, 3);
    free(r.out);
    free(token);
}


/* Usage errors need no server: the address is never contacted. */
Test(cli_tokens, usage_errors_exit_2) {
    static const char *const cases[][10] = {
        {"tokens", NULL},
        {"tokens", "mint", NULL},
        {"tokens", "issue", "--subject", "u", NULL},
        {"tokens", "issue", "--kind", "oauth_code", NULL},
        {"tokens", "issue", "--kind", "k", "--subject", "u", "--ttl", "0",
         NULL},
        {"tokens", "issue", "--kind", "k", "--subject", "u", "--meta",
         "novalue", NULL},
        {"tokens", "consume", "--kind", "oauth_code", NULL},
        {"tokens", "revoke", "--token", "t", NULL},
    };

    snprintf(server.addr, sizeof(server.addr), "127.0.0.1:%d", h_free_port());
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *const *c = cases[i];
        run_t r =
            cli(c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9]);

        cr_expect_eq(r.code, 2, "case %zu: exit %d: %s", i, r.code, r.out);
        free(r.out);
    }
}
