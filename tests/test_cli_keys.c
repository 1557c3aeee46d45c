/*
 * `cpstore keys get|list|revoke|rotate`, run as a user runs them: a child
 * process judged by its exit code, stdout and stderr, against a real
 * cpstored on the memory backends (usage errors need no server). Every
 * --json output is parsed with libbson's JSON reader before it is checked.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bson/bson.h>

#include "clock.h"
#include "harness.h"

#define OUT_MAX 65536

typedef struct run {
    int code;
    char out[OUT_MAX];
    char err[OUT_MAX];
} run_t;

static h_proc_t server;


/* ---- running the CLI ------------------------------------------------- */

static int temp_file(char *path, size_t len) {
    const char *tmp = getenv("TMPDIR");
    int fd;

    snprintf(path, len, "%s/cpstore-cli-keys-XXXXXX", tmp ? tmp : "/tmp");
    fd = mkstemp(path);
    cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
    return fd;
}


static void slurp(const char *path, char *buf, size_t len) {
    FILE *f = fopen(path, "r");
    size_t n = 0;

    if (f != NULL) {
        n = fread(buf, 1, len - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
    unlink(path);
}


/* Run cpstore with the arguments (NULL-terminated), stdin on /dev/null
 * and CPSTORE_ADDR unset. */
static void cli(run_t *r, const char *first, ...) {
    const char *args[64];
    char out_path[256], err_path[256];
    int out_fd, err_fd, status;
    size_t n = 0;
    va_list ap;
    pid_t pid;

    args[n++] = CPSTORE_CLI_PATH;
    va_start(ap, first);
    for (const char *a = first; a != NULL; a = va_arg(ap, const char *)) {
        cr_assert(n < 63);
        args[n++] = a;
    }
    va_end(ap);
    args[n] = NULL;

    out_fd = temp_file(out_path, sizeof(out_path));
    err_fd = temp_file(err_path, sizeof(err_path));
    pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        FILE *devnull = freopen("/dev/null", "r", stdin);

        (void)devnull;
        dup2(out_fd, STDOUT_FILENO);
        dup2(err_fd, STDERR_FILENO);
        unsetenv("CPSTORE_ADDR");
        execv(args[0], (char *const *)args);
        _exit(127);
    }
    cr_assert(waitpid(pid, &status, 0) == pid);
    close(out_fd);
    close(err_fd);
    slurp(out_path, r->out, sizeof(r->out));
    slurp(err_path, r->err, sizeof(r->err));
    cr_assert(WIFEXITED(status), "cpstore died: status %d", status);
    r->code = WEXITSTATUS(status);
}


static void expect_exit(const run_t *r, int code) {
    cr_assert_eq(r->code, code, "exit %d, expected %d\nstdout: %s\nstderr: %s",
                 r->code, code, r->out, r->err);
}


/* ---- reading --json output ------------------------------------------- */

/* Parse stdout, which must be exactly one line holding one JSON object. */
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


static bson_iter_t json_field(const bson_t *doc, const char *key) {
    bson_iter_t it;

    cr_assert(bson_iter_init_find(&it, doc, key), "no '%s' in the output", key);
    return it;
}


static int64_t json_int(const bson_t *doc, const char *key) {
    bson_iter_t it = json_field(doc, key);

    cr_assert(BSON_ITER_HOLDS_INT32(&it) || BSON_ITER_HOLDS_INT64(&it),
              "'%s' is not an integer", key);
    return bson_iter_as_int64(&it);
}


static const char *json_str(const bson_t *doc, const char *key) {
    bson_iter_t it = json_field(doc, key);

    cr_assert(BSON_ITER_HOLDS_UTF8(&it), "'%s' is not a string", key);
    return bson_iter_utf8(&it, NULL);
}


/* The strings of an array member, joined with spaces. */
static void
json_str_array(const bson_t *doc, const char *key, char *out, size_t len) {
    bson_iter_t it = json_field(doc, key);
    bson_iter_t child;

    out[0] = '\0';
    cr_assert(BSON_ITER_HOLDS_ARRAY(&it), "'%s' is not an array", key);
    cr_assert(bson_iter_recurse(&it, &child));
    while (bson_iter_next(&child)) {
        cr_assert(BSON_ITER_HOLDS_UTF8(&child));
        if (out[0] != '\0') {
            strncat(out, " ", len - strlen(out) - 1);
        }
        strncat(out, bson_iter_utf8(&child, NULL), len - strlen(out) - 1);
    }
}


/* The "keys" array of a list's output as documents: *n of them, at most
 * max. */
static void json_keys(const bson_t *doc, bson_t *keys, size_t max, size_t *n) {
    bson_iter_t it = json_field(doc, "keys");
    bson_iter_t child;

    *n = 0;
    cr_assert(BSON_ITER_HOLDS_ARRAY(&it), "'keys' is not an array");
    cr_assert(bson_iter_recurse(&it, &child));
    while (bson_iter_next(&child)) {
        const uint8_t *data;
        uint32_t len;

        cr_assert(*n < max, "more than %zu keys", max);
        cr_assert(BSON_ITER_HOLDS_DOCUMENT(&child));
        bson_iter_document(&child, &len, &data);
        cr_assert(bson_init_static(&keys[*n], data, len));
        (*n)++;
    }
}


/* ---- without a server ------------------------------------------------ */

Test(cli_keys, usage_errors_exit_2_before_any_connection) {
    char addr[64];
    run_t r;

    /* Were any of these to connect, they would exit 3, not 2. */
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", h_free_port());
#define A "--addr", addr
    const char *const cases[][10] = {
        {A, "keys", "get", NULL},
        {A, "keys", "get", "--id", "key_x", "extra", NULL},
        {A, "keys", "get", "--id", "key_x", "--grace", "1s", NULL},
        {A, "keys", "list", NULL},
        {A, "keys", "list", "--id", "key_x", NULL},
        {A, "keys", "revoke", NULL},
        {A, "keys", "rotate", NULL},
        {A, "keys", "rotate", "--id", "key_x", "--grace", "soon", NULL},
        {A, "keys", "rotate", "--id", NULL},
        {A, "keys", "revoke", "--id",
         "key_0123456789012345678901234567890123456789012345", NULL},
    };
#undef A

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *const *a = cases[i];

        cli(&r, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9]);
        cr_expect_eq(r.code, 2, "case %zu: exit %d, stderr: %s", i, r.code,
                     r.err);
        cr_expect_str_empty(r.out, "case %zu printed: %s", i, r.out);
        cr_expect(strncmp(r.err, "cpstore: ", 9) == 0, "case %zu: %s", i,
                  r.err);
    }
}


Test(cli_keys, help_of_keys_names_the_lifecycle_commands) {
    run_t r;

    cli(&r, "keys", "--help", NULL);
    expect_exit(&r, 0);
    cr_expect(strstr(r.out, "keys get --id") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, "keys list --user") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, "keys revoke --id") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, "keys rotate --id") != NULL, "%s", r.out);

    cli(&r, "--help", NULL);
    expect_exit(&r, 0);
    cr_expect(strstr(r.out, "keys rotate") != NULL, "%s", r.out);
}


/* ---- against cpstored ------------------------------------------------ */

static void start_server(void) {
    h_cpstored_start(&server, NULL, NULL);
}


static void stop_server(void) {
    h_proc_stop(&server);
}


TestSuite(cli_keys_server,
          .init = start_server,
          .fini = stop_server,
          .timeout = 60);


typedef struct made {
    char key[256];
    char key_id[64];
} made_t;


/* `keys create --json` for user with the extra arguments (NULL-terminated
 * list, may be NULL). */
static made_t create(const char *user, const char *const *more) {
    const char *a[16] = {NULL};
    made_t m;
    bson_t *doc;
    run_t r;

    for (size_t i = 0; more != NULL && more[i] != NULL; i++) {
        cr_assert(i < 15);
        a[i] = more[i];
    }
    cli(&r, "--addr", server.addr, "--json", "keys", "create", "--user", user,
        a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10],
        a[11], a[12], a[13], a[14], a[15]);
    expect_exit(&r, 0);
    doc = json_of(&r);
    snprintf(m.key, sizeof(m.key), "%s", json_str(doc, "key"));
    snprintf(m.key_id, sizeof(m.key_id), "%s", json_str(doc, "key_id"));
    bson_destroy(doc);
    return m;
}


/* `keys verify` of key: its exit code. */
static int verify_exit(const char *key) {
    run_t r;

    cli(&r, "--addr", server.addr, "keys", "verify", "--key", key, NULL);
    return r.code;
}


Test(cli_keys_server, get_prints_the_keys_fields_and_never_the_key) {
    static const char *const more[] = {
        "--name",       "ci deploy", "--scope", "memory:read", "--scope",
        "billing:*",    "--org",     "org_1",   "--project",   "proj_1",
        "--expires-in", "1h",        NULL};
    made_t k = create("user_7", more);
    char scopes[256];
    bson_t *doc;
    run_t r;

    cli(&r, "--addr", server.addr, "--json", "keys", "get", "--id", k.key_id,
        NULL);
    expect_exit(&r, 0);
    cr_assert_null(strstr(r.out, k.key), "the key was printed: %s", r.out);
    doc = json_of(&r);
    cr_expect_str_eq(json_str(doc, "key_id"), k.key_id);
    cr_expect_str_eq(json_str(doc, "user_id"), "user_7");
    cr_expect_str_eq(json_str(doc, "name"), "ci deploy");
    json_str_array(doc, "scopes", scopes, sizeof(scopes));
    cr_expect_str_eq(scopes, "memory:read billing:*");
    cr_expect_str_eq(json_str(doc, "org_id"), "org_1");
    cr_expect_str_eq(json_str(doc, "project_id"), "proj_1");
    cr_expect_gt(json_int(doc, "expires_at_ms"),
                 json_int(doc, "created_at_ms"));
    cr_expect_eq(json_int(doc, "revoked_at_ms"), 0);
    cr_expect_eq(json_int(doc, "last_used_at_ms"), 0);
    cr_expect_str_eq(json_str(doc, "rotated_from"), "");
    cr_expect_eq(strncmp(json_str(doc, "hint"), "cpk_dev_...", 11), 0);
    cr_expect_not(bson_has_field(doc, "key"));
    bson_destroy(doc);

    /* Readable: one field per line, and still no key. */
    cli(&r, "--addr", server.addr, "keys", "get", "--id", k.key_id, NULL);
    expect_exit(&r, 0);
    cr_assert_null(strstr(r.out, k.key));
    cr_expect(strstr(r.out, "state:") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, "active") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, "billing:*") != NULL, "%s", r.out);
}


Test(cli_keys_server, an_unknown_key_id_exits_3_with_not_found) {
    static const char *const cmds[] = {"get", "revoke", "rotate"};
    run_t r;

    for (size_t i = 0; i < 3; i++) {
        cli(&r, "--addr", server.addr, "keys", cmds[i], "--id",
            "key_000000000000000000000000", NULL);
        expect_exit(&r, 3);
        cr_expect_str_empty(r.out);
        cr_expect(strncmp(r.err, "NOT_FOUND", 9) == 0, "%s: %s", cmds[i],
                  r.err);
    }
}


Test(cli_keys_server, list_prints_the_users_keys_newest_first) {
    static made_t k[3];
    bson_t keys[8];
    bson_t *doc;
    size_t n;
    run_t r;

    for (int i = 0; i < 3; i++) {
        k[i] = create("user_list", NULL);
        usleep(3000);
    }
    create("someone_else", NULL);

    cli(&r, "--addr", server.addr, "--json", "keys", "list", "--user",
        "user_list", NULL);
    expect_exit(&r, 0);
    for (int i = 0; i < 3; i++) {
        cr_assert_null(strstr(r.out, k[i].key), "a key was printed");
    }
    doc = json_of(&r);
    json_keys(doc, keys, 8, &n);
    cr_assert_eq(n, 3);
    for (size_t i = 0; i < n; i++) {
        cr_expect_str_eq(json_str(&keys[i], "key_id"), k[2 - i].key_id);
        cr_expect_str_eq(json_str(&keys[i], "user_id"), "user_list");
        cr_expect_not(bson_has_field(&keys[i], "key"));
    }
    bson_destroy(doc);

    /* Readable: a header, then one line per key, newest first. */
    cli(&r, "--addr", server.addr, "keys", "list", "--user", "user_list", NULL);
    expect_exit(&r, 0);
    cr_expect(strncmp(r.out, "KEY_ID", 6) == 0, "%s", r.out);
    cr_expect(strstr(r.out, k[2].key_id) < strstr(r.out, k[0].key_id), "%s",
              r.out);

    cli(&r, "--addr", server.addr, "--json", "keys", "list", "--user", "nobody",
        NULL);
    expect_exit(&r, 0);
    cr_expect_str_eq(r.out, "{\"keys\":[]}\n");
    cli(&r, "--addr", server.addr, "keys", "list", "--user", "nobody", NULL);
    expect_exit(&r, 0);
    cr_expect_str_eq(r.out, "no keys\n");
}


Test(cli_keys_server, revoke_prints_when_and_the_key_stops_verifying) {
    made_t k = create("user_rev", NULL);
    int64_t before, after, first;
    bson_t *doc;
    run_t r;

    cr_assert_eq(verify_exit(k.key), 0);
    before = clock_now_ms();
    cli(&r, "--addr", server.addr, "--json", "keys", "revoke", "--id", k.key_id,
        NULL);
    after = clock_now_ms();
    expect_exit(&r, 0);
    doc = json_of(&r);
    cr_expect_str_eq(json_str(doc, "key_id"), k.key_id);
    first = json_int(doc, "revoked_at_ms");
    cr_expect_geq(first, before);
    cr_expect_leq(first, after);
    bson_destroy(doc);
    cr_assert_eq(verify_exit(k.key), 1);

    /* Again: the first time stays. */
    usleep(10 * 1000);
    cli(&r, "--addr", server.addr, "--json", "keys", "revoke", "--id", k.key_id,
        NULL);
    expect_exit(&r, 0);
    doc = json_of(&r);
    cr_expect_eq(json_int(doc, "revoked_at_ms"), first);
    bson_destroy(doc);

    cli(&r, "--addr", server.addr, "keys", "revoke", "--id", k.key_id, NULL);
    expect_exit(&r, 0);
    cr_expect(strstr(r.out, "revoked:") != NULL, "%s", r.out);
}


Test(cli_keys_server, rotate_prints_the_new_key_once_and_the_old_keys_end) {
    static const char *const more[] = {"--scope", "memory:read", NULL};
    made_t old = create("user_rot", more);
    int64_t before, after;
    char key[256], key_id[64];
    bson_t *doc;
    run_t r;

    before = clock_now_ms();
    cli(&r, "--addr", server.addr, "--json", "keys", "rotate", "--id",
        old.key_id, "--grace", "1h", NULL);
    after = clock_now_ms();
    expect_exit(&r, 0);
    doc = json_of(&r);
    snprintf(key, sizeof(key), "%s", json_str(doc, "key"));
    snprintf(key_id, sizeof(key_id), "%s", json_str(doc, "key_id"));
    cr_expect_str_neq(key, old.key);
    cr_expect_str_eq(json_str(doc, "rotated_from"), old.key_id);
    cr_expect_geq(json_int(doc, "old_expires_at_ms"), before + 3600 * 1000);
    cr_expect_leq(json_int(doc, "old_expires_at_ms"), after + 3600 * 1000);
    bson_destroy(doc);

    /* Both work during the grace period. */
    cr_assert_eq(verify_exit(key), 0);
    cr_assert_eq(verify_exit(old.key), 0);

    /* Rotated once already: exit 3, FAILED_PRECONDITION. */
    cli(&r, "--addr", server.addr, "keys", "rotate", "--id", old.key_id, NULL);
    expect_exit(&r, 3);
    cr_expect(strncmp(r.err, "FAILED_PRECONDITION", 19) == 0, "%s", r.err);

    /* Without --grace the old key ends at once; readable output shows the
     * new key exactly once and says so. */
    cli(&r, "--addr", server.addr, "keys", "rotate", "--id", key_id, NULL);
    expect_exit(&r, 0);
    cr_expect(strstr(r.out, "cannot be shown again") != NULL, "%s", r.out);
    cr_expect(strncmp(r.out, "key:", 4) == 0, "%s", r.out);
    cr_assert_eq(verify_exit(key), 1);
}


Test(cli_keys_server, rotating_a_revoked_key_exits_3) {
    made_t k = create("user_rr", NULL);
    run_t r;

    cli(&r, "--addr", server.addr, "keys", "revoke", "--id", k.key_id, NULL);
    expect_exit(&r, 0);
    cli(&r, "--addr", server.addr, "--json", "keys", "rotate", "--id", k.key_id,
        "--grace", "1m", NULL);
    expect_exit(&r, 3);
    cr_expect_str_empty(r.out);
    cr_expect(strncmp(r.err, "FAILED_PRECONDITION", 19) == 0, "%s", r.err);
}
