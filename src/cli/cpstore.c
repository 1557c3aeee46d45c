/*
 * cpstore: the command-line client of cpstored.
 *
 *   cpstore [--addr HOST:PORT] [--json] [--timeout DURATION] COMMAND ...
 *
 * Common options go before the command (or after it); each command parses
 * its own options and checks them all before it connects. Output is
 * readable by default and one JSON object per line with --json. Exit codes
 * follow DESIGN.md section 7: 0 yes, 1 no, 2 usage, 3 error.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

#ifndef CPSTORE_VERSION
#define CPSTORE_VERSION "unknown"
#endif

static const char cpstore_usage[] =
    "Usage: cpstore [OPTIONS] COMMAND [ARGS]\n"
    "\n"
    "Commands:\n"
    "  health            is the server serving\n"
    "  ratelimit check   admit a request under a sliding-window limit\n"
    "  ratelimit check-many\n"
    "                    admit a request under several limits at once\n"
    "  keys create       issue an API key\n"
    "  keys verify       check an API key\n"
    "  keys get          describe an API key\n"
    "  keys list         a user's API keys, newest first\n"
    "  keys revoke       revoke an API key everywhere\n"
    "  keys rotate       replace an API key, with a grace period\n"
    "  sessions create   start a session; prints its token once\n"
    "  sessions validate check a session token\n"
    "  sessions revoke   end one session, by token or id\n"
    "  sessions revoke-all\n"
    "                    end every session of a user\n"
    "  sessions list     a user's live sessions, newest first\n"
    "  tokens issue      issue a single-use token; prints it once\n"
    "  tokens consume    use a single-use token up, exactly once\n"
    "  tokens revoke     make a single-use token unusable\n"
    "\n"
    "Run 'cpstore COMMAND --help' for a command's options.\n"
    "\n" CLI_COMMON_HELP "  --version           print the version\n"
    "\n"
    "Exit codes: 0 a positive answer, 1 a negative answer, 2 a usage error,\n"
    "3 an RPC or transport error.\n";

typedef struct cpstore_command {
    const char *name;
    cli_command_fn run;
} cpstore_command_t;

static const cpstore_command_t cpstore_commands[] = {
    {"health", cli_health_main}, {"ratelimit", cli_ratelimit_main},
    {"keys", cli_keys_main},     {"sessions", cli_sessions_main},
    {"tokens", cli_tokens_main},
};


/* Flush stdout and turn a failed write into an error exit. */
static int cpstore_finish(int code) {
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "cpstore: writing output failed\n");
        return CLI_EXIT_ERROR;
    }
    return code;
}


int main(int argc, char **argv) {
    static const struct option longopts[] = {
        CLI_COMMON_LONGOPTS,
        {"version", no_argument, NULL, CLI_OPT_VERSION},
        {0},
    };
    cli_opts_t opts;
    const char *name;
    int opt;

    cli_opts_init(&opts);

    /* '+': stop at the command, whose options are its own business. */
    while ((opt = getopt_long(argc, argv, "+:h", longopts, NULL)) != -1) {
        if (opt == 'h') {
            fputs(cpstore_usage, stdout);
            return cpstore_finish(CLI_EXIT_YES);
        }
        if (opt == CLI_OPT_VERSION) {
            printf("cpstore %s\n", CPSTORE_VERSION);
            return cpstore_finish(CLI_EXIT_YES);
        }
        if (cli_common_option(&opts, opt, argv, NULL) != 0) {
            return CLI_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        return cli_usage_error(NULL, "missing command");
    }

    name = argv[optind];
    if (strcmp(name, "help") == 0) {
        fputs(cpstore_usage, stdout);
        return cpstore_finish(CLI_EXIT_YES);
    }
    for (size_t i = 0;
         i < sizeof(cpstore_commands) / sizeof(cpstore_commands[0]); i++) {
        if (strcmp(name, cpstore_commands[i].name) == 0) {
            int code =
                cpstore_commands[i].run(&opts, argc - optind, argv + optind);

            return cpstore_finish(code);
        }
    }
    return cli_usage_error(NULL, "unknown command '%s'", name);
}
