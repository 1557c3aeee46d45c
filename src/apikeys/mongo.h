/*
 * MongoDB access shared by every MongoDB-backed store (API keys, tokens
 * and sessions): one mongoc_client_pool_t per process, the translation of
 * libmongoc errors into cps status codes, the helpers that turn a request
 * deadline into maxTimeMS, and the creation of the stores' indexes.
 *
 * libmongoc blocks, so all of this runs on worker threads, never on the
 * event loop. Every function is thread-safe except mg_open, mg_set_pool_size,
 * mg_close, mg_index_set_new and mg_index_set_free, which run once per
 * process or store, at start and stop.
 *
 * Timeouts. Unless the URI sets them, mg_open sets serverSelectionTimeoutMS
 * and connectTimeoutMS to 2000, so an unreachable server turns into
 * CPS_UNAVAILABLE within about two seconds, and socketTimeoutMS to 10000,
 * so a server that stops answering mid-request cannot hold a worker thread
 * for libmongoc's default of five minutes. Reads carry the request's
 * remaining time as maxTimeMS (mg_max_time_ms). libmongoc 1.23 has no
 * per-operation bound on server selection, so a request whose budget is
 * shorter than the selection timeout may finish after its deadline; the
 * server has then already answered DEADLINE_EXCEEDED and drops the result.
 */
#ifndef CPSTORE_MONGO_H
#define CPSTORE_MONGO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mongoc/mongoc.h>

#define MG_DEFAULT_DB           "cpstore"
#define MG_SELECTION_TIMEOUT_MS 2000
#define MG_CONNECT_TIMEOUT_MS   2000
#define MG_SOCKET_TIMEOUT_MS    10000

typedef struct mg mg_t;

/*
 * Parse uri and create the pool. The database is db_name when not NULL,
 * else the URI's database, else "cpstore". Nothing is contacted yet: an
 * unreachable server is found by the first operation (or mg_ping). NULL on
 * a malformed URI, with a reason in err (the URI's password never is).
 */
mg_t *mg_open(const char *uri, const char *db_name, char *err, size_t err_len);

/*
 * Bound the pool to n clients (n >= 1). The server passes its number of
 * worker threads: each worker holds at most one client at a time, so
 * mg_pop never waits. Call before the first mg_pop. Without this call the
 * pool keeps libmongoc's default (the URI's maxPoolSize, or 100).
 */
void mg_set_pool_size(mg_t *mg, uint32_t n);

/*
 * Borrow a client for one operation and give it back with mg_push on the
 * same thread. NULL only if the pool cannot create a client. A thread
 * holds at most one client at a time.
 */
mongoc_client_t *mg_pop(mg_t *mg);
void mg_push(mg_t *mg, mongoc_client_t *client);

/* The database the stores use. Valid until mg_close. */
const char *mg_database_name(const mg_t *mg);

/* Run {ping: 1} on the admin database. CPS_OK, or the status and a
 * reason in err. */
int mg_ping(mg_t *mg, int timeout_ms, char *err, size_t err_len);

/* Destroy the pool. Every client must have been pushed back. NULL is
 * ignored. */
void mg_close(mg_t *mg);

/*
 * The cps status for a libmongoc error (error API version 2):
 *   server selection, stream, socket, protocol, authentication and
 *   "not primary" or shutdown errors   CPS_UNAVAILABLE
 *   maxTimeMS exceeded (code 50)       CPS_DEADLINE_EXCEEDED
 *   duplicate key (11000)              CPS_ALREADY_EXISTS
 *   write concern errors               CPS_UNAVAILABLE
 *   anything else                      CPS_INTERNAL
 */
int mg_status(const bson_error_t *error);

/*
 * Write "<what>: <message>" into err, and return mg_status(error). A
 * duplicate key message is replaced by a fixed text, because the server
 * quotes the duplicated value in it.
 */
int mg_error(const bson_error_t *error,
             const char *what,
             char *err,
             size_t err_len);

/*
 * The maxTimeMS for an operation that must end by deadline_mono_ms (on
 * clock_mono_ms()): CPS_OK with *max_time_ms = remaining ms (0 when there
 * is no deadline), or CPS_DEADLINE_EXCEEDED when none is left.
 */
int mg_max_time_ms(int64_t deadline_mono_ms, int64_t *max_time_ms);

/*
 * Indexes. A store describes its indexes as mg_index_t values and creates
 * them through an mg_index_set_t: lazily, once, one thread at a time.
 *
 * One createIndexes command per index: FerretDB 1.24 drops the connection
 * when a single command lists several indexes that all exist already,
 * which is what every start after the first sends. An index that exists
 * with the same definition is no error, on MongoDB and FerretDB alike, so
 * the same indexes are asked for again on every start.
 *
 * TTL indexes: MongoDB has them; FerretDB v1 answers NotImplemented.
 * mg_create_index() tells that answer apart for a caller that asks; what
 * to do then (a plain index instead, or nothing) is the store's decision.
 */

#define MG_INDEX_MAX_KEYS 3

/* One field of an index key. */
typedef struct mg_index_key {
    const char *field; /* NULL after the last field */
    int dir;           /* negative: descending; otherwise ascending */
} mg_index_key_t;

/* One index; plain data, usually a static table. */
typedef struct mg_index {
    const char *collection;
    const char *name;
    mg_index_key_t keys[MG_INDEX_MAX_KEYS]; /* keys[0].field is required */
    bool unique;
    /* A TTL index with expireAfterSeconds 0: each document expires at the
     * date in its keys[0] field. */
    bool ttl;
} mg_index_t;

/* The number of entries of a static table of indexes. */
#define MG_INDEX_COUNT(table) (sizeof(table) / sizeof((table)[0]))

/*
 * Create one index with a createIndexes command of its own, carrying the
 * time left before deadline_mono_ms (0: none) as maxTimeMS. CPS_OK when
 * the index exists afterwards, whether or not it existed before. Else a
 * reason ("create index <name> on <collection>: ...") in err and
 * CPS_DEADLINE_EXCEEDED when no time is left, CPS_UNAVAILABLE when no
 * client can be had, or mg_error()'s status for the server's answer.
 *
 * ttl_supported may be NULL. Otherwise it receives 1, except when idx is
 * a TTL index and the server answers NotImplemented (FerretDB v1): then it
 * receives 0, and the call returns CPS_UNIMPLEMENTED with err untouched,
 * for the caller to make do without. Without ttl_supported that answer is
 * an error like any other.
 */
int mg_create_index(mg_t *mg,
                    const mg_index_t *idx,
                    int64_t deadline_mono_ms,
                    int *ttl_supported,
                    char *err,
                    size_t err_len);

/*
 * What a store creates beyond its list of indexes (the TTL indexes, whose
 * handling differs from store to store). It runs under the set's lock on
 * every mg_ensure_indexes() once the list exists, so it keeps its own
 * record of what is done and returns CPS_OK at once when nothing is left.
 * Its status is mg_ensure_indexes()'s.
 */
typedef int (*mg_index_hook_t)(void *arg,
                               int64_t deadline_mono_ms,
                               char *err,
                               size_t err_len);

typedef struct mg_index_set mg_index_set_t;

/*
 * The indexes of one store: the n entries of indexes, created in order,
 * then hook (NULL: none) with arg. mg, indexes and arg are borrowed and
 * must outlive the set. The first attempt is made here, without a
 * deadline, so hook may run before this returns. A server that cannot be
 * reached then (CPS_UNAVAILABLE, CPS_DEADLINE_EXCEEDED) is not an error:
 * the set is returned with err emptied, and the indexes come with the
 * first mg_ensure_indexes(). Any other failure (the server refuses an
 * index, or out of memory) gives NULL, with a reason in err. Free with
 * mg_index_set_free().
 */
mg_index_set_t *mg_index_set_new(mg_t *mg,
                                 const mg_index_t *indexes,
                                 size_t n,
                                 mg_index_hook_t hook,
                                 void *arg,
                                 char *err,
                                 size_t err_len);

/*
 * Create the set's indexes unless that is done: CPS_OK, or the first
 * failure (mg_create_index()'s or the hook's) with its reason in err. One
 * thread at a time: the others wait for its answer rather than repeat the
 * commands. After a failure the next call tries again.
 */
int mg_ensure_indexes(mg_index_set_t *set,
                      int64_t deadline_mono_ms,
                      char *err,
                      size_t err_len);

/* NULL is ignored. */
void mg_index_set_free(mg_index_set_t *set);

#endif
