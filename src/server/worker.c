/*
 * Worker pool. Two singly linked FIFO queues guarded by one mutex: `todo`
 * feeds the threads, `finished` feeds the loop. Threads sleep on a condition
 * variable; the loop is woken with uv_async_send, which coalesces, so the
 * async callback drains the whole finished queue each time.
 */
#include "worker.h"

#include <pthread.h>
#include <stdlib.h>

#define WK_MAX_THREADS 64

typedef struct wk_queue {
    wk_job_t *head;
    wk_job_t *tail;
} wk_queue_t;

struct wk_pool {
    uv_loop_t *loop;
    uv_async_t async;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    wk_queue_t todo;
    wk_queue_t finished;
    unsigned pending;
    int stopping;
    int nthreads;
    pthread_t threads[WK_MAX_THREADS];
};


static void wk_queue_push(wk_queue_t *q, wk_job_t *job) {
    job->next = NULL;
    if (q->tail != NULL) {
        q->tail->next = job;
    } else {
        q->head = job;
    }
    q->tail = job;
}


static wk_job_t *wk_queue_take_all(wk_queue_t *q) {
    wk_job_t *head = q->head;

    q->head = NULL;
    q->tail = NULL;
    return head;
}


static void *wk_thread_main(void *arg) {
    wk_pool_t *pool = arg;
    wk_job_t *job;

    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (pool->todo.head == NULL && !pool->stopping) {
            pthread_cond_wait(&pool->cond, &pool->lock);
        }
        if (pool->todo.head == NULL) {
            break;
        }
        job = pool->todo.head;
        pool->todo.head = job->next;
        if (pool->todo.head == NULL) {
            pool->todo.tail = NULL;
        }
        pthread_mutex_unlock(&pool->lock);

        job->work(job);

        pthread_mutex_lock(&pool->lock);
        wk_queue_push(&pool->finished, job);
        pthread_mutex_unlock(&pool->lock);
        uv_async_send(&pool->async);
        pthread_mutex_lock(&pool->lock);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}


static void wk_drain(wk_pool_t *pool) {
    wk_job_t *job;
    wk_job_t *next;

    pthread_mutex_lock(&pool->lock);
    job = wk_queue_take_all(&pool->finished);
    pthread_mutex_unlock(&pool->lock);

    for (; job != NULL; job = next) {
        next = job->next;
        pool->pending--;
        job->done(job);
    }
}


static void wk_async_cb(uv_async_t *handle) {
    wk_drain(handle->data);
}


wk_pool_t *wk_pool_new(uv_loop_t *loop, int n) {
    wk_pool_t *pool;

    if (n < 1 || n > WK_MAX_THREADS) {
        return NULL;
    }
    pool = calloc(1, sizeof(*pool));
    if (pool == NULL) {
        return NULL;
    }
    pool->loop = loop;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->cond, NULL);
    if (uv_async_init(loop, &pool->async, wk_async_cb) != 0) {
        goto fail_sync;
    }
    pool->async.data = pool;

    for (pool->nthreads = 0; pool->nthreads < n; pool->nthreads++) {
        if (pthread_create(&pool->threads[pool->nthreads], NULL, wk_thread_main,
                           pool) != 0) {
            break;
        }
    }
    if (pool->nthreads == 0) {
        /* The async handle is open, so teardown must go through close. */
        wk_pool_close(pool);
        return NULL;
    }
    return pool;

fail_sync:
    pthread_cond_destroy(&pool->cond);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
    return NULL;
}


void wk_submit(wk_pool_t *pool, wk_job_t *job) {
    pthread_mutex_lock(&pool->lock);
    wk_queue_push(&pool->todo, job);
    pool->pending++;
    pthread_cond_signal(&pool->cond);
    pthread_mutex_unlock(&pool->lock);
}


unsigned wk_pending(const wk_pool_t *pool) {
    return pool->pending;
}


static void wk_closed_cb(uv_handle_t *handle) {
    wk_pool_t *pool = handle->data;

    pthread_cond_destroy(&pool->cond);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
}


void wk_pool_close(wk_pool_t *pool) {
    pthread_mutex_lock(&pool->lock);
    pool->stopping = 1;
    pthread_cond_broadcast(&pool->cond);
    pthread_mutex_unlock(&pool->lock);

    for (int i = 0; i < pool->nthreads; i++) {
        pthread_join(pool->threads[i], NULL);
    }
    wk_drain(pool);
    uv_close((uv_handle_t *)&pool->async, wk_closed_cb);
}
