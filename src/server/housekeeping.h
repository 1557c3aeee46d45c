/*
 * Periodic housekeeping: purge expired tokens (kept past expiry for the
 * reuse-detection window) and sessions, and flush batched API-key usage
 * times. One job at a time on the worker pool; a run that is still going
 * when the timer fires again is not doubled.
 */
#ifndef CPSTORE_HOUSEKEEPING_H
#define CPSTORE_HOUSEKEEPING_H

#include <stdint.h>

#include <uv.h>

#include "server.h"

typedef struct hk hk_t;

/* Start the timer; be must outlive the housekeeper. config is read on the
 * loop thread at each run (purge interval, reuse window), through *config,
 * so a SIGHUP reload takes effect at the next run. */
hk_t *hk_start(uv_loop_t *loop,
               const srv_backends_t *be,
               const cf_file_t *const *config);

/* Run one pass now (tests, and the first pass at start). */
void hk_run(hk_t *hk);

/* Stop the timer; the housekeeper frees itself once its timer is closed
 * and any running job has finished. */
void hk_stop(hk_t *hk);

#endif
