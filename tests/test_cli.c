/*
 * The `cpstore` command-line client, run as a user runs it: a child
 * process with its own argv, environment and stdin, judged by its exit code,
 * stdout and stderr. Usage errors and an unreachable server need no server;
 * the rest runs against a real cpstored on the memory backends, and every
 * --json output is parsed (with libbson's JSON reader) before it is checked.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bson/bson.h>

#include "clock.h"
#include "harness.h"

#define OUT_MAX 16384

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

    snprintf(path, len, "%s/cpstore-cli-XXXXXX", tmp ? tmp : "/tmp");
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


/*
 * Run the CLI with argv (NULL-terminated, without the program name), extra
 * environment entries ("K=V", NULL-terminated, may be NULL) and stdin text
 * (NULL: /dev/null). CPSTORE_ADDR is unset unless env sets it.
 */
static void run_cli(run_t *r,
                    const char *const *env,
                    const char *stdin_text,
                    const char *const *argv) {
    char out_path[256], err_path[256], in_path[256];
    const char *args[128];
    int out_fd, err_fd, in_fd;
    size_t n = 0;
    int status;
    pid_t pid;

    args[n++] = CPSTORE_CLI_PATH;
    for (size_t i = 0; argv[i] != NULL; i++) {
        cr_assert(n < 127);
        args[n++] = argv[i];
    }
    args[n] = NULL;

    out_fd = temp_file(out_path, sizeof(out_path));
    err_fd = temp_file(err_path, sizeof(err_path));
    in_fd = temp_file(in_path, sizeof(in_path));
    if (stdin_text != NULL) {
        cr_assert(write(in_fd, stdin_text, strlen(stdin_text)) ==
                  (ssize_t)strlen(stdin_text));
        lseek(in_fd, 0, SEEK_SET);
    }

    pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        dup2(in_fd, STDIN_FILENO);
        dup2(out_fd, STDOUT_FILENO);
        dup2(err_fd, STDERR_FILENO);
        unsetenv("CPSTORE_ADDR");
        for (size_t i = 0; env != NULL && env[i] != NULL; i++) {
            char name[64];
            const char *eq = strchr(env[i], '=');

            snprintf(name, sizeof(name), "%.*s", (int)(eq - env[i]), env[i]);
            setenv(name, eq + 1, 1);
        }
        execv(args[0], (char *const *)args);
        _exit(127);
    }
    cr_assert(waitpid(pid, &status, 0) == pid);
    close(out_fd);
    close(err_fd);
    close(in_fd);
    unlink(in_path);
    slurp(out_path, r->out, sizeof(r->out));
    slurp(err_path, r->err, sizeof(r->err));
    cr_assert(WIFEXITED(status), "cpstore died: status %d", status);
    r->code = WEXITSTATUS(status);
}


/* run_cli() with the arguments as a NULL-terminated list. */
static void cli(run_t *r, const char *first, ...) {
    const char *argv[64];
    size_t n = 0;
    va_list ap;

    va_start(ap, first);
    for (const char *a = first; a != NULL; a = va_arg(ap, const char *)) {
        cr_assert(n < 63);
        argv[n++] = a;
    }
    va_end(ap);
    argv[n] = NULL;
    run_cli(r, NULL, NULL, argv);
}


static void expect_exit(const run_t *r, int code) {
    cr_assert_eq(r->code, code, "exit %d, expected %d\nstdout: %s\nstderr: %s",
                 r->code, code, r->out, r->err);
}


/* An address where nothing listens. */
static void dead_addr(char *buf, size_t len) {
    snprintf(buf, len, "127.0.0.1:%d", h_free_port());
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


static bool json_bool(const bson_t *doc, const char *key) {
    bson_iter_t it = json_field(doc, key);

    cr_assert(BSON_ITER_HOLDS_BOOL(&it), "'%s' is not a boolean", key);
    return bson_iter_bool(&it);
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


/* ---- without a server ------------------------------------------------ */


static void expect_usage_error(const char *const *argv) {
    char line[1024] = "";
    char first[256];
    run_t r;

    for (size_t i = 2; argv[i] != NULL && strlen(line) < 512; i++) {
        strncat(line, argv[i], 256);
        strcat(line, " ");
    }
    run_cli(&r, NULL, NULL, argv);
    cr_expect_eq(r.code, 2, "'cpstore %s': exit %d, stderr: %s", line, r.code,
                 r.err);
    cr_expect_str_empty(r.out, "a usage error printed on stdout: %s", r.out);
    /* One line saying what is wrong, then a pointer to --help. */
    cr_expect(strncmp(r.err, "cpstore: ", 9) == 0, "stderr: %s", r.err);
    snprintf(first, sizeof(first), "%.*s", (int)strcspn(r.err, "\n"), r.err);
    cr_expect(strstr(r.err + strlen(first), "--help") != NULL,
              "no hint to --help after '%s'", first);
}


Test(cli, usage_errors_exit_2_before_any_connection) {
    char addr[64];
    char long_user[400];
    const char *many_scopes[80];
    size_t n = 0;

    /* Were any of these to connect, they would exit 3, not 2. */
    dead_addr(addr, sizeof(addr));
    memset(long_user, 'u', sizeof(long_user) - 1);
    long_user[sizeof(long_user) - 1] = '\0';

#define A "--addr", addr
    const char *const cases[][16] = {
        {A, NULL},
        {A, "frobnicate", NULL},
        {A, "--bogus", "health", NULL},
        {A, "-x", "health", NULL},
        {A, "health", "extra", NULL},
        {A, "health", "--timeout", NULL},
        {A, "health", "--timeout", "0", NULL},
        {A, "health", "--timeout", "5", NULL},
        {A, "--addr", "", "health", NULL},
        {A, "ratelimit", NULL},
        {A, "ratelimit", "peek", NULL},
        {A, "ratelimit", "check", "--limit", "5", "--window", "1s", NULL},
        {A, "ratelimit", "check", "--key", "k", "--window", "1s", NULL},
        {A, "ratelimit", "check", "--key", "k", "--limit", "5", NULL},
        {A, "ratelimit", "check", "--key", "k", "--limit", "-1", "--window",
         "1s", NULL},
        {A, "ratelimit", "check", "--key", "k", "--limit", "five", "--window",
         "1s", NULL},
        {A, "ratelimit", "check", "--key", "k", "--limit",
         "18446744073709551616", "--window", "1s", NULL},
        {A, "ratelimit", "check", "--key", "k", "--limit", "5", "--window",
         "1 s", NULL},
        {A, "ratelimit", "check", "--key", "k", "--limit", "5", "--window",
         "60", NULL},
        {A, "ratelimit", "check", "--key", "k", "--limit", "5", "--window",
         "1s", "--cost", "1.5", NULL},
        {A, "keys", NULL},
        {A, "keys", "revoke", NULL},
        {A, "keys", "create", NULL},
        {A, "keys", "create", "--user", "u", "--expires-in", "soon", NULL},
        {A, "keys", "create", "--user", long_user, NULL},
        {A, "keys", "verify", NULL},
        {A, "keys", "verify", "--key", "", NULL},
    };
#undef A

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        expect_usage_error(cases[i]);
    }

    /* One --scope more than a key may carry. */
    many_scopes[n++] = "--addr";
    many_scopes[n++] = addr;
    many_scopes[n++] = "keys";
    many_scopes[n++] = "create";
    many_scopes[n++] = "--user";
    many_scopes[n++] = "u";
    for (int i = 0; i < 33; i++) {
        many_scopes[n++] = "--scope";
        many_scopes[n++] = "memory:read";
    }
    many_scopes[n] = NULL;
    expect_usage_error(many_scopes);
}


Test(cli, help_and_version_exit_0_at_every_level) {
    static const char *const cases[][4] = {
        {"--help", NULL},
        {"-h", NULL},
        {"help", NULL},
        {"health", "--help", NULL},
        {"ratelimit", "--help", NULL},
        {"ratelimit", "check", "--help", NULL},
        {"keys", "-h", NULL},
        {"keys", "create", "--help", NULL},
        {"keys", "verify", "-h", NULL},
    };
    run_t r;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        run_cli(&r, NULL, NULL, cases[i]);
        cr_expect_eq(r.code, 0, "%s %s: exit %d", cases[i][0],
                     cases[i][1] ? cases[i][1] : "", r.code);
        cr_expect(strncmp(r.out, "Usage: cpstore", 14) == 0, "%s", r.out);
    }

    cli(&r, "--version", NULL);
    expect_exit(&r, 0);
    cr_expect_str_eq(r.out, "cpstore " CPSTORE_VERSION "\n");
}


Test(cli, unreachable_server_exits_3_naming_the_address) {
    char addr[64];
    run_t r;

    dead_addr(addr, sizeof(addr));

    cli(&r, "--addr", addr, "health", NULL);
    expect_exit(&r, 3);
    cr_expect(strstr(r.err, addr) != NULL, "stderr: %s", r.err);

    cli(&r, "--json", "--addr", addr, "ratelimit", "check", "--key", "k",
        "--limit", "1", "--window", "1s", NULL);
    expect_exit(&r, 3);
    cr_expect_str_empty(r.out);

    cli(&r, "keys", "create", "--user", "u", "--addr", addr, NULL);
    expect_exit(&r, 3);
    cli(&r, "keys", "verify", "--key", "k", "--addr", addr, NULL);
    expect_exit(&r, 3);

    cli(&r, "--addr", "unix:/nonexistent/cpstore.sock", "health", NULL);
    expect_exit(&r, 3);
    cr_expect(strstr(r.err, "/nonexistent/cpstore.sock") != NULL, "stderr: %s",
              r.err);
}


/* ---- against cpstored ------------------------------------------------ */


static void start_server(void) {
    h_cpstored_start(&server, NULL, NULL);
}


static void stop_server(void) {
    h_proc_stop(&server);
}


TestSuite(cli_server, .init = start_server, .fini = stop_server);


Test(cli_server, health_says_serving_in_json_and_exits_0) {
    bson_iter_t it, backend, field;
    int backends = 0;
    bson_t *doc;
    run_t r;

    cli(&r, "--addr", server.addr, "--json", "health", NULL);
    expect_exit(&r, 0);
    doc = json_of(&r);
    cr_expect_str_eq(json_str(doc, "status"), "SERVING");
    cr_expect_str_eq(json_str(doc, "version"), CPSTORE_VERSION);

    it = json_field(doc, "backends");
    cr_assert(BSON_ITER_HOLDS_ARRAY(&it));
    cr_assert(bson_iter_recurse(&it, &backend));
    while (bson_iter_next(&backend)) {
        cr_assert(BSON_ITER_HOLDS_DOCUMENT(&backend));
        cr_assert(bson_iter_recurse(&backend, &field));
        cr_assert(bson_iter_find(&field, "kind"));
        cr_expect_str_eq(bson_iter_utf8(&field, NULL), "memory");
        cr_assert(bson_iter_recurse(&backend, &field));
        cr_assert(bson_iter_find(&field, "up"));
        cr_expect(bson_iter_bool(&field));
        backends++;
    }
    cr_expect_eq(backends, 2, "ratelimit and apikeys: %s", r.out);
    bson_destroy(doc);
}


Test(cli_server, health_reads_readably_without_json) {
    run_t r;

    cli(&r, "--addr", server.addr, "health", NULL);
    expect_exit(&r, 0);
    cr_expect(strncmp(r.out, "status:", 7) == 0, "%s", r.out);
    cr_expect(strstr(r.out, "SERVING") != NULL, "%s", r.out);
    cr_expect(r.out[0] != '{', "%s", r.out);
}


Test(cli_server, addr_defaults_to_cpstore_addr_from_the_environment) {
    static const char *const argv[] = {"--json", "health", NULL};
    char env_addr[128];
    const char *env[] = {env_addr, NULL};
    run_t r;

    snprintf(env_addr, sizeof(env_addr), "CPSTORE_ADDR=%s", server.addr);
    run_cli(&r, env, NULL, argv);
    expect_exit(&r, 0);

    /* --addr still wins over the environment. */
    static const char *const dead[] = {"--addr", "127.0.0.1:1", "health", NULL};
    run_cli(&r, env, NULL, dead);
    expect_exit(&r, 3);
}


/* One check of key, limit 5 in a 1h window, at the given cost. */
static bson_t *check(run_t *r, const char *key, const char *cost) {
    const char *argv[] = {
        "ratelimit", "check", "--json",   "--addr", server.addr, "--key", key,
        "--limit",   "5",     "--window", "1h",     "--cost",    cost,    NULL};

    run_cli(r, NULL, NULL, argv);
    return json_of(r);
}


Test(cli_server, ratelimit_check_exits_0_while_allowed_and_1_once_denied) {
    char key[128];
    bson_t *doc;
    run_t r;

    h_unique(key, sizeof(key), "cli");

    doc = check(&r, key, "3");
    expect_exit(&r, 0);
    cr_expect(json_bool(doc, "allowed"));
    cr_expect_eq(json_int(doc, "limit"), 5);
    cr_expect_eq(json_int(doc, "remaining"), 2);
    cr_expect_eq(json_int(doc, "retry_after_ms"), 0);
    cr_expect_gt(json_int(doc, "reset_after_ms"), 0);
    bson_destroy(doc);

    /* Cost 3 no longer fits; it is denied and consumes nothing... */
    doc = check(&r, key, "3");
    expect_exit(&r, 1);
    cr_expect_not(json_bool(doc, "allowed"));
    cr_expect_eq(json_int(doc, "remaining"), 2);
    cr_expect_gt(json_int(doc, "retry_after_ms"), 0);
    cr_expect_leq(json_int(doc, "retry_after_ms"), 3600000);
    bson_destroy(doc);

    /* ...so cost 2 still fits. */
    doc = check(&r, key, "2");
    expect_exit(&r, 0);
    cr_expect(json_bool(doc, "allowed"));
    cr_expect_eq(json_int(doc, "remaining"), 0);
    bson_destroy(doc);
}


Test(cli_server, ratelimit_check_reads_readably_without_json) {
    char key[128];
    run_t r;

    h_unique(key, sizeof(key), "cli");
    cli(&r, "--addr", server.addr, "ratelimit", "check", "--key", key,
        "--limit", "0", "--window", "10s", NULL);
    expect_exit(&r, 1);
    cr_expect(strstr(r.out, "allowed:") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, "no") != NULL, "%s", r.out);
    cr_expect(r.out[0] != '{', "%s", r.out);
}


Test(cli_server, rpc_error_exits_3_with_code_and_message) {
    run_t r;

    cli(&r, "--addr", server.addr, "--json", "ratelimit", "check", "--key", "k",
        "--limit", "2000000000", "--window", "1s", NULL);
    expect_exit(&r, 3);
    cr_expect_str_empty(r.out);
    cr_expect(strncmp(r.err, "INVALID_ARGUMENT: ", 18) == 0, "%s", r.err);
    cr_expect_gt(strlen(r.err), 19, "no message: %s", r.err);
}


/* Create a key as the arguments say; returns the parsed --json output. */
static bson_t *create_key(run_t *r, const char *user, const char *const *more) {
    const char *argv[48] = {"--addr", server.addr, "--json", "keys",
                            "create", "--user",    user};
    size_t n = 7;

    for (size_t i = 0; more != NULL && more[i] != NULL; i++) {
        argv[n++] = more[i];
    }
    argv[n] = NULL;
    run_cli(r, NULL, NULL, argv);
    expect_exit(r, 0);
    return json_of(r);
}


static bson_t *verify_key(run_t *r, const char *key, const char *const *more) {
    const char *argv[48] = {"--addr", server.addr, "--json", "keys",
                            "verify", "--key",     key};
    size_t n = 7;

    for (size_t i = 0; more != NULL && more[i] != NULL; i++) {
        argv[n++] = more[i];
    }
    argv[n] = NULL;
    run_cli(r, NULL, NULL, argv);
    return json_of(r);
}


Test(cli_server, created_key_verifies_with_its_owner_scopes_and_binding) {
    static const char *const create_args[] = {
        "--name",       "ci deploy", "--scope", "memory:read", "--scope",
        "billing:*",    "--org",     "org_1",   "--project",   "proj_1",
        "--expires-in", "1h",        NULL};
    static const char *const verify_args[] = {
        "--scope",   "billing:write", "--org", "org_1",
        "--project", "proj_1",        NULL};
    char scopes[512];
    char key[256], key_id[128];
    int64_t before = clock_now_ms(), after;
    bson_t *doc;
    run_t r;

    doc = create_key(&r, "user_7", create_args);
    after = clock_now_ms();
    snprintf(key, sizeof(key), "%s", json_str(doc, "key"));
    snprintf(key_id, sizeof(key_id), "%s", json_str(doc, "key_id"));
    cr_expect_gt(strlen(key), 40, "a key of 256 random bits: %s", key);
    cr_expect_neq(key_id[0], '\0');
    cr_expect_geq(json_int(doc, "expires_at_ms"), before + 3600000);
    cr_expect_leq(json_int(doc, "expires_at_ms"), after + 3600000);
    bson_destroy(doc);

    doc = verify_key(&r, key, verify_args);
    expect_exit(&r, 0);
    cr_expect(json_bool(doc, "valid"));
    cr_expect_str_eq(json_str(doc, "code"), "VALID");
    cr_expect_str_eq(json_str(doc, "key_id"), key_id);
    cr_expect_str_eq(json_str(doc, "user_id"), "user_7");
    cr_expect_str_eq(json_str(doc, "org_id"), "org_1");
    cr_expect_str_eq(json_str(doc, "project_id"), "proj_1");
    json_str_array(doc, "scopes", scopes, sizeof(scopes));
    cr_expect_str_eq(scopes, "memory:read billing:*");
    bson_destroy(doc);
}


Test(cli_server, verify_exits_1_with_the_reason_a_key_is_refused) {
    static const char *const create_args[] = {"--scope", "memory:read", "--org",
                                              "org_1", NULL};
    static const char *const wrong_org[] = {"--org", "org_2", NULL};
    static const char *const wider_scope[] = {"--scope", "memory:readwrite",
                                              NULL};
    char key[256];
    bson_t *doc;
    run_t r;

    doc = create_key(&r, "user_8", create_args);
    snprintf(key, sizeof(key), "%s", json_str(doc, "key"));
    bson_destroy(doc);

    doc = verify_key(&r, "cpk_dev_thisKeyWasNeverIssued0000000000000000", NULL);
    expect_exit(&r, 1);
    cr_expect_not(json_bool(doc, "valid"));
    cr_expect_str_eq(json_str(doc, "code"), "NOT_FOUND");
    bson_destroy(doc);

    doc = verify_key(&r, key, wrong_org);
    expect_exit(&r, 1);
    cr_expect_not(json_bool(doc, "valid"));
    cr_expect_str_eq(json_str(doc, "code"), "CONTEXT_MISMATCH");
    bson_destroy(doc);

    doc = verify_key(&r, key, wider_scope);
    expect_exit(&r, 1);
    cr_expect_str_eq(json_str(doc, "code"), "INSUFFICIENT_SCOPE");
    bson_destroy(doc);
}


Test(cli_server, verify_reads_the_key_from_stdin_when_told) {
    static const char *const argv[] = {"--json", "keys", "verify",
                                       "--key",  "-",    NULL};
    char env_addr[128];
    const char *env[] = {env_addr, NULL};
    char line[300];
    bson_t *doc;
    run_t r;

    doc = create_key(&r, "user_9", NULL);
    snprintf(line, sizeof(line), "%s\n", json_str(doc, "key"));
    bson_destroy(doc);

    snprintf(env_addr, sizeof(env_addr), "CPSTORE_ADDR=%s", server.addr);
    run_cli(&r, env, line, argv);
    expect_exit(&r, 0);
    doc = json_of(&r);
    cr_expect_str_eq(json_str(doc, "user_id"), "user_9");
    bson_destroy(doc);
}


Test(cli_server,
     readable_create_shows_the_key_once_and_warns_it_is_shown_once) {
    const char *p;
    char key[256];
    int seen = 0;
    run_t r;

    cli(&r, "--addr", server.addr, "keys", "create", "--user", "user_10", NULL);
    expect_exit(&r, 0);
    cr_assert(strncmp(r.out, "key:", 4) == 0, "%s", r.out);
    sscanf(r.out, "key: %255s", key);
    for (p = r.out; (p = strstr(p, key)) != NULL; p += strlen(key)) {
        seen++;
    }
    cr_expect_eq(seen, 1, "%s", r.out);
    cr_expect(strstr(r.out, "cannot be shown again") != NULL, "%s", r.out);

    /* And it is a key that works. */
    bson_destroy(verify_key(&r, key, NULL));
    expect_exit(&r, 0);
}


Test(cli_server, json_strings_survive_quotes_backslashes_and_utf8) {
    static const char user[] = "a\"b\\c/d \xc3\xa9\xe2\x82\xac";
    char key[256];
    bson_t *doc;
    run_t r;

    doc = create_key(&r, user, NULL);
    snprintf(key, sizeof(key), "%s", json_str(doc, "key"));
    bson_destroy(doc);

    doc = verify_key(&r, key, NULL);
    expect_exit(&r, 0);
    cr_expect_str_eq(json_str(doc, "user_id"), user);
    bson_destroy(doc);
}
