/*
 * `cpstore ratelimit check --policy` and `cpstore ratelimit check-many`, run
 * as a user runs them: a child process judged by its exit code, stdout and
 * stderr. Usage errors need no server; the rest runs against a cpstored on
 * the memory backends with a configuration file of its own, and every
 * --json output is parsed (with libbson's JSON reader) before it is checked.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bson/bson.h>

#include "harness.h"

#define OUT_MAX 16384

typedef struct run {
    int code;
    char out[OUT_MAX];
    char err[OUT_MAX];
} run_t;

static h_proc_t server;
static char config_path[512];


/* ---- running the CLI ------------------------------------------------- */

static int temp_fd(char *path, size_t len) {
    const char *tmp = getenv("TMPDIR");
    int fd;

    snprintf(path, len, "%s/cpstore-clirl-XXXXXX", tmp ? tmp : "/tmp");
    fd = mkstemp(path);
    cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
    return fd;
}


/* Read what path holds into buf, then remove it. */
static void take_file(const char *path, char *buf, size_t len) {
    FILE *f = fopen(path, "r");
    size_t n = 0;

    if (f != NULL) {
        n = fread(buf, 1, len - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
    unlink(path);
}


/* Run the CLI with args (NULL-terminated, without the program name), with
 * CPSTORE_ADDR unset and stdin empty. */
static void run_argv(run_t *r, const char *const *args) {
    const char *argv[80] = {CPSTORE_CLI_PATH};
    char out_path[256], err_path[256];
    int out_fd, err_fd, status;
    size_t n = 1;
    pid_t pid;

    for (size_t i = 0; args[i] != NULL; i++) {
        cr_assert(n < 79);
        argv[n++] = args[i];
    }
    argv[n] = NULL;

    out_fd = temp_fd(out_path, sizeof(out_path));
    err_fd = temp_fd(err_path, sizeof(err_path));
    pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int in = open("/dev/null", O_RDONLY);

        dup2(in, STDIN_FILENO);
        dup2(out_fd, STDOUT_FILENO);
        dup2(err_fd, STDERR_FILENO);
        unsetenv("CPSTORE_ADDR");
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    cr_assert(waitpid(pid, &status, 0) == pid);
    close(out_fd);
    close(err_fd);
    take_file(out_path, r->out, sizeof(r->out));
    take_file(err_path, r->err, sizeof(r->err));
    cr_assert(WIFEXITED(status), "cpstore died: status %d", status);
    r->code = WEXITSTATUS(status);
}


/* run_argv() with the arguments as a NULL-terminated list. */
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
    run_argv(r, argv);
}


static void expect_exit(const run_t *r, int code) {
    cr_assert_eq(r->code, code, "exit %d, expected %d\nstdout: %s\nstderr: %s",
                 r->code, code, r->out, r->err);
}


/* ---- reading --json output ------------------------------------------- */

/* stdout, which must be one line holding one JSON object. */
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


static bson_iter_t field(const bson_t *doc, const char *key) {
    bson_iter_t it;

    cr_assert(bson_iter_init_find(&it, doc, key), "no '%s' in the output", key);
    return it;
}


static bool get_bool(const bson_t *doc, const char *key) {
    bson_iter_t it = field(doc, key);

    cr_assert(BSON_ITER_HOLDS_BOOL(&it), "'%s' is not a boolean", key);
    return bson_iter_bool(&it);
}


static int64_t get_int(const bson_t *doc, const char *key) {
    bson_iter_t it = field(doc, key);

    cr_assert(BSON_ITER_HOLDS_INT32(&it) || BSON_ITER_HOLDS_INT64(&it),
              "'%s' is not an integer", key);
    return bson_iter_as_int64(&it);
}


static const char *get_str(const bson_t *doc, const char *key) {
    bson_iter_t it = field(doc, key);

    cr_assert(BSON_ITER_HOLDS_UTF8(&it), "'%s' is not a string", key);
    return bson_iter_utf8(&it, NULL);
}


/* Element i of the array "results", as a document of its own (caller
 * destroys); NULL past the end. */
static bson_t *result(const bson_t *doc, int i) {
    bson_iter_t it = field(doc, "results");
    bson_iter_t child;
    const uint8_t *data;
    uint32_t len;

    cr_assert(BSON_ITER_HOLDS_ARRAY(&it), "'results' is not an array");
    cr_assert(bson_iter_recurse(&it, &child));
    for (int k = 0; bson_iter_next(&child); k++) {
        if (k == i) {
            cr_assert(BSON_ITER_HOLDS_DOCUMENT(&child));
            bson_iter_document(&child, &len, &data);
            return bson_new_from_data(data, len);
        }
    }
    return NULL;
}


/* ---- without a server ------------------------------------------------ */

/* The CLI refuses the arguments with exit 2, one line on stderr naming the
 * problem and a hint to --help, before it tries to connect. */
static void expect_usage_error(const char *const *args) {
    char addr[64];
    const char *argv[48] = {"--addr", addr};
    size_t n = 2;
    run_t r;

    snprintf(addr, sizeof(addr), "127.0.0.1:%d", h_free_port());
    for (size_t i = 0; args[i] != NULL; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    run_argv(&r, argv);
    cr_expect_eq(r.code, 2, "'%s %s ...': exit %d, stderr: %s", args[0],
                 args[1] ? args[1] : "", r.code, r.err);
    cr_expect_str_empty(r.out);
    cr_expect(strncmp(r.err, "cpstore: ", 9) == 0, "stderr: %s", r.err);
    cr_expect(strstr(r.err, "--help") != NULL, "stderr: %s", r.err);
}


Test(cli_rl, bad_policy_and_check_many_arguments_exit_2) {
    static const char *const cases[][12] = {
        {"ratelimit", "check", "--key", "k", "--policy", "p", "--limit", "5",
         NULL},
        {"ratelimit", "check", "--key", "k", "--policy", "p", "--window", "1m",
         NULL},
        {"ratelimit", "check", "--key", "k", "--policy", "", NULL},
        {"ratelimit", "check", "--policy", "p", NULL},
        {"ratelimit", "check-many", NULL},
        {"ratelimit", "check-many", "extra", "--check", "k:1:1m", NULL},
        {"ratelimit", "check-many", "--check", NULL},
        {"ratelimit", "check-many", "--check", "k", NULL},
        {"ratelimit", "check-many", "--check", "k:10", NULL},
        {"ratelimit", "check-many", "--check", "k:10:60", NULL},
        {"ratelimit", "check-many", "--check", ":10:1m", NULL},
        {"ratelimit", "check-many", "--check", "k@", NULL},
    };
    static const char *const more[][12] = {
        {"ratelimit", "check-many", "--check", "@policy", NULL},
        {"ratelimit", "check-many", "--check", "k:ten:1m", NULL},
        {"ratelimit", "check-many", "--check", "k:1:1m", "--check", "k@p",
         NULL},
        {"ratelimit", "check-many", "--bogus", NULL},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        expect_usage_error(cases[i]);
    }
    for (size_t i = 0; i < sizeof(more) / sizeof(more[0]); i++) {
        expect_usage_error(more[i]);
    }
}


Test(cli_rl, seventeen_checks_exit_2) {
    const char *argv[40] = {"ratelimit", "check-many"};
    char specs[17][32];
    size_t n = 2;

    for (int i = 0; i < 17; i++) {
        snprintf(specs[i], sizeof(specs[i]), "k%d:1:1m", i);
        argv[n++] = "--check";
        argv[n++] = specs[i];
    }
    argv[n] = NULL;
    expect_usage_error(argv);
}


Test(cli_rl, check_many_help_shows_both_forms_and_exits_0) {
    run_t r;

    cli(&r, "ratelimit", "check-many", "--help", NULL);
    expect_exit(&r, 0);
    cr_expect(strncmp(r.out, "Usage: cpstore", 14) == 0, "%s", r.out);
    cr_expect(strstr(r.out, "KEY:LIMIT:WINDOW[:COST]") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, "KEY@POLICY[:COST]") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, "hash tag") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, "--policy NAME") != NULL, "%s", r.out);

    cli(&r, "--help", NULL);
    expect_exit(&r, 0);
    cr_expect(strstr(r.out, "ratelimit check-many") != NULL, "%s", r.out);
}


/* ---- against cpstored ------------------------------------------------ */

static void start_server(void) {
    static const char text[] = "[policy.two_a_minute]\n"
                               "limit = 2\n"
                               "window = 1m\n";
    const char *tmp = getenv("TMPDIR");
    char arg[600];
    const char *args[] = {arg, NULL};
    char name[128];
    FILE *f;

    h_unique(name, sizeof(name), "clirl");
    snprintf(config_path, sizeof(config_path), "%s/%s.ini", tmp ? tmp : "/tmp",
             name);
    f = fopen(config_path, "w");
    cr_assert_not_null(f);
    cr_assert(fputs(text, f) >= 0);
    cr_assert_eq(fclose(f), 0);
    snprintf(arg, sizeof(arg), "--config=%s", config_path);
    h_cpstored_start(&server, args, NULL);
}


static void stop_server(void) {
    h_proc_stop(&server);
    unlink(config_path);
}


TestSuite(cli_rl_server, .init = start_server, .fini = stop_server);


Test(cli_rl_server, check_by_policy_uses_the_servers_limit_and_exit_codes) {
    char key[96];
    bson_t *doc;
    run_t r;

    h_unique(key, sizeof(key), "clipol");
    for (int left = 1; left >= 0; left--) {
        cli(&r, "--addr", server.addr, "--json", "ratelimit", "check", "--key",
            key, "--policy", "two_a_minute", NULL);
        expect_exit(&r, 0);
        doc = json_of(&r);
        cr_expect(get_bool(doc, "allowed"));
        cr_expect_eq(get_int(doc, "limit"), 2);
        cr_expect_eq(get_int(doc, "remaining"), left);
        cr_expect_not(get_bool(doc, "fallback"));
        bson_destroy(doc);
    }
    cli(&r, "--addr", server.addr, "--json", "ratelimit", "check", "--key", key,
        "--policy", "two_a_minute", NULL);
    expect_exit(&r, 1);
    doc = json_of(&r);
    cr_expect_not(get_bool(doc, "allowed"));
    cr_expect_gt(get_int(doc, "retry_after_ms"), 0);
    cr_expect_leq(get_int(doc, "retry_after_ms"), 60000);
    bson_destroy(doc);

    cli(&r, "--addr", server.addr, "ratelimit", "check", "--key", key,
        "--policy", "no_such_policy", NULL);
    expect_exit(&r, 3);
    cr_expect(strncmp(r.err, "NOT_FOUND: ", 11) == 0, "%s", r.err);
}


Test(cli_rl_server, check_many_json_names_the_denying_limit_and_exit_codes) {
    char tag[96], minute[160], login[160];
    char spec_minute[200], spec_login[200];
    bson_t *doc, *res;
    run_t r;

    h_unique(tag, sizeof(tag), "climany");
    snprintf(minute, sizeof(minute), "{%s}:minute", tag);
    snprintf(login, sizeof(login), "{%s}:login", tag);
    snprintf(spec_minute, sizeof(spec_minute), "%s:5:1m", minute);
    snprintf(spec_login, sizeof(spec_login), "%s@two_a_minute:2", login);

    cli(&r, "--addr", server.addr, "--json", "ratelimit", "check-many",
        "--check", spec_minute, "--check", spec_login, NULL);
    expect_exit(&r, 0);
    doc = json_of(&r);
    cr_expect(get_bool(doc, "allowed"));
    cr_expect_eq(get_int(doc, "denied_index"), -1);
    cr_expect_str_empty(get_str(doc, "denied_key"));
    cr_expect_not(get_bool(doc, "fallback"));
    res = result(doc, 0);
    cr_assert_not_null(res);
    cr_expect_str_eq(get_str(res, "key"), minute);
    cr_expect(get_bool(res, "allowed"));
    cr_expect_eq(get_int(res, "limit"), 5);
    cr_expect_eq(get_int(res, "remaining"), 4);
    bson_destroy(res);
    res = result(doc, 1);
    cr_assert_not_null(res);
    cr_expect_str_eq(get_str(res, "key"), login);
    cr_expect_str_eq(get_str(res, "policy"), "two_a_minute");
    cr_expect_eq(get_int(res, "limit"), 2);
    cr_expect_eq(get_int(res, "remaining"), 0);
    bson_destroy(res);
    cr_expect_null(result(doc, 2));
    bson_destroy(doc);

    /* The login limit is full: denied by #1, and #0 keeps its 4. */
    cli(&r, "--addr", server.addr, "--json", "ratelimit", "check-many",
        "--check", spec_minute, "--check", spec_login, NULL);
    expect_exit(&r, 1);
    doc = json_of(&r);
    cr_expect_not(get_bool(doc, "allowed"));
    cr_expect_eq(get_int(doc, "denied_index"), 1);
    cr_expect_str_eq(get_str(doc, "denied_key"), login);
    res = result(doc, 0);
    cr_expect(get_bool(res, "allowed"));
    cr_expect_eq(get_int(res, "remaining"), 4);
    bson_destroy(res);
    res = result(doc, 1);
    cr_expect_not(get_bool(res, "allowed"));
    cr_expect_gt(get_int(res, "retry_after_ms"), 0);
    bson_destroy(res);
    bson_destroy(doc);

    cli(&r, "--addr", server.addr, "--json", "ratelimit", "check", "--key",
        minute, "--limit", "5", "--window", "1m", NULL);
    expect_exit(&r, 0);
    doc = json_of(&r);
    cr_expect_eq(get_int(doc, "remaining"), 3, "the denied call took none");
    bson_destroy(doc);
}


Test(cli_rl_server, check_many_keys_may_hold_colons_and_at_signs) {
    char tag[96], mail[160], spec_mail[200], path[160], spec_path[200];
    bson_t *doc, *res;
    run_t r;

    h_unique(tag, sizeof(tag), "cliat");
    snprintf(mail, sizeof(mail), "{%s}:ann@example.com", tag);
    snprintf(spec_mail, sizeof(spec_mail), "%s:3:1h:2", mail);
    snprintf(path, sizeof(path), "{%s}:a:b@c", tag);
    snprintf(spec_path, sizeof(spec_path), "%s@two_a_minute", path);

    cli(&r, "--addr", server.addr, "--json", "ratelimit", "check-many",
        "--check", spec_mail, "--check", spec_path, NULL);
    expect_exit(&r, 0);
    doc = json_of(&r);
    res = result(doc, 0);
    cr_expect_str_eq(get_str(res, "key"), mail);
    cr_expect_eq(get_int(res, "limit"), 3);
    cr_expect_eq(get_int(res, "remaining"), 1, "cost 2 of 3");
    cr_expect_gt(get_int(res, "reset_after_ms"), 60000, "a window of 1h");
    bson_destroy(res);
    res = result(doc, 1);
    cr_expect_str_eq(get_str(res, "key"), path);
    cr_expect_str_eq(get_str(res, "policy"), "two_a_minute");
    cr_expect_eq(get_int(res, "remaining"), 1);
    bson_destroy(res);
    bson_destroy(doc);
}


Test(cli_rl_server, check_many_reads_readably_without_json) {
    char tag[96], full[160], spec_full[200], free_[160], spec_free[200];
    run_t r;

    h_unique(tag, sizeof(tag), "clitext");
    snprintf(free_, sizeof(free_), "{%s}:free", tag);
    snprintf(spec_free, sizeof(spec_free), "%s:5:1m", free_);
    snprintf(full, sizeof(full), "{%s}:full", tag);
    snprintf(spec_full, sizeof(spec_full), "%s:0:1m", full);

    cli(&r, "--addr", server.addr, "ratelimit", "check-many", "--check",
        spec_free, "--check", spec_full, NULL);
    expect_exit(&r, 1);
    cr_expect(r.out[0] != '{', "%s", r.out);
    cr_expect(strstr(r.out, "allowed:") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, "denied by:") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, full) != NULL, "%s", r.out);
}


Test(cli_rl_server, check_many_rpc_error_exits_3) {
    run_t r;

    cli(&r, "--addr", server.addr, "--json", "ratelimit", "check-many",
        "--check", "k1:100001:1m", NULL);
    expect_exit(&r, 3);
    cr_expect_str_empty(r.out);
    cr_expect(strncmp(r.err, "INVALID_ARGUMENT: ", 18) == 0, "%s", r.err);
    cr_expect(strstr(r.err, "limit is above 100000") != NULL, "%s", r.err);
}


Test(cli_rl_server, check_many_costs_above_1000_in_all_are_refused) {
    char tag[96], a[160], b[160], spec_a[200], spec_b[200];
    bson_t *doc, *res;
    run_t r;

    h_unique(tag, sizeof(tag), "clisum");
    snprintf(a, sizeof(a), "{%s}:a", tag);
    snprintf(b, sizeof(b), "{%s}:b", tag);
    snprintf(spec_a, sizeof(spec_a), "%s:1000:1m:600", a);
    snprintf(spec_b, sizeof(spec_b), "%s:1000:1m:401", b);

    cli(&r, "--addr", server.addr, "--json", "ratelimit", "check-many",
        "--check", spec_a, "--check", spec_b, NULL);
    expect_exit(&r, 3);
    cr_expect_str_empty(r.out);
    cr_expect(strncmp(r.err, "INVALID_ARGUMENT: ", 18) == 0, "%s", r.err);
    cr_expect(strstr(r.err, "1001") != NULL, "%s", r.err);

    /* 600 + 400 is the most one call may take, and nothing was taken
     * before it. */
    snprintf(spec_b, sizeof(spec_b), "%s:1000:1m:400", b);
    cli(&r, "--addr", server.addr, "--json", "ratelimit", "check-many",
        "--check", spec_a, "--check", spec_b, NULL);
    expect_exit(&r, 0);
    doc = json_of(&r);
    res = result(doc, 0);
    cr_expect_eq(get_int(res, "remaining"), 400);
    bson_destroy(res);
    res = result(doc, 1);
    cr_expect_eq(get_int(res, "remaining"), 600);
    bson_destroy(res);
    bson_destroy(doc);
}
