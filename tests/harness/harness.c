/*
 * Process management for integration tests. Children are started with
 * fork/exec, their stderr goes to a file under $TMPDIR so a failing test can
 * print it, and they are stopped with SIGTERM (then SIGKILL).
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define H_MAX_ARGS 64


int h_free_port(void) {
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd;
    int port;

    fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0, "socket: %s", strerror(errno));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    cr_assert(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}


static const char *h_env_required(const char *name) {
    const char *v = getenv(name);

    if (v == NULL || *v == '\0') {
        cr_assert_fail(
            "%s is not set: run the suite with scripts/test.sh, which "
            "starts the test servers",
            name);
    }
    return v;
}


const char *h_redis_url(void) {
    return h_env_required("CPSTORE_TEST_REDIS_URL");
}


const char *h_mongo_uri(void) {
    return h_env_required("CPSTORE_TEST_MONGO_URI");
}


void h_unique(char *out, size_t len, const char *prefix) {
    static unsigned counter;
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(out, len, "%s_%d_%lx%lx_%u", prefix, (int)getpid(),
             (unsigned long)ts.tv_sec, (unsigned long)ts.tv_nsec, counter++);
}


int h_wait_port(int port, int timeout_ms) {
    struct sockaddr_in sa;
    int waited = 0;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    while (waited < timeout_ms) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        int ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;

        close(fd);
        if (ok) {
            return 1;
        }
        usleep(20 * 1000);
        waited += 20;
    }
    return 0;
}


static void
h_spawn(h_proc_t *p, const char *const *argv, const char *const *env) {
    static unsigned n;
    const char *tmp = getenv("TMPDIR");
    pid_t parent;
    pid_t pid;

    snprintf(p->log_path, sizeof(p->log_path), "%s/cpstore-test-%d-%u.log",
             tmp ? tmp : "/tmp", (int)getpid(), n++);

    parent = getpid();
    pid = fork();
    cr_assert(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        int fd;

        /* Whatever happens to the test (a failed assertion before its
         * h_proc_stop, a crash, a timeout), its servers die with it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(127);
        }
        fd = open(p->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

        if (fd >= 0) {
            dup2(fd, STDERR_FILENO);
            dup2(fd, STDOUT_FILENO);
            close(fd);
        }
        for (size_t i = 0; env != NULL && env[i] != NULL; i++) {
            char name[128];
            const char *eq = strchr(env[i], '=');
            size_t nlen = eq ? (size_t)(eq - env[i]) : 0;

            if (nlen > 0 && nlen < sizeof(name)) {
                memcpy(name, env[i], nlen);
                name[nlen] = 0;
                setenv(name, eq + 1, 1);
            }
        }
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    p->pid = pid;
}


char *h_proc_log(const h_proc_t *p) {
    FILE *f = fopen(p->log_path, "r");
    char *buf;
    long size;

    if (f == NULL) {
        return strdup("");
    }
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = calloc(1, (size_t)size + 1);
    if (buf != NULL && size > 0 && fread(buf, 1, (size_t)size, f) == 0) {
        buf[0] = '\0';
    }
    fclose(f);
    return buf;
}


static void h_wait_started(h_proc_t *p, const char *what) {
    int status;

    if (h_wait_port(p->port, 15000)) {
        return;
    }
    if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
        p->pid = 0;
    }
    char *log = h_proc_log(p);
    cr_log_error("%s did not start; its output:\n%s", what, log);
    free(log);
    h_proc_stop(p);
    cr_assert_fail("%s did not start on port %d", what, p->port);
}


void h_cpstored_start(h_proc_t *p,
                      const char *const *args,
                      const char *const *env) {
    const char *argv[H_MAX_ARGS];
    char listen[96];
    size_t n = 0;

    memset(p, 0, sizeof(*p));
    p->port = h_free_port();
    snprintf(p->addr, sizeof(p->addr), "127.0.0.1:%d", p->port);
    snprintf(listen, sizeof(listen), "--listen=%s", p->addr);

    argv[n++] = CPSTORED_PATH;
    argv[n++] = listen;
    for (size_t i = 0; args != NULL && args[i] != NULL; i++) {
        cr_assert(n < H_MAX_ARGS - 1);
        argv[n++] = args[i];
    }
    argv[n] = NULL;

    h_spawn(p, argv, env);
    h_wait_started(p, "cpstored");
}


void h_redis_start(h_proc_t *p, int port) {
    char port_s[16];

    memset(p, 0, sizeof(*p));
    p->port = port ? port : h_free_port();
    snprintf(p->addr, sizeof(p->addr), "127.0.0.1:%d", p->port);
    snprintf(port_s, sizeof(port_s), "%d", p->port);

    const char *argv[] = {"redis-server", "--port", port_s, "--bind",
                          "127.0.0.1",    "--save", "",     "--appendonly",
                          "no",           NULL};
    h_spawn(p, argv, NULL);
    h_wait_started(p, "redis-server");
}


int h_proc_stop(h_proc_t *p) {
    int status = 0;

    if (p->pid <= 0) {
        return 0;
    }
    kill(p->pid, SIGTERM);
    for (int i = 0; i < 1000; i++) {
        pid_t r = waitpid(p->pid, &status, WNOHANG);

        if (r == p->pid || (r < 0 && errno == ECHILD)) {
            p->pid = 0;
            return status;
        }
        usleep(10 * 1000);
    }
    kill(p->pid, SIGKILL);
    waitpid(p->pid, &status, 0);
    p->pid = 0;
    return status;
}


cpc_t *h_connect(const h_proc_t *p) {
    char err[256];
    cpc_t *c = cpc_connect(p->addr, 10000, err, sizeof(err));

    cr_assert_not_null(c, "connect to %s: %s", p->addr, err);
    return c;
}


int h_raw_connect(int port) {
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;

    cr_assert(fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0,
              "connect: %s", strerror(errno));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}


int h_raw_write(int fd, const void *buf, size_t len) {
    const uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return 0;
        }
        p += n;
        len -= (size_t)n;
    }
    return 1;
}


/* Read exactly len bytes: 1 done, 0 peer closed, -1 timeout or error. */
static int h_raw_read_exact(int fd, uint8_t *buf, size_t len, int timeout_ms) {
    while (len > 0) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        ssize_t n;

        if (poll(&pfd, 1, timeout_ms) <= 0) {
            return -1;
        }
        n = recv(fd, buf, len, 0);
        if (n == 0) {
            return 0;
        }
        if (n < 0) {
            return errno == ECONNRESET ? 0 : -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 1;
}


int h_raw_read_frame(
    int fd, int timeout_ms, frame_header_t *hdr, uint8_t *payload, size_t cap) {
    uint8_t raw[FRAME_HEADER_SIZE];
    int rc = h_raw_read_exact(fd, raw, sizeof(raw), timeout_ms);

    if (rc != 1) {
        return rc;
    }
    if (frame_decode_header(raw, (uint32_t)cap, hdr) != FRAME_OK) {
        return -1;
    }
    return hdr->length == 0
               ? 1
               : h_raw_read_exact(fd, payload, hdr->length, timeout_ms);
}


int h_raw_wait_closed(int fd, int timeout_ms) {
    uint8_t buf[4096];

    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        ssize_t n;

        if (poll(&pfd, 1, timeout_ms) <= 0) {
            return 0;
        }
        n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            return 1;
        }
        if (n < 0) {
            return 0;
        }
    }
}


int h_ferretdb_start(h_proc_t *p, int port, const char *dir) {
    const char *bin = getenv("CPSTORE_TEST_FERRETDB_BIN");
    char listen[64], sqlite[600], state[600];

    if (bin == NULL || *bin == '\0') {
        return 0;
    }
    memset(p, 0, sizeof(*p));
    p->port = port ? port : h_free_port();
    snprintf(p->addr, sizeof(p->addr), "127.0.0.1:%d", p->port);
    snprintf(listen, sizeof(listen), "--listen-addr=127.0.0.1:%d", p->port);
    snprintf(sqlite, sizeof(sqlite), "--sqlite-url=file:%s/", dir);
    snprintf(state, sizeof(state), "--state-dir=%s", dir);

    const char *argv[] = {
        bin,    "--handler=sqlite",    sqlite,           state,
        listen, "--telemetry=disable", "--debug-addr=-", "--log-level=error",
        NULL};
    h_spawn(p, argv, NULL);
    h_wait_started(p, "ferretdb");
    return 1;
}


int h_run(const char *const *argv,
          const char *const *env,
          int timeout_ms,
          char **output) {
    h_proc_t p;
    int status = 0;

    memset(&p, 0, sizeof(p));
    h_spawn(&p, argv, env);
    for (int waited = 0;; waited += 10) {
        pid_t r = waitpid(p.pid, &status, WNOHANG);

        if (r == p.pid) {
            break;
        }
        if (waited >= timeout_ms) {
            kill(p.pid, SIGKILL);
            waitpid(p.pid, &status, 0);
            break;
        }
        usleep(10 * 1000);
    }
    p.pid = 0;
    if (output != NULL) {
        *output = h_proc_log(&p);
    }
    unlink(p.log_path);
    return status;
}
