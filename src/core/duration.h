/*
 * Durations as people write them on a command line or in a config file:
 * a decimal count of whole units followed by one unit.
 *
 *   ms   milliseconds        250ms
 *   s    seconds             10s
 *   m    minutes             5m
 *   h    hours               1h
 *   d    days (24 h)         30d
 *
 * A number without a unit is refused, except "0": whether "30" means
 * seconds or milliseconds is a guess, and a wrong guess silently turns a
 * timeout into something a thousand times too short or too long. Signs,
 * spaces, fractions, compound forms ("1h30m"), upper-case units and values
 * beyond UINT64_MAX milliseconds are refused too, so a typo is an error
 * rather than a surprise. Callers check the range they can use.
 */
#ifndef CPSTORE_DURATION_H
#define CPSTORE_DURATION_H

#include <stddef.h>
#include <stdint.h>

/* Room for any formatted duration: 20 digits, "ms" and the NUL. */
#define DURATION_BUF_SIZE 24

/*
 * Parse s into milliseconds. Returns CPS_OK with *ms set, or
 * CPS_INVALID_ARGUMENT (s empty, NULL, malformed, or out of range), leaving
 * *ms untouched.
 */
int duration_parse(const char *s, uint64_t *ms);

/*
 * Write ms in the largest unit that divides it exactly ("90m", "1500ms",
 * "0ms"), so duration_parse() reads back the same value. Returns CPS_OK, or
 * CPS_OUT_OF_RANGE when buf (len bytes, DURATION_BUF_SIZE always suffices)
 * is too small, in which case buf holds an empty string if len > 0.
 */
int duration_format(uint64_t ms, char *buf, size_t len);

#endif
