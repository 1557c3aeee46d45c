/*
 * Logging: one line per event on stderr, "ts level msg key=value ...".
 * The level is checked before the arguments are formatted. Callers never
 * pass a secret (key, token, session token, server secret) to these
 * functions; identifiers such as key_id and the key hint are fine.
 */
#ifndef CPSTORE_LOG_H
#define CPSTORE_LOG_H

typedef enum log_level {
    LOG_DEBUG = 0,
    LOG_INFO = 1,
    LOG_WARN = 2,
    LOG_ERROR = 3,
} log_level_t;

/* Parse "debug", "info", "warn" or "error"; -1 if none of them. */
int log_level_parse(const char *name);

void log_set_level(log_level_t level);
int log_enabled(log_level_t level);

/* fmt should read "short lower-case message key=value key=value". */
void log_write(log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...)                                                         \
    do {                                                                       \
        if (log_enabled(LOG_DEBUG))                                            \
            log_write(LOG_DEBUG, __VA_ARGS__);                                 \
    } while (0)
#define log_info(...)  log_write(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_write(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__)

#endif
