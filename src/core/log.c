#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static log_level_t log_min_level = LOG_INFO;


int log_level_parse(const char *name) {
    static const char *const names[] = {"debug", "info", "warn", "error"};

    for (int i = 0; i < 4; i++) {
        if (strcasecmp(name, names[i]) == 0) {
            return i;
        }
    }
    if (strcasecmp(name, "warning") == 0) {
        return LOG_WARN;
    }
    return -1;
}


void log_set_level(log_level_t level) {
    log_min_level = level;
}


int log_enabled(log_level_t level) {
    return level >= log_min_level;
}


void log_write(log_level_t level, const char *fmt, ...) {
    static const char *const names[] = {"debug", "info", "warn", "error"};
    char line[2048];
    struct timespec ts;
    struct tm tm;
    size_t n;
    va_list ap;

    if (!log_enabled(level)) {
        return;
    }

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ %-5s ",
                          ts.tv_nsec / 1000000, names[level]);

    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);

    /* One write per line so lines from threads never interleave. */
    fprintf(stderr, "%s\n", line);
}
