/*
 * Dedicated worker threads for blocking calls (libmongoc), so that nothing
 * on the request path blocks the event loop.
 *
 * A job's work() runs on one of the pool's threads; its done() then runs on
 * the loop thread, woken through uv_async_send. The pool does not own jobs:
 * the caller allocates a job (usually embedded in a larger struct) and frees
 * it in done(). libuv's own threadpool is not used because it is shared with
 * DNS and file work and sized once per process.
 */
#ifndef CPSTORE_WORKER_H
#define CPSTORE_WORKER_H

#include <uv.h>

typedef struct wk_job wk_job_t;

struct wk_job {
    void (*work)(wk_job_t *job); /* worker thread */
    void (*done)(wk_job_t *job); /* loop thread, after work() */
    wk_job_t *next;              /* owned by the pool while queued */
};

typedef struct wk_pool wk_pool_t;

/* Start n threads (1..64). NULL on failure. */
wk_pool_t *wk_pool_new(uv_loop_t *loop, int n);

/* Queue a job. Call on the loop thread only. */
void wk_submit(wk_pool_t *pool, wk_job_t *job);

/* Jobs queued or running. */
unsigned wk_pending(const wk_pool_t *pool);

/*
 * Let queued jobs finish, join the threads, run the last done() callbacks
 * and close the async handle. The pool frees itself once the handle is
 * closed; it must not be used after this call.
 */
void wk_pool_close(wk_pool_t *pool);

#endif
