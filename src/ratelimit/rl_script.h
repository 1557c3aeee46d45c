/*
 * The Lua script behind every Redis rate-limit check, of one limit or of
 * several at once (see rl_script.c for the design note and the script
 * itself).
 *
 * Calling convention, n keys (1 <= n <= RL_MANY_MAX) followed by three
 * arguments per key and a request id:
 *
 *   EVALSHA <sha> <n> <key 1> .. <key n>
 *           <limit 1> <window_ms 1> <cost 1> .. <limit n> <window_ms n>
 *           <cost n> <request id>
 *
 * A single check is the case n = 1. <request id> is unique among every
 * request any cpstored instance ever sends ("<instance-random-hex>:
 * <counter>"); a request of cost c stores the members "<request id>:1" ..
 * "<request id>:c" in each key it is admitted on. The keys must be
 * distinct. The reply is an array of four integers per key, in key order:
 *
 *   { allowed (0 or 1), remaining, reset_after_ms, retry_after_ms }
 *
 * where `allowed` of one key says whether that limit alone admits the
 * request: the request was admitted, on every key, exactly when all of
 * them are 1, and otherwise nothing was stored anywhere.
 */
#ifndef CPSTORE_RL_SCRIPT_H
#define CPSTORE_RL_SCRIPT_H

#include <stddef.h>

/* Members the script adds per ZADD: 2 * 256 values is well inside Lua's C
 * stack limit. Below LIM_RL_COST_MAX, so a large cost takes several. */
#define RL_SCRIPT_CHUNK 256

/* The script source, NUL-terminated; static storage. */
extern const char rl_script_source[];

/* strlen(rl_script_source). */
size_t rl_script_len(void);

#endif
