/*
 * `cpstore sessions ...`, run as a user runs it: a child process judged by
 * its exit code, stdout and stderr, against a real cpstored on the memory
 * backends. Every --json output is parsed with libbson's JSON reader
 * before it is checked.
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

#include "harness.h"

#define OUT_MAX 65536

typedef struct run {
    int code;
    char out[OUT_MAX];
    char err[OUT_MAX];
} run_t;

static h_proc_t server;


/* ---- running the CLI --------------------------------------------------- */

static int temp_file(char *path, size_t len) {
    const char *tmp = getenv("TMPDIR");
    int fd;

    snprintf(path, len, "%s/cpstore-cli-ss-XXXXXX", tmp ? tmp : "/tmp");
    fd = mkstemp(path);
    cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
    return fd;
}


static void read_back(const char *path, char *buf, size_t len) {
    FILE *f = fopen(path, "r");
    size_t n = 0;

    if (f != NULL) {
        n = fread(buf, 1, len - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
    unlink(path);
}


/* Run the CLI against the test server with argv (NULL-terminated, without
 * the program name and --addr) and stdin text (NULL: empty). */
static void
run_with_stdin(run_t *r, const char *stdin_text, const char *const *argv) {
    char out_path[256], err_path[256], in_path[256];
    const char *args[64];
    int out_fd, err_fd, in_fd;
    size_t n = 0;
    int status;
    pid_t pid;

    args[n++] = CPSTORE_CLI_PATH;
    args[n++] = "--addr";
    args[n++] = server.addr;
    for (size_t i = 0; argv[i] != NULL; i++) {
        cr_assert(n < 63);
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
        execv(args[0], (char *const *)args);
        _exit(127);
    }
    cr_assert(waitpid(pid, &status, 0) == pid);
    close(out_fd);
    close(err_fd);
    close(in_fd);
    unlink(in_path);
    read_back(out_path, r->out, sizeof(r->out));
    read_back(err_path, r->err, sizeof(r->err));
    cr_assert(WIFEXITED(status), "cpstore died: status %d", status);
    r->code = WEXITSTATUS(status);
}


/* Run with the arguments as a NULL-terminated list. */
static void cli(run_t *r, const char *first, ...) {
    const char *argv[48];
    size_t n = 0;
    va_list ap;

    va_start(ap, first);
    for (const char *a = first; a != NULL; a = va_arg(ap, const char *)) {
        cr_assert(n < 47);
        argv[n++] = a;
    }
    va_end(ap);
    argv[n] = NULL;
    run_with_stdin(r, NULL, argv);
}


static void expect_exit(const run_t *r, int code) {
    cr_assert_eq(r->code, code, "exit %d, expected %d\nstdout: %s\nstderr: %s",
                 r->code, code, r->out, r->err);
}


/* stdout as one JSON object on one line. */
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


static const char *json_str(const bson_t *doc, const char *path) {
    bson_iter_t it;
    bson_iter_t found;

    cr_assert(bson_iter_init(&it, doc) &&
                  bson_iter_find_descendant(&it, path, &found),
              "no '%s' in the output", path);
    cr_assert(BSON_ITER_HOLDS_UTF8(&found), "'%s' is not a string", path);
    return bson_iter_utf8(&found, NULL);
}


static int64_t json_int(const bson_t *doc, const char *path) {
    bson_iter_t it;
    bson_iter_t found;

    cr_assert(bson_iter_init(&it, doc) &&
                  bson_iter_find_descendant(&it, path, &found),
              "no '%s' in the output", path);
    cr_assert(BSON_ITER_HOLDS_INT32(&found) || BSON_ITER_HOLDS_INT64(&found),
              "'%s' is not an integer", path);
    return bson_iter_as_int64(&found);
}


static int json_has(const bson_t *doc, const char *path) {
    bson_iter_t it;
    bson_iter_t found;

    return bson_iter_init(&it, doc) &&
           bson_iter_find_descendant(&it, path, &found);
}


/* A session created through the CLI: its token and id. */
typedef struct made {
    char token[128];
    char id[48];
} made_t;


static made_t create(const char *user) {
    made_t m;
    run_t r;
    bson_t *doc;

    cli(&r, "--json", "sessions", "create", "--user", user, "--idle", "10m",
        "--max", "1h", "--meta", "ip=10.0.0.7", "--meta", "ua=curl=8", NULL);
    expect_exit(&r, 0);
    doc = json_of(&r);
    snprintf(m.token, sizeof(m.token), "%s", json_str(doc, "token"));
    snprintf(m.id, sizeof(m.id), "%s", json_str(doc, "session_id"));
    bson_destroy(doc);
    return m;
}


static void start_server(void) {
    const char *env[] = {
        "CPSTORE_SECRET=test-secret-0123456789abcdef0123456789abcdef", NULL};

    h_cpstored_start(&server, NULL, env);
}


static void stop_server(void) {
    h_proc_stop(&server);
}


/* ---- tests ------------------------------------------------------------- */

TestSuite(cli_sessions,
          .init = start_server,
          .fini = stop_server,
          .timeout = 60);


Test(cli_sessions, create_prints_the_token_once_with_its_expiries) {
    run_t r;
    bson_t *doc;

    cli(&r, "--json", "sessions", "create", "--user", "alice", "--kind",
        "admin", "--idle", "10m", "--max", "1h", NULL);
    expect_exit(&r, 0);
    doc = json_of(&r);
    cr_assert_eq(strncmp(json_str(doc, "token"), "cps_", 4), 0);
    cr_assert_eq(strncmp(json_str(doc, "session_id"), "ses_", 4), 0);
    cr_assert_str_eq(json_str(doc, "user_id"), "alice");
    cr_assert_str_eq(json_str(doc, "kind"), "admin");
    cr_assert_eq(json_int(doc, "idle_expires_at_ms"),
                 json_int(doc, "created_at_ms") + 10 * 60 * 1000);
    cr_assert_eq(json_int(doc, "absolute_expires_at_ms"),
                 json_int(doc, "created_at_ms") + 60 * 60 * 1000);
    bson_destroy(doc);

    /* Readable output says the token is shown only this once. */
    cli(&r, "sessions", "create", "--user", "alice", NULL);
    expect_exit(&r, 0);
    cr_assert(strstr(r.out, "token:") != NULL, "%s", r.out);
    cr_assert(strstr(r.out, "cps_") != NULL, "%s", r.out);
    cr_assert(strstr(r.out, "only once") != NULL, "%s", r.out);
}


Test(cli_sessions, validate_gives_code_and_user_and_exit_0_or_1) {
    made_t m = create("bob");
    made_t altered = m;
    size_t n = strlen(altered.token);
    run_t r;
    bson_t *doc;

    cli(&r, "--json", "sessions", "validate", "--token", m.token, NULL);
    expect_exit(&r, 0);
    doc = json_of(&r);
    cr_assert_str_eq(json_str(doc, "code"), "VALID");
    cr_assert_str_eq(json_str(doc, "user"), "bob");
    cr_assert_str_eq(json_str(doc, "session_id"), m.id);
    cr_assert_str_eq(json_str(doc, "metadata.ip"), "10.0.0.7");
    cr_assert_str_eq(json_str(doc, "metadata.ua"), "curl=8");
    bson_destroy(doc);

    /* From stdin, which keeps the token out of the process list. */
    run_with_stdin(
        &r, m.token,
        (const char *const[]){"sessions", "validate", "--token", "-", NULL});
    expect_exit(&r, 0);
    cr_assert(strstr(r.out, "VALID") != NULL, "%s", r.out);

    altered.token[n - 1] = altered.token[n - 1] == 'a' ? 'b' : 'a';
    cli(&r, "--json", "sessions", "validate", "--token", altered.token, NULL);
    expect_exit(&r, 1);
    doc = json_of(&r);
    cr_assert_str_eq(json_str(doc, "code"), "NOT_FOUND");
    cr_assert_str_eq(json_str(doc, "user"), "");
    bson_destroy(doc);
}


Test(cli_sessions, revoke_by_token_or_id_exits_0_then_1) {
    made_t a = create("carol");
    made_t b = create("carol");
    run_t r;
    bson_t *doc;

    cli(&r, "--json", "sessions", "revoke", "--token", a.token, NULL);
    expect_exit(&r, 0);
    cr_assert_str_eq(r.out, "{\"revoked\":true}\n");
    cli(&r, "--json", "sessions", "validate", "--token", a.token, NULL);
    expect_exit(&r, 1);
    doc = json_of(&r);
    cr_assert_str_eq(json_str(doc, "code"), "REVOKED");
    cr_assert_str_eq(json_str(doc, "user"), "carol");
    cr_assert_gt(json_int(doc, "revoked_at_ms"), 0);
    bson_destroy(doc);
    cli(&r, "sessions", "revoke", "--token", a.token, NULL);
    expect_exit(&r, 1);

    cli(&r, "sessions", "revoke", "--id", b.id, NULL);
    expect_exit(&r, 0);
    cli(&r, "sessions", "validate", "--token", b.token, NULL);
    expect_exit(&r, 1);
    cr_assert(strstr(r.out, "REVOKED") != NULL, "%s", r.out);
}


Test(cli_sessions, revoke_all_counts_and_exits_1_when_nothing_is_left) {
    made_t mine[2] = {create("dave"), create("dave")};
    made_t theirs = create("erin");
    run_t r;

    cli(&r, "--json", "sessions", "revoke-all", "--user", "dave", NULL);
    expect_exit(&r, 0);
    cr_assert_str_eq(r.out, "{\"revoked\":2}\n");
    for (int i = 0; i < 2; i++) {
        cli(&r, "sessions", "validate", "--token", mine[i].token, NULL);
        expect_exit(&r, 1);
    }
    cli(&r, "sessions", "validate", "--token", theirs.token, NULL);
    expect_exit(&r, 0);
    cli(&r, "sessions", "revoke-all", "--user", "dave", NULL);
    expect_exit(&r, 1);
}


Test(cli_sessions, list_prints_live_sessions_newest_first_without_tokens) {
    made_t first = create("frank");
    made_t second;
    made_t gone;
    run_t r;
    bson_t *doc;

    usleep(5 * 1000);
    second = create("frank");
    gone = create("frank");
    cli(&r, "sessions", "revoke", "--id", gone.id, NULL);
    expect_exit(&r, 0);

    cli(&r, "--json", "sessions", "list", "--user", "frank", NULL);
    expect_exit(&r, 0);
    doc = json_of(&r);
    cr_assert_str_eq(json_str(doc, "sessions.0.session_id"), second.id);
    cr_assert_str_eq(json_str(doc, "sessions.1.session_id"), first.id);
    cr_assert_not(json_has(doc, "sessions.2"), "%s", r.out);
    cr_assert_str_eq(json_str(doc, "sessions.0.user_id"), "frank");
    cr_assert_str_eq(json_str(doc, "sessions.0.metadata.ip"), "10.0.0.7");
    cr_assert_not(json_has(doc, "sessions.0.token"));
    cr_assert_null(strstr(r.out, first.token));
    cr_assert_null(strstr(r.out, second.token));
    bson_destroy(doc);

    /* Readable: one block per session; an empty list says so. */
    cli(&r, "sessions", "list", "--user", "frank", NULL);
    expect_exit(&r, 0);
    cr_assert(strstr(r.out, first.id) != NULL, "%s", r.out);
    cr_assert(strstr(r.out, second.id) < strstr(r.out, first.id), "%s", r.out);
    cli(&r, "--json", "sessions", "list", "--user", "nobody", NULL);
    expect_exit(&r, 0);
    cr_assert_str_eq(r.out, "{\"sessions\":[]}\n");
    cli(&r, "sessions", "list", "--user", "nobody", NULL);
    expect_exit(&r, 0);
    cr_assert(strstr(r.out, "no live sessions") != NULL, "%s", r.out);
}


Test(cli_sessions, bad_command_lines_exit_2_and_server_errors_exit_3) {
    const char *const usage[][12] = {
        {"sessions", NULL},
        {"sessions", "frobnicate", NULL},
        {"sessions", "create", NULL},
        {"sessions", "create", "--user", "u", "--idle", "0", NULL},
        {"sessions", "create", "--user", "u", "--max", "ten", NULL},
        {"sessions", "create", "--user", "u", "--meta", "novalue", NULL},
        {"sessions", "create", "--user", "u", "--meta", "=v", NULL},
        {"sessions", "create", "--user", "u", "--meta", "k=1", "--meta", "k=2",
         NULL},
        {"sessions", "validate", NULL},
        {"sessions", "revoke", NULL},
        {"sessions", "revoke", "--token", "cps_x", "--id", "ses_x", NULL},
        {"sessions", "list", NULL},
    };
    run_t r;

    for (size_t i = 0; i < sizeof(usage) / sizeof(usage[0]); i++) {
        run_with_stdin(&r, NULL, usage[i]);
        cr_expect_eq(r.code, 2, "case %zu: exit %d, stderr: %s", i, r.code,
                     r.err);
        cr_expect_str_empty(r.out, "case %zu printed: %s", i, r.out);
    }
    cli(&r, "sessions", "revoke-all", "--user", "", NULL);
    expect_exit(&r, 2);

    /* A request the server refuses is an RPC error. */
    cli(&r, "sessions", "create", "--user", "u", "--kind", "no spaces", NULL);
    expect_exit(&r, 3);
    cr_assert(strstr(r.err, "INVALID_ARGUMENT") != NULL, "%s", r.err);
}
