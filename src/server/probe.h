/*
 * Start-up reachability probes for the production profile: before serving,
 * cpstored makes sure Redis answers PING and MongoDB answers ping, and
 * refuses to start with a one-line reason otherwise. These block; they run
 * before the event loop starts.
 */
#ifndef CPSTORE_PROBE_H
#define CPSTORE_PROBE_H

#include <stddef.h>

/* CPS_OK, or CPS_UNAVAILABLE / CPS_INVALID_ARGUMENT with a reason that
 * never contains the URL's password. */
int probe_redis(const char *url, int timeout_ms, char *err, size_t err_len);

#endif
