/*
 * The sliding-window script: one decision over one or several keys, run
 * atomically by Redis.
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
 *   its effects, so reading TIME before writing is allowed.) One call reads
 *   TIME once, so every key of a call sees the same `now`.
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
 *   C stack, which holds only a few thousand values. The chunk is smaller
 *   than the largest cost, so that the tests reach the chunked path.
 *
 * - Only admitted requests are stored. A denied request writes nothing, so
 *   the room it did not fit in stays available to a smaller request.
 *   A cost above the limit can never fit and is denied with
 *   retry_after_ms 0; limit 0 is the case where every cost is above it.
 *
 * - Several limits, all or nothing. A call names n distinct keys, each with
 *   its own limit, window and cost (a single check is n = 1). The script
 *   first trims and counts every key, and only when every one of them has
 *   room does it add the request's members to all of them; if any key lacks
 *   room it adds nothing anywhere. Redis runs a script without interleaving
 *   any other command, so no other request sees or changes a key between
 *   the counting and the adding: concurrent calls on overlapping keys never
 *   admit more than any one limit allows. The reply reports for each key
 *   whether that limit alone admits the request; the caller names the first
 *   key that does not as the one that denied. Trimming units that have left
 *   the window is not consuming, so a denied call may still trim.
 *   Distinct keys are required because the counting happens before the
 *   adding: a key given twice would be counted once and charged twice.
 *
 * - Redis Cluster. A script may only touch keys of one hash slot, which
 *   Redis Cluster checks from the keys given to EVALSHA. A single check
 *   touches one key and is always safe there. A call over several keys
 *   needs them all in one slot, that is, sharing a hash tag: only the part
 *   between the first "{" and the next "}" is hashed, so
 *   "{user:42}:minute" and "{user:42}:day" go together. (The first tag of
 *   the whole key counts, so the configured key prefix must hold no "{":
 *   the default "cpstore:rl:" holds none.) Keys without a common tag get
 *   CROSSSLOT from the cluster, which reaches the caller as INTERNAL.
 *   (cpstore itself speaks to one Redis endpoint and follows no MOVED
 *   redirection: a cluster sits behind a cluster-aware proxy.)
 *
 * - retry_after_ms. A denied request of cost <= limit fits once k more
 *   units have left the window, with k = used + cost - limit. The units
 *   leave in score order, so that moment is the k-th oldest score plus the
 *   window. A retry at or after it is admitted if nothing else was admitted
 *   meanwhile; any earlier retry still sees at least used - (k - 1) units
 *   and is denied. Each key that denies gets its own; a key that would
 *   admit gets 0.
 *
 * - reset_after_ms is when the newest unit leaves the window (0 when the
 *   set is empty); remaining is limit - used, never negative (a key checked
 *   earlier with a larger limit can hold more than the current one).
 *
 * - Expiry. Whenever a key exists after the call, it gets PEXPIRE
 *   window. The newest score is <= now, so nothing still inside the window
 *   is lost, and no key is ever left without an expiry, denied or not.
 *   (ZREMRANGEBYSCORE deletes a set it empties, so an empty key does not
 *   exist and needs none.) Callers are expected to use one window per key:
 *   a check with a shorter window shortens the expiry for everyone.
 *
 * - Errors. The script trusts its arguments (the backend builds them from
 *   validated requests) and fails, rather than guesses, on anything else.
 */
#include "rl_script.h"

#include <string.h>

/* RL_SCRIPT_CHUNK (rl_script.h) as a string literal. */
#define RL_SCRIPT_STR_(x)   #x
#define RL_SCRIPT_STR(x)    RL_SCRIPT_STR_(x)
#define RL_SCRIPT_CHUNK_STR RL_SCRIPT_STR(RL_SCRIPT_CHUNK)

const char rl_script_source[] =
    "local chunk = " RL_SCRIPT_CHUNK_STR "\n"
    "\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "\n"
    "local n = #KEYS\n"
    "local id = ARGV[3 * n + 1]\n"
    "local limit, window, cost, used = {}, {}, {}, {}\n"
    "local all = true\n"
    "\n"
    "local function fits(i)\n"
    "    return cost[i] <= limit[i] and used[i] + cost[i] <= limit[i]\n"
    "end\n"
    "\n"
    "for i = 1, n do\n"
    "    limit[i] = tonumber(ARGV[3 * i - 2])\n"
    "    window[i] = tonumber(ARGV[3 * i - 1])\n"
    "    cost[i] = tonumber(ARGV[3 * i])\n"
    "    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf',\n"
    "               string.format('%d', now - window[i]))\n"
    "    used[i] = redis.call('ZCARD', KEYS[i])\n"
    "    if not fits(i) then\n"
    "        all = false\n"
    "    end\n"
    "end\n"
    "\n"
    "local function admit(key, c)\n"
    "    local score = string.format('%d', now)\n"
    "    local args = {}\n"
    "    for u = 1, c do\n"
    "        args[#args + 1] = score\n"
    "        args[#args + 1] = id .. ':' .. u\n"
    "        if #args == 2 * chunk or u == c then\n"
    "            redis.call('ZADD', key, unpack(args))\n"
    "            args = {}\n"
    "        end\n"
    "    end\n"
    "end\n"
    "\n"
    "local out = {}\n"
    "for i = 1, n do\n"
    "    local key = KEYS[i]\n"
    "    local allowed = 0\n"
    "    local retry = 0\n"
    "    if fits(i) then\n"
    "        allowed = 1\n"
    "    elseif cost[i] <= limit[i] then\n"
    "        local k = used[i] + cost[i] - limit[i]\n"
    "        local kth = redis.call('ZRANGE', key, k - 1, k - 1,\n"
    "                               'WITHSCORES')\n"
    "        retry = tonumber(kth[2]) + window[i] - now\n"
    "    end\n"
    "    if all then\n"
    "        admit(key, cost[i])\n"
    "        used[i] = used[i] + cost[i]\n"
    "    end\n"
    "\n"
    "    local remaining = 0\n"
    "    if used[i] < limit[i] then\n"
    "        remaining = limit[i] - used[i]\n"
    "    end\n"
    "    local reset = 0\n"
    "    if used[i] > 0 then\n"
    "        local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')\n"
    "        reset = tonumber(newest[2]) + window[i] - now\n"
    "        redis.call('PEXPIRE', key, window[i])\n"
    "    end\n"
    "    out[#out + 1] = allowed\n"
    "    out[#out + 1] = remaining\n"
    "    out[#out + 1] = reset\n"
    "    out[#out + 1] = retry\n"
    "end\n"
    "return out\n";


size_t rl_script_len(void) {
    return sizeof(rl_script_source) - 1;
}
