/*
 * The sliding-window script: one check of one key, run atomically by Redis.
 *
 * Design note.
 *
 * A key is a sorted set with one member per admitted unit, scored by its
 * admission time in milliseconds. Counting units rather than requests keeps
 * "at most `limit` units in any trailing window" a single ZCARD, and makes
 * the retry time of a denied request the expiry of one particular unit.
 *
 * - Clock. The time is Redis's own (TIME), floored to whole milliseconds,
 *   never the caller's: cpstored instances on several hosts then agree on
 *   one clock, and all arithmetic below is on integers, so retry_after_ms
 *   is exact rather than rounded. (Redis 5 and later replicate a script by
 *   its effects, so reading TIME before writing is allowed.)
 *
 * - Window. A unit admitted at score s counts while now < s + window and
 *   leaves the window when now >= s + window, so each check first removes
 *   every score <= now - window.
 *
 * - Unique members. Time alone collides: two requests admitted in the same
 *   millisecond would write the same member and the set would count one.
 *   The caller passes an id that is unique per request and the script adds
 *   "<id>:<i>" for i = 1 .. cost. The members are added with ZADD in chunks
 *   of RL_SCRIPT_CHUNK, because Lua's unpack() pushes every element on the
 *   C stack, which holds only a few thousand values.
 *
 * - Only admitted requests are stored. A denied request writes nothing, so
 *   the room it did not fit in stays available to a smaller request.
 *   A cost above the limit can never fit and is denied with
 *   retry_after_ms 0; limit 0 is the case where every cost is above it.
 *
 * - retry_after_ms. A denied request of cost <= limit fits once k more
 *   units have left the window, with k = used + cost - limit. The units
 *   leave in score order, so that moment is the k-th oldest score plus the
 *   window. A retry at or after it is admitted if nothing else was admitted
 *   meanwhile; any earlier retry still sees at least used - (k - 1) units
 *   and is denied.
 *
 * - reset_after_ms is when the newest unit leaves the window (0 when the
 *   set is empty); remaining is limit - used, never negative (a key checked
 *   earlier with a larger limit can hold more than the current one).
 *
 * - Expiry. Whenever the key exists after the check, it gets PEXPIRE
 *   window. The newest score is <= now, so nothing still inside the window
 *   is lost, and no key is ever left without an expiry, denied or not.
 *   (ZREMRANGEBYSCORE deletes a set it empties, so an empty key does not
 *   exist and needs none.) Callers are expected to use one window per key:
 *   a check with a shorter window shortens the expiry for everyone.
 */
#include "rl_script.h"

#include <string.h>

/* Members per ZADD: 2 * 1000 values is well inside Lua's C stack limit. */
#define RL_SCRIPT_CHUNK "1000"

const char rl_script_source[] =
    "local key = KEYS[1]\n"
    "local limit = tonumber(ARGV[1])\n"
    "local window = tonumber(ARGV[2])\n"
    "local cost = tonumber(ARGV[3])\n"
    "local id = ARGV[4]\n"
    "local chunk = " RL_SCRIPT_CHUNK "\n"
    "\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "\n"
    "redis.call('ZREMRANGEBYSCORE', key, '-inf',\n"
    "           string.format('%d', now - window))\n"
    "local used = redis.call('ZCARD', key)\n"
    "\n"
    "local allowed = 0\n"
    "local retry = 0\n"
    "if cost <= limit and used + cost <= limit then\n"
    "    allowed = 1\n"
    "    local score = string.format('%d', now)\n"
    "    local args = {}\n"
    "    for i = 1, cost do\n"
    "        args[#args + 1] = score\n"
    "        args[#args + 1] = id .. ':' .. i\n"
    "        if #args == 2 * chunk or i == cost then\n"
    "            redis.call('ZADD', key, unpack(args))\n"
    "            args = {}\n"
    "        end\n"
    "    end\n"
    "    used = used + cost\n"
    "elseif cost <= limit then\n"
    "    local k = used + cost - limit\n"
    "    local kth = redis.call('ZRANGE', key, k - 1, k - 1, 'WITHSCORES')\n"
    "    retry = tonumber(kth[2]) + window - now\n"
    "end\n"
    "\n"
    "local remaining = 0\n"
    "if used < limit then\n"
    "    remaining = limit - used\n"
    "end\n"
    "\n"
    "local reset = 0\n"
    "if used > 0 then\n"
    "    local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')\n"
    "    reset = tonumber(newest[2]) + window - now\n"
    "    redis.call('PEXPIRE', key, window)\n"
    "end\n"
    "return {allowed, remaining, reset, retry}\n";


size_t rl_script_len(void) {
    return sizeof(rl_script_source) - 1;
}
