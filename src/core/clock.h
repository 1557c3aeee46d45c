/*
 * Clocks. Wall-clock times (expiry, creation) are UTC milliseconds since the
 * Unix epoch and never depend on the local time zone. Timeouts and deadlines
 * use the monotonic clock.
 */
#ifndef CPSTORE_CLOCK_H
#define CPSTORE_CLOCK_H

#include <stdint.h>

/* UTC wall clock, milliseconds since the epoch. */
int64_t clock_now_ms(void);

/* Monotonic clock, milliseconds from an arbitrary origin. */
int64_t clock_mono_ms(void);

#endif
