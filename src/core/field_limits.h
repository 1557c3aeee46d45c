/*
 * Bounds on request fields, enforced by the server before any work. The
 * client library's nanopb options (the .options files in proto/cpstore/v1/)
 * give each string one byte more, for nanopb's terminating NUL, so the
 * client can send and read back exactly what the server accepts.
 */
#ifndef CPSTORE_FIELD_LIMITS_H
#define CPSTORE_FIELD_LIMITS_H

#define LIM_RL_KEY_MAX   512
#define LIM_RL_LIMIT_MAX 100000ull
/* The cost of one check, and of all the checks of a CheckMany together. */
#define LIM_RL_COST_MAX      1000ull
#define LIM_RL_WINDOW_MAX_MS (366ull * 24 * 3600 * 1000)
#define LIM_RL_CHECKS_MAX    16 /* limits in one CheckMany */

#define LIM_ID_MAX         256 /* user, org, project ids; key name */
#define LIM_SCOPE_MAX      128
#define LIM_SCOPES_MAX     32
#define LIM_META_KEY_MAX   64
#define LIM_META_VALUE_MAX 512
#define LIM_META_MAX       16
#define LIM_API_KEY_MAX    256 /* longest key Verify looks up */

#endif
