/*
 * Pieces shared by the subcommands of the `cpstore` command-line client:
 * exit codes, the options every level accepts, argument checking, and
 * reporting of failed calls.
 *
 * Every argument is checked before any connection is made, so a usage
 * error (exit 2) never depends on whether a server is reachable.
 */
#ifndef CPSTORE_CLI_H
#define CPSTORE_CLI_H

#include <getopt.h>
#include <stddef.h>
#include <stdint.h>

#include "cpstore_client.h"

/* Exit codes, as DESIGN.md section 7 fixes them. */
enum {
    CLI_EXIT_YES = 0,   /* positive answer: serving, allowed, valid, created */
    CLI_EXIT_NO = 1,    /* negative answer: not serving, denied, invalid */
    CLI_EXIT_USAGE = 2, /* bad command line */
    CLI_EXIT_ERROR = 3, /* RPC error or transport error */
};

#define CLI_DEFAULT_ADDR       "127.0.0.1:7300"
#define CLI_DEFAULT_TIMEOUT_MS 5000

/* Long-option values of the common options; below them, each command's. */
enum {
    CLI_OPT_ADDR = 0x100,
    CLI_OPT_JSON,
    CLI_OPT_TIMEOUT,
    CLI_OPT_VERSION,
    CLI_OPT_FIRST_COMMAND, /* first value free for a command's options */
};

/* The options accepted before the command and after it alike. */
#define CLI_COMMON_LONGOPTS                                                    \
    {"addr", required_argument, NULL, CLI_OPT_ADDR},                           \
        {"json", no_argument, NULL, CLI_OPT_JSON},                             \
        {"timeout", required_argument, NULL, CLI_OPT_TIMEOUT}, {               \
        "help", no_argument, NULL, 'h'                                         \
    }

#define CLI_COMMON_HELP                                                        \
    "Common options (before or after the command):\n"                          \
    "  --addr HOST:PORT    server address, [v6]:PORT or unix:/path\n"          \
    "                      (default: $CPSTORE_ADDR, else " CLI_DEFAULT_ADDR    \
    ")\n"                                                                      \
    "  --json              print one JSON object on one line\n"                \
    "  --timeout DURATION  bound on connecting and on the call (default 5s)\n" \
    "  -h, --help          show this help\n"

typedef struct cli_opts {
    const char *addr;
    int json;
    int timeout_ms;
} cli_opts_t;

/* A top-level command, given the argv that starts at its own name. Returns
 * the exit code. */
typedef int (*cli_command_fn)(cli_opts_t *o, int argc, char **argv);

int cli_health_main(cli_opts_t *o, int argc, char **argv);
int cli_ratelimit_main(cli_opts_t *o, int argc, char **argv);
int cli_keys_main(cli_opts_t *o, int argc, char **argv);
int cli_sessions_main(cli_opts_t *o, int argc, char **argv);
int cli_tokens_main(cli_opts_t *o, int argc, char **argv);

/* Defaults for the common options, from the environment where it says. */
void cli_opts_init(cli_opts_t *o);

/*
 * Handle a getopt_long() result that is not one of the command's own
 * options: a common option, or getopt's '?' and ':' for an unknown option
 * and a missing argument. Returns 0 to go on, or CLI_EXIT_USAGE after
 * printing why.
 */
int cli_common_option(cli_opts_t *o, int opt, char **argv, const char *cmd);

/* Refuse arguments left after the options. 0 or CLI_EXIT_USAGE. */
int cli_no_operands(int argc, char **argv, const char *cmd);

/* Print "cpstore: <message>" and a hint to cmd's --help on stderr; returns
 * CLI_EXIT_USAGE. cmd is NULL for the top level. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Argument checks; each prints the usage error and returns CLI_EXIT_USAGE,
 * or returns 0 with the value stored. */
int cli_parse_count(const char *cmd,
                    const char *opt,
                    const char *arg,
                    uint64_t *out);
int cli_parse_duration(const char *cmd,
                       const char *opt,
                       const char *arg,
                       uint64_t *out_ms);
int cli_copy_string(const char *cmd,
                    const char *opt,
                    const char *arg,
                    char *dst,
                    size_t dst_size);

/* Append arg to a bounded array of strings such as the scopes field of a
 * nanopb message. */
int cli_add_string(const char *cmd,
                   const char *opt,
                   const char *arg,
                   char *array,
                   size_t item_size,
                   size_t max_count,
                   pb_size_t *count);

/* Connect as the common options say, or print why not (NULL). */
cpc_t *cli_connect(const cli_opts_t *o);

/*
 * After a call: 0 when it returned an OK reply; otherwise print the
 * transport error, or the RPC error as "CODE: message", on stderr and
 * return CLI_EXIT_ERROR.
 */
int cli_call_result(const cpc_t *c, int rc, const cpc_reply_t *reply);

/* Connect, make one call, report a failure and close: CLI_EXIT_YES when the
 * server answered OK (resp is then filled), else the exit code to use. */
int cli_rpc(const cli_opts_t *o,
            uint16_t method,
            const pb_msgdesc_t *req_fields,
            const void *req,
            const pb_msgdesc_t *resp_fields,
            void *resp,
            cpc_reply_t *reply);

/* Print one aligned "name: value" line of readable output; an empty name
 * leaves the label blank, for the further values of a list. */
void cli_field(const char *name, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A UTC time in milliseconds as ISO 8601 ("2025-01-31T12:00:00.000Z"),
 * or "never" for 0. */
void cli_format_time(int64_t ms, char *buf, size_t len);

#endif
