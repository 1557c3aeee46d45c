/*
 * The process's MongoDB client pool, the one place where libmongoc's
 * errors become cps status codes, and the stores' index creation (its
 * note, on one index per command and on TTL indexes, is in mongo.h).
 *
 * mongoc_init() runs once per process, on the first mg_open(), after
 * libmongoc's log is routed into cpstore's (mg_log_handler). It is never
 * undone: libmongoc cannot be initialised again after mongoc_cleanup(), and
 * other modules (tokens, sessions, tests) may open their own pools later.
 *
 * The pool uses error API version 2, so every error the server returns
 * arrives in the MONGOC_ERROR_SERVER domain with the server's own code,
 * whatever the operation; mg_status() relies on that.
 */
#include "mongo.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "status.h"

#define MG_APPNAME "cpstored"

/* Server error codes (MongoDB's error_codes.yml) that mean "try another
 * time or another server" rather than "this request is wrong". */
#define MG_CODE_HOST_UNREACHABLE         6
#define MG_CODE_HOST_NOT_FOUND           7
#define MG_CODE_MAX_TIME_MS_EXPIRED      50
#define MG_CODE_NETWORK_TIMEOUT          89
#define MG_CODE_SHUTDOWN_IN_PROGRESS     91
#define MG_CODE_PRIMARY_STEPPED_DOWN     189
#define MG_CODE_NOT_IMPLEMENTED          238
#define MG_CODE_EXCEEDED_TIME_LIMIT      262
#define MG_CODE_SOCKET_EXCEPTION         9001
#define MG_CODE_NOT_WRITABLE_PRIMARY     10107
#define MG_CODE_DUPLICATE_KEY            11000
#define MG_CODE_DUPLICATE_KEY_UPDATE     11001
#define MG_CODE_INTERRUPTED_SHUTDOWN     11600
#define MG_CODE_INTERRUPTED_REPL         11602
#define MG_CODE_DUPLICATE_KEY_INDEX      12582
#define MG_CODE_NOT_PRIMARY_NO_OK        13435
#define MG_CODE_NOT_PRIMARY_OR_SECONDARY 13436

struct mg {
    mongoc_client_pool_t *pool;
    mongoc_uri_t *uri;
    char *db;
};

struct mg_index_set {
    mg_t *mg;
    const mg_index_t *indexes; /* borrowed */
    size_t n;
    mg_index_hook_t hook;
    void *arg;
    pthread_mutex_t lock;
    bool ready; /* under lock: every index of the list exists */
};

static pthread_once_t mg_init_once = PTHREAD_ONCE_INIT;


/*
 * libmongoc's own messages go through cpstore's log, never straight to
 * stdout: warnings and worse at warn, the rest (the Debian build emits
 * DEBUG lines from its server monitors) only when debug is on. Trace
 * output stays off. The messages name hosts and commands, never documents.
 */
static void mg_log_handler(mongoc_log_level_t level,
                           const char *domain,
                           const char *message,
                           void *user_data) {
    (void)user_data;
    /* FerretDB v1 has no endSessions, which libmongoc sends when a pool
     * closes; its complaint is expected there and says nothing. */
    if (level == MONGOC_LOG_LEVEL_WARNING &&
        strstr(message, "endSessions") != NULL) {
        level = MONGOC_LOG_LEVEL_DEBUG;
    }
    if (level <= MONGOC_LOG_LEVEL_WARNING) {
        log_warn("mongoc domain=%s msg=\"%s\"", domain, message);
    } else if (level != MONGOC_LOG_LEVEL_TRACE) {
        log_debug("mongoc domain=%s msg=\"%s\"", domain, message);
    }
}


static void mg_init(void) {
    mongoc_log_set_handler(mg_log_handler, NULL);
    mongoc_log_trace_disable();
    mongoc_init();
}


static void mg_set_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));


static void mg_set_err(char *err, size_t err_len, const char *fmt, ...) {
    va_list ap;

    if (err == NULL || err_len == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}


/* Set an integer URI option unless the URI already names it. */
static void mg_default_option(mongoc_uri_t *uri, const char *name, int value) {
    if (!mongoc_uri_has_option(uri, name)) {
        mongoc_uri_set_option_as_int32(uri, name, value);
    }
}


static mongoc_uri_t *
mg_parse_uri(const char *uri_string, char *err, size_t err_len) {
    bson_error_t error;
    mongoc_uri_t *uri;

    uri = mongoc_uri_new_with_error(uri_string, &error);
    if (uri == NULL) {
        /* libmongoc may quote part of the URI; never risk echoing
         * credentials into a log line. */
        if (strchr(uri_string, '@') != NULL) {
            mg_set_err(err, err_len, "invalid MongoDB URI");
        } else {
            mg_set_err(err, err_len, "invalid MongoDB URI: %s", error.message);
        }
        return NULL;
    }

    mg_default_option(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS,
                      MG_SELECTION_TIMEOUT_MS);
    mg_default_option(uri, MONGOC_URI_CONNECTTIMEOUTMS, MG_CONNECT_TIMEOUT_MS);
    mg_default_option(uri, MONGOC_URI_SOCKETTIMEOUTMS, MG_SOCKET_TIMEOUT_MS);
    if (mongoc_uri_get_appname(uri) == NULL) {
        mongoc_uri_set_appname(uri, MG_APPNAME);
    }
    return uri;
}


mg_t *mg_open(const char *uri_string,
              const char *db_name,
              char *err,
              size_t err_len) {
    bson_error_t error;
    const char *db;
    mg_t *mg;

    pthread_once(&mg_init_once, mg_init);

    mg = calloc(1, sizeof(*mg));
    if (mg == NULL) {
        mg_set_err(err, err_len, "out of memory");
        return NULL;
    }
    mg->uri = mg_parse_uri(uri_string, err, err_len);
    if (mg->uri == NULL) {
        goto fail;
    }

    db = db_name;
    if (db == NULL || *db == '\0') {
        db = mongoc_uri_get_database(mg->uri);
    }
    if (db == NULL || *db == '\0') {
        db = MG_DEFAULT_DB;
    }
    mg->db = strdup(db);
    if (mg->db == NULL) {
        mg_set_err(err, err_len, "out of memory");
        goto fail;
    }

    mg->pool = mongoc_client_pool_new_with_error(mg->uri, &error);
    if (mg->pool == NULL) {
        mg_set_err(err, err_len, "mongoc_client_pool_new: %s", error.message);
        goto fail;
    }
    mongoc_client_pool_set_error_api(mg->pool, MONGOC_ERROR_API_VERSION_2);
    return mg;

fail:
    mg_close(mg);
    return NULL;
}


void mg_set_pool_size(mg_t *mg, uint32_t n) {
    if (n > 0) {
        mongoc_client_pool_max_size(mg->pool, n);
    }
}


mongoc_client_t *mg_pop(mg_t *mg) {
    return mongoc_client_pool_pop(mg->pool);
}


void mg_push(mg_t *mg, mongoc_client_t *client) {
    if (client != NULL) {
        mongoc_client_pool_push(mg->pool, client);
    }
}


const char *mg_database_name(const mg_t *mg) {
    return mg->db;
}


int mg_ping(mg_t *mg, int timeout_ms, char *err, size_t err_len) {
    mongoc_client_t *client;
    bson_error_t error;
    bson_t cmd = BSON_INITIALIZER;
    bson_t reply;
    int rc = CPS_OK;

    client = mg_pop(mg);
    if (client == NULL) {
        mg_set_err(err, err_len, "ping: no MongoDB client available");
        bson_destroy(&cmd);
        return CPS_UNAVAILABLE;
    }
    BSON_APPEND_INT32(&cmd, "ping", 1);
    if (timeout_ms > 0) {
        BSON_APPEND_INT64(&cmd, "maxTimeMS", timeout_ms);
    }
    if (!mongoc_client_command_simple(client, "admin", &cmd, NULL, &reply,
                                      &error)) {
        rc = mg_error(&error, "ping", err, err_len);
    }
    bson_destroy(&reply);
    bson_destroy(&cmd);
    mg_push(mg, client);
    return rc;
}


void mg_close(mg_t *mg) {
    if (mg == NULL) {
        return;
    }
    if (mg->pool != NULL) {
        mongoc_client_pool_destroy(mg->pool);
    }
    mongoc_uri_destroy(mg->uri);
    free(mg->db);
    free(mg);
}


static int mg_server_status(uint32_t code) {
    switch (code) {
    case MG_CODE_MAX_TIME_MS_EXPIRED:
    case MG_CODE_EXCEEDED_TIME_LIMIT:
        return CPS_DEADLINE_EXCEEDED;
    case MG_CODE_DUPLICATE_KEY:
    case MG_CODE_DUPLICATE_KEY_UPDATE:
    case MG_CODE_DUPLICATE_KEY_INDEX:
        return CPS_ALREADY_EXISTS;
    case MG_CODE_HOST_UNREACHABLE:
    case MG_CODE_HOST_NOT_FOUND:
    case MG_CODE_NETWORK_TIMEOUT:
    case MG_CODE_SHUTDOWN_IN_PROGRESS:
    case MG_CODE_PRIMARY_STEPPED_DOWN:
    case MG_CODE_SOCKET_EXCEPTION:
    case MG_CODE_NOT_WRITABLE_PRIMARY:
    case MG_CODE_INTERRUPTED_SHUTDOWN:
    case MG_CODE_INTERRUPTED_REPL:
    case MG_CODE_NOT_PRIMARY_NO_OK:
    case MG_CODE_NOT_PRIMARY_OR_SECONDARY:
        return CPS_UNAVAILABLE;
    default:
        return CPS_INTERNAL;
    }
}


int mg_status(const bson_error_t *error) {
    switch (error->domain) {
    case MONGOC_ERROR_SERVER_SELECTION:
    case MONGOC_ERROR_STREAM:
    case MONGOC_ERROR_PROTOCOL:
    case MONGOC_ERROR_SASL:
    case MONGOC_ERROR_SCRAM:
    case MONGOC_ERROR_WRITE_CONCERN:
        return CPS_UNAVAILABLE;
    case MONGOC_ERROR_CLIENT:
        if (error->code == MONGOC_ERROR_CLIENT_AUTHENTICATE ||
            error->code == MONGOC_ERROR_CLIENT_NOT_READY) {
            return CPS_UNAVAILABLE;
        }
        return CPS_INTERNAL;
    case MONGOC_ERROR_SERVER:
    case MONGOC_ERROR_QUERY:
    case MONGOC_ERROR_COMMAND:
    case MONGOC_ERROR_COLLECTION:
    case MONGOC_ERROR_INSERT:
        return mg_server_status(error->code);
    default:
        return CPS_INTERNAL;
    }
}


int mg_error(const bson_error_t *error,
             const char *what,
             char *err,
             size_t err_len) {
    int rc = mg_status(error);

    if (rc == CPS_ALREADY_EXISTS) {
        mg_set_err(err, err_len, "%s: duplicate key", what);
    } else {
        mg_set_err(err, err_len, "%s: %s", what, error->message);
    }
    return rc;
}


int mg_max_time_ms(int64_t deadline_mono_ms, int64_t *max_time_ms) {
    int64_t left;

    *max_time_ms = 0;
    if (deadline_mono_ms == 0) {
        return CPS_OK;
    }
    left = deadline_mono_ms - clock_mono_ms();
    if (left <= 0) {
        return CPS_DEADLINE_EXCEEDED;
    }
    *max_time_ms = left;
    return CPS_OK;
}


/* ---- indexes ------------------------------------------------------------ */

/* {createIndexes: <collection>, indexes: [<idx>], maxTimeMS}: one index
 * per command, as the note in mongo.h explains. */
static void
mg_index_command(bson_t *cmd, const mg_index_t *idx, int64_t max_time) {
    bson_t array;
    bson_t index;
    bson_t key;

    BSON_APPEND_UTF8(cmd, "createIndexes", idx->collection);
    BSON_APPEND_ARRAY_BEGIN(cmd, "indexes", &array);
    BSON_APPEND_DOCUMENT_BEGIN(&array, "0", &index);
    BSON_APPEND_DOCUMENT_BEGIN(&index, "key", &key);
    for (size_t i = 0; i < MG_INDEX_MAX_KEYS && idx->keys[i].field != NULL;
         i++) {
        BSON_APPEND_INT32(&key, idx->keys[i].field,
                          idx->keys[i].dir < 0 ? -1 : 1);
    }
    bson_append_document_end(&index, &key);
    BSON_APPEND_UTF8(&index, "name", idx->name);
    if (idx->unique) {
        BSON_APPEND_BOOL(&index, "unique", true);
    }
    if (idx->ttl) {
        BSON_APPEND_INT32(&index, "expireAfterSeconds", 0);
    }
    bson_append_document_end(&array, &index);
    bson_append_array_end(cmd, &array);
    if (max_time > 0) {
        BSON_APPEND_INT64(cmd, "maxTimeMS", max_time);
    }
}


int mg_create_index(mg_t *mg,
                    const mg_index_t *idx,
                    int64_t deadline_mono_ms,
                    int *ttl_supported,
                    char *err,
                    size_t err_len) {
    mongoc_client_t *client;
    bson_t cmd = BSON_INITIALIZER;
    bson_t reply;
    bson_error_t error;
    char what[128];
    int64_t max_time;
    int rc;

    if (ttl_supported != NULL) {
        *ttl_supported = 1;
    }
    snprintf(what, sizeof(what), "create index %s on %s", idx->name,
             idx->collection);
    rc = mg_max_time_ms(deadline_mono_ms, &max_time);
    if (rc != CPS_OK) {
        mg_set_err(err, err_len, "%s: deadline passed", what);
        bson_destroy(&cmd);
        return rc;
    }
    client = mg_pop(mg);
    if (client == NULL) {
        mg_set_err(err, err_len, "%s: no MongoDB client", what);
        bson_destroy(&cmd);
        return CPS_UNAVAILABLE;
    }

    mg_index_command(&cmd, idx, max_time);
    if (!mongoc_client_write_command_with_opts(client, mg->db, &cmd, NULL,
                                               &reply, &error)) {
        if (idx->ttl && ttl_supported != NULL &&
            error.domain == MONGOC_ERROR_SERVER &&
            error.code == MG_CODE_NOT_IMPLEMENTED) {
            *ttl_supported = 0;
            rc = CPS_UNIMPLEMENTED;
        } else {
            rc = mg_error(&error, what, err, err_len);
        }
    }
    mg_push(mg, client);
    bson_destroy(&reply);
    bson_destroy(&cmd);
    return rc;
}


mg_index_set_t *mg_index_set_new(mg_t *mg,
                                 const mg_index_t *indexes,
                                 size_t n,
                                 mg_index_hook_t hook,
                                 void *arg,
                                 char *err,
                                 size_t err_len) {
    mg_index_set_t *set = calloc(1, sizeof(*set));
    int rc;

    if (set == NULL) {
        mg_set_err(err, err_len, "out of memory");
        return NULL;
    }
    if (pthread_mutex_init(&set->lock, NULL) != 0) {
        free(set);
        mg_set_err(err, err_len, "pthread_mutex_init failed");
        return NULL;
    }
    set->mg = mg;
    set->indexes = indexes;
    set->n = n;
    set->hook = hook;
    set->arg = arg;

    /* An unreachable server is not fatal here: the indexes then come
     * before the store's first write. A server that refuses them is. */
    rc = mg_ensure_indexes(set, 0, err, err_len);
    if (rc != CPS_OK && rc != CPS_UNAVAILABLE && rc != CPS_DEADLINE_EXCEEDED) {
        mg_index_set_free(set);
        return NULL;
    }
    if (rc != CPS_OK && err != NULL && err_len > 0) {
        err[0] = '\0';
    }
    return set;
}


int mg_ensure_indexes(mg_index_set_t *set,
                      int64_t deadline_mono_ms,
                      char *err,
                      size_t err_len) {
    int rc = CPS_OK;

    pthread_mutex_lock(&set->lock);
    if (!set->ready) {
        for (size_t i = 0; rc == CPS_OK && i < set->n; i++) {
            rc = mg_create_index(set->mg, &set->indexes[i], deadline_mono_ms,
                                 NULL, err, err_len);
        }
        set->ready = rc == CPS_OK;
    }
    if (set->ready && set->hook != NULL) {
        rc = set->hook(set->arg, deadline_mono_ms, err, err_len);
    }
    pthread_mutex_unlock(&set->lock);
    return rc;
}


void mg_index_set_free(mg_index_set_t *set) {
    if (set == NULL) {
        return;
    }
    pthread_mutex_destroy(&set->lock);
    free(set);
}
