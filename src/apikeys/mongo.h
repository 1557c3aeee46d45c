/*
 * MongoDB access shared by every MongoDB-backed store (API keys now,
 * tokens and sessions later): one mongoc_client_pool_t per process, the
 * translation of libmongoc errors into cps status codes, and the helpers
 * that turn a request deadline into maxTimeMS.
 *
 * libmongoc blocks, so all of this runs on worker threads, never on the
 * event loop. Every function is thread-safe except mg_open, mg_set_pool_size
 * and mg_close, which run once at start and stop.
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

#endif
