/*
 * Test harness: start and stop the processes an integration test needs.
 *
 * Every process started here is stopped by h_proc_stop(); a test that
 * starts one stops it in its own body or fini, so nothing outlives the test.
 * Failures call cr_fatal/cr_assert, so these functions return only on
 * success.
 */
#ifndef CPSTORE_TEST_HARNESS_H
#define CPSTORE_TEST_HARNESS_H

#include <stdint.h>
#include <sys/types.h>

#include "cpstore_client.h"
#include "frame.h"

typedef struct h_proc {
    pid_t pid;
    int port;
    char addr[64];      /* "127.0.0.1:port" */
    char log_path[512]; /* stderr of the process, kept for a failed test */
} h_proc_t;

/* A TCP port on 127.0.0.1 that was free a moment ago. */
int h_free_port(void);

/* Value of an environment variable the test suite needs; a test that needs
 * it fails with a message naming scripts/test.sh when it is unset. */
const char *h_redis_url(void);
const char *h_mongo_uri(void);

/* A name unique across processes and runs: prefix, pid, time, counter. */
void h_unique(char *out, size_t len, const char *prefix);

/*
 * Start cpstored on a free port with the given extra arguments
 * (NULL-terminated, may be NULL) and extra environment entries ("K=V",
 * NULL-terminated, may be NULL), and wait until it accepts connections.
 */
void h_cpstored_start(h_proc_t *p,
                      const char *const *args,
                      const char *const *env);

/* Start redis-server on `port` (0: a free one), without persistence. */
void h_redis_start(h_proc_t *p, int port);

/*
 * Start FerretDB (the binary in CPSTORE_TEST_FERRETDB_BIN) on `port`
 * (0: a free one) with its SQLite files in dir, which is kept between
 * starts so a restart on the same port and dir finds the same data. Returns
 * false when CPSTORE_TEST_FERRETDB_BIN is unset (a real MongoDB is in use).
 */
int h_ferretdb_start(h_proc_t *p, int port, const char *dir);

/*
 * Run a program to completion (at most timeout_ms, then SIGKILL) with
 * extra environment entries; its stdout and stderr together go to *output
 * (caller frees). Returns the waitpid status.
 */
int h_run(const char *const *argv,
          const char *const *env,
          int timeout_ms,
          char **output);

/* SIGTERM, wait up to 10 s, then SIGKILL. Returns the exit status as
 * waitpid reports it. Safe to call twice. */
int h_proc_stop(h_proc_t *p);

/* Wait until something accepts on 127.0.0.1:port; false on timeout. */
int h_wait_port(int port, int timeout_ms);

/* Connect a client to p (fails the test on error). */
cpc_t *h_connect(const h_proc_t *p);

/* A plain blocking TCP socket to 127.0.0.1:port (fails the test). */
int h_raw_connect(int port);

/* Write all of buf; false if the peer is gone. */
int h_raw_write(int fd, const void *buf, size_t len);

/*
 * Read one frame within timeout_ms into *hdr and payload (at most cap
 * bytes). Returns 1 on a frame, 0 when the peer closed, -1 on timeout or
 * error.
 */
int h_raw_read_frame(
    int fd, int timeout_ms, frame_header_t *hdr, uint8_t *payload, size_t cap);

/* True when the peer closes the connection within timeout_ms (any frames
 * before the close are skipped). */
int h_raw_wait_closed(int fd, int timeout_ms);

/* Contents of the process's captured stderr (caller frees). */
char *h_proc_log(const h_proc_t *p);

#endif
