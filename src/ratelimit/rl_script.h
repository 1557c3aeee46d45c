/*
 * The Lua script behind every Redis rate-limit check (see rl_script.c for
 * the design note and the script itself).
 *
 * Calling convention, one key and four arguments:
 *
 *   EVALSHA <sha> 1 <key> <limit> <window_ms> <cost> <request id>
 *
 * <request id> is unique among every request any cpstored instance ever
 * sends ("<instance-random-hex>:<counter>"); the script stores the admitted
 * units of a request of cost c as the members "<request id>:1" ..
 * "<request id>:c". The reply is an array of four integers:
 *
 *   { allowed (0 or 1), remaining, reset_after_ms, retry_after_ms }
 */
#ifndef CPSTORE_RL_SCRIPT_H
#define CPSTORE_RL_SCRIPT_H

#include <stddef.h>

/* The script source, NUL-terminated; static storage. */
extern const char rl_script_source[];

/* strlen(rl_script_source). */
size_t rl_script_len(void);

#endif
