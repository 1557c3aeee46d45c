/*
 * Housekeeping on a timer. Storage work blocks, so each pass is a worker
 * job; the loop thread only decides when to run and logs the outcome.
 * Failures are logged once when they start and once when they clear, not
 * on every pass, so a database outage does not flood the log.
 */
#include "housekeeping.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apikeys.h"
#include "clock.h"
#include "log.h"
#include "sessions.h"
#include "status.h"
#include "tokens.h"
#include "worker.h"

#define HK_PASS_BUDGET_MS 30000

typedef struct hk_job {
    wk_job_t job;
    hk_t *hk;
    uint64_t reuse_window_ms;
    uint64_t tokens_removed;
    uint64_t sessions_removed;
    int status;
    char err[256];
} hk_job_t;

struct hk {
    uv_timer_t timer;
    const srv_backends_t *be;
    const cf_file_t *const *config;
    bool running;
    bool stopping;
    bool timer_closed;
    bool failing;
    uint64_t interval_ms;
};


static void hk_maybe_free(hk_t *hk) {
    if (hk->stopping && hk->timer_closed && !hk->running) {
        free(hk);
    }
}


/* Keep the first failure of a pass; later steps still run. */
static void hk_note(hk_job_t *j, int rc, const char *what, const char *err) {
    if (rc != CPS_OK && j->status == CPS_OK) {
        j->status = rc;
        snprintf(j->err, sizeof(j->err), "%s: %s", what, err);
    }
}


static void hk_work(wk_job_t *job) {
    hk_job_t *j = (hk_job_t *)job;
    const srv_backends_t *be = j->hk->be;
    int64_t deadline = clock_mono_ms() + HK_PASS_BUDGET_MS;
    int64_t now = clock_now_ms();
    char err[200];
    int rc;

    j->status = CPS_OK;
    if (be->tokens != NULL) {
        rc = tk_purge(be->tokens, now, j->reuse_window_ms, deadline,
                      &j->tokens_removed, err, sizeof(err));
        hk_note(j, rc, "purge tokens", err);
    }
    if (be->sessions != NULL) {
        rc = ss_purge(be->sessions, now, deadline, &j->sessions_removed, err,
                      sizeof(err));
        hk_note(j, rc, "purge sessions", err);
    }
    if (be->apikeys != NULL) {
        rc = ak_flush_usage(be->apikeys, deadline, err, sizeof(err));
        hk_note(j, rc, "flush key usage", err);
    }
}


static void hk_done(wk_job_t *job) {
    hk_job_t *j = (hk_job_t *)job;
    hk_t *hk = j->hk;

    hk->running = false;
    if (j->status != CPS_OK) {
        if (!hk->failing) {
            log_warn("housekeeping failed status=%s reason=\"%s\"",
                     cps_status_name(j->status), j->err);
        }
        hk->failing = true;
    } else {
        if (hk->failing) {
            log_info("housekeeping works again");
        }
        hk->failing = false;
        if (j->tokens_removed > 0 || j->sessions_removed > 0) {
            log_debug("housekeeping purged tokens=%llu sessions=%llu",
                      (unsigned long long)j->tokens_removed,
                      (unsigned long long)j->sessions_removed);
        }
    }
    free(j);
    hk_maybe_free(hk);
}


void hk_run(hk_t *hk) {
    hk_job_t *j;

    if (hk->running || hk->stopping) {
        return;
    }
    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        return;
    }
    j->job.work = hk_work;
    j->job.done = hk_done;
    j->hk = hk;
    j->reuse_window_ms = (*hk->config)->token_reuse_window_ms;
    hk->running = true;
    wk_submit(hk->be->workers, &j->job);
}


static void hk_timer_cb(uv_timer_t *timer) {
    hk_t *hk = timer->data;
    uint64_t interval = (*hk->config)->purge_interval_ms;

    hk_run(hk);
    if (interval != hk->interval_ms) {
        hk->interval_ms = interval;
        uv_timer_start(&hk->timer, hk_timer_cb, interval, interval);
    }
}


hk_t *hk_start(uv_loop_t *loop,
               const srv_backends_t *be,
               const cf_file_t *const *config) {
    hk_t *hk = calloc(1, sizeof(*hk));

    if (hk == NULL) {
        return NULL;
    }
    hk->be = be;
    hk->config = config;
    hk->interval_ms = (*config)->purge_interval_ms;
    uv_timer_init(loop, &hk->timer);
    hk->timer.data = hk;
    /* The timer does not keep the loop alive on its own. */
    uv_unref((uv_handle_t *)&hk->timer);
    uv_timer_start(&hk->timer, hk_timer_cb, hk->interval_ms, hk->interval_ms);
    return hk;
}


static void hk_timer_closed(uv_handle_t *handle) {
    hk_t *hk = handle->data;

    hk->timer_closed = true;
    hk_maybe_free(hk);
}


void hk_stop(hk_t *hk) {
    hk->stopping = true;
    uv_close((uv_handle_t *)&hk->timer, hk_timer_closed);
}
