/*
 * A tiny JSON writer for the CLI's --json output: one object on one line,
 * written straight to a stream. Strings are escaped as RFC 8259 asks
 * (quote, backslash and control characters), and bytes that are not valid
 * UTF-8 become U+FFFD, so the output always parses whatever the server
 * sent.
 */
#ifndef CPSTORE_CLI_JSON_H
#define CPSTORE_CLI_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define CLI_JSON_MAX_DEPTH 8

typedef struct cli_json {
    FILE *f;
    int depth;
    bool has_items[CLI_JSON_MAX_DEPTH]; /* a comma goes before the next */
    char closer[CLI_JSON_MAX_DEPTH];
} cli_json_t;

/* Start the top-level object. */
void cli_json_begin(cli_json_t *j, FILE *f);

/* Close the top-level object and end the line. */
void cli_json_end(cli_json_t *j);

/* Open an object or array as a member named key (NULL inside arrays). */
void cli_json_object(cli_json_t *j, const char *key);
void cli_json_array(cli_json_t *j, const char *key);

/* Close the innermost open object or array. */
void cli_json_close(cli_json_t *j);

/* Members; key is NULL for an array element. */
void cli_json_str(cli_json_t *j, const char *key, const char *value);
void cli_json_u64(cli_json_t *j, const char *key, uint64_t value);
void cli_json_i64(cli_json_t *j, const char *key, int64_t value);
void cli_json_bool(cli_json_t *j, const char *key, bool value);

#endif
