/* `cpstore ratelimit check`: admit (and count) one request, or not. */
#include "cli.h"
#include "cli_json.h"

#include <stdio.h>
#include <string.h>

#include "duration.h"

enum {
    CLI_RL_KEY = CLI_OPT_FIRST_COMMAND,
    CLI_RL_LIMIT,
    CLI_RL_WINDOW,
    CLI_RL_COST,
};

static const char cli_ratelimit_usage[] =
    "Usage: cpstore [OPTIONS] ratelimit check --key KEY --limit N\n"
    "                                         --window DURATION [--cost N]\n"
    "\n"
    "Commands:\n"
    "  check   admit a request of COST units under KEY if at most LIMIT\n"
    "          units were admitted in the trailing WINDOW; a denied request\n"
    "          consumes nothing\n"
    "\n"
    "Options of check:\n"
    "  --key KEY           the counter, for example user:42:search\n"
    "  --limit N           units admitted per window (0 denies everything)\n"
    "  --window DURATION   the sliding window: 250ms, 10s, 5m, 1h, 30d\n"
    "  --cost N            units this request takes (default 1)\n"
    "\n"
    "Exits 0 when the request is allowed, 1 when it is denied, 3 on an\n"
    "error.\n"
    "\n" CLI_COMMON_HELP;


static void cli_ratelimit_print(const cli_opts_t *o,
                                const cpstore_v1_RateLimitCheckResponse *r) {
    char reset[DURATION_BUF_SIZE];
    char retry[DURATION_BUF_SIZE];
    cli_json_t j;

    if (o->json) {
        cli_json_begin(&j, stdout);
        cli_json_bool(&j, "allowed", r->allowed);
        cli_json_u64(&j, "limit", r->limit);
        cli_json_u64(&j, "remaining", r->remaining);
        cli_json_u64(&j, "reset_after_ms", r->reset_after_ms);
        cli_json_u64(&j, "retry_after_ms", r->retry_after_ms);
        cli_json_end(&j);
        return;
    }

    duration_format(r->reset_after_ms, reset, sizeof(reset));
    duration_format(r->retry_after_ms, retry, sizeof(retry));
    cli_field("allowed", "%s", r->allowed ? "yes" : "no");
    cli_field("limit", "%llu", (unsigned long long)r->limit);
    cli_field("remaining", "%llu", (unsigned long long)r->remaining);
    cli_field("reset after", "%s", reset);
    if (!r->allowed) {
        cli_field("retry after", "%s", r->retry_after_ms ? retry : "never");
    }
}


static int cli_ratelimit_check(cli_opts_t *o, int argc, char **argv) {
    static const char cmd[] = "ratelimit check";
    static const struct option longopts[] = {
        {"key", required_argument, NULL, CLI_RL_KEY},
        {"limit", required_argument, NULL, CLI_RL_LIMIT},
        {"window", required_argument, NULL, CLI_RL_WINDOW},
        {"cost", required_argument, NULL, CLI_RL_COST},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    cpstore_v1_RateLimitCheckRequest req =
        cpstore_v1_RateLimitCheckRequest_init_zero;
    cpstore_v1_RateLimitCheckResponse resp =
        cpstore_v1_RateLimitCheckResponse_init_zero;
    int have_key = 0, have_limit = 0, have_window = 0;
    cpc_reply_t reply;
    cpc_t *c;
    int opt;
    int rc = 0;

    optind = 0;
    while ((opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            fputs(cli_ratelimit_usage, stdout);
            return CLI_EXIT_YES;
        case CLI_RL_KEY:
            have_key = 1;
            rc =
                cli_copy_string(cmd, "--key", optarg, req.key, sizeof(req.key));
            break;
        case CLI_RL_LIMIT:
            have_limit = 1;
            rc = cli_parse_count(cmd, "--limit", optarg, &req.limit);
            break;
        case CLI_RL_WINDOW:
            have_window = 1;
            rc = cli_parse_duration(cmd, "--window", optarg, &req.window_ms);
            break;
        case CLI_RL_COST:
            rc = cli_parse_count(cmd, "--cost", optarg, &req.cost);
            break;
        default:
            rc = cli_common_option(o, opt, argv, cmd);
            break;
        }
        if (rc != 0) {
            return CLI_EXIT_USAGE;
        }
    }
    if (cli_no_operands(argc, argv, cmd) != 0) {
        return CLI_EXIT_USAGE;
    }
    if (!have_key || req.key[0] == '\0') {
        return cli_usage_error(cmd, "--key is required");
    }
    if (!have_limit) {
        return cli_usage_error(cmd, "--limit is required");
    }
    if (!have_window) {
        return cli_usage_error(cmd, "--window is required");
    }

    c = cli_connect(o);
    if (c == NULL) {
        return CLI_EXIT_ERROR;
    }
    rc = cpc_ratelimit_check(c, &req, &resp, &reply);
    rc = cli_call_result(c, rc, &reply);
    cpc_close(c);
    if (rc != 0) {
        return rc;
    }
    cli_ratelimit_print(o, &resp);
    return resp.allowed ? CLI_EXIT_YES : CLI_EXIT_NO;
}


int cli_ratelimit_main(cli_opts_t *o, int argc, char **argv) {
    if (argc < 2) {
        return cli_usage_error("ratelimit", "missing command after "
                                            "'ratelimit'");
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        fputs(cli_ratelimit_usage, stdout);
        return CLI_EXIT_YES;
    }
    if (strcmp(argv[1], "check") == 0) {
        return cli_ratelimit_check(o, argc - 1, argv + 1);
    }
    return cli_usage_error("ratelimit", "unknown command 'ratelimit %s'",
                           argv[1]);
}
