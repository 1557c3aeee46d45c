/*
 * `cpstore ratelimit check` and `cpstore ratelimit check-many`: admit (and
 * count) one request under one limit, or under several limits at once.
 *
 * A limit of check-many is one --check argument, KEY:LIMIT:WINDOW[:COST] or
 * KEY@POLICY[:COST]. Keys are often built with ':' ("user:42:minute") and
 * sometimes hold '@' (an e-mail address), so the fields after the key are
 * read from the right, where their shapes tell them apart: a COST is a
 * plain number, a WINDOW always carries a unit (duration.h refuses a bare
 * number), and a POLICY follows the last '@' (policy names hold no '@').
 */
#include "cli.h"
#include "cli_json.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "duration.h"
#include "status.h"

enum {
    CLI_RL_KEY = CLI_OPT_FIRST_COMMAND,
    CLI_RL_LIMIT,
    CLI_RL_WINDOW,
    CLI_RL_COST,
    CLI_RL_POLICY,
    CLI_RL_CHECK,
};

/* Longest key and policy the request holds (the server's own limits). */
#define CLI_RL_KEY_MAX                                                         \
    (sizeof(((cpstore_v1_RateLimitCheckRequest *)0)->key) - 1)
#define CLI_RL_POLICY_MAX                                                      \
    (sizeof(((cpstore_v1_RateLimitCheckRequest *)0)->policy) - 1)

/* Longest --check accepted: the longest key, '@' and the longest policy or
 * a limit and a window, a cost, and separators; 64 bytes is more than the
 * numbers and separators of any check the server accepts need. */
#define CLI_RL_SPEC_MAX (CLI_RL_KEY_MAX + 1 + CLI_RL_POLICY_MAX + 64)

static const char cli_ratelimit_usage[] =
    "Usage: cpstore [OPTIONS] ratelimit check --key KEY\n"
    "           (--limit N --window DURATION | --policy NAME) [--cost N]\n"
    "       cpstore [OPTIONS] ratelimit check-many --check CHECK "
    "[--check CHECK]...\n"
    "\n"
    "Commands:\n"
    "  check        admit a request of COST units under KEY if at most LIMIT\n"
    "               units were admitted in the trailing WINDOW; a denied\n"
    "               request consumes nothing\n"
    "  check-many   admit a request under several limits at once (1 to 16):\n"
    "               it is admitted only if every limit admits it, and then\n"
    "               counts on every limit; if one denies, nothing is counted\n"
    "               anywhere and the output names the first that denied\n"
    "\n"
    "Options of check:\n"
    "  --key KEY           the counter, for example user:42:search\n"
    "  --limit N           units admitted per window, at most 100000 (0\n"
    "                      denies everything)\n"
    "  --window DURATION   the sliding window: 250ms, 10s, 5m, 1h, 30d\n"
    "  --policy NAME       take limit and window from the server's policy\n"
    "                      NAME (its config file) instead of --limit and\n"
    "                      --window\n"
    "  --cost N            units this request takes (default 1, at most\n"
    "                      1000)\n"
    "\n"
    "Options of check-many:\n"
    "  --check KEY:LIMIT:WINDOW[:COST]\n"
    "  --check KEY@POLICY[:COST]\n"
    "                      one limit, with its own numbers or a policy of the\n"
    "                      server; repeat for each limit, each with its own\n"
    "                      KEY. The fields after KEY are read from the right,\n"
    "                      so KEY may hold ':' and '@': COST is a plain\n"
    "                      number, WINDOW always has a unit, POLICY follows\n"
    "                      the last '@'. A policy whose name ends in ':' and\n"
    "                      digits must be given with its :COST.\n"
    "                      On Redis Cluster all KEYs of one call must share a\n"
    "                      hash tag, e.g. {user:42}:minute and {user:42}:day.\n"
    "                      The COSTs of all --check together (a missing COST\n"
    "                      counting as 1) may add up to at most 1000.\n"
    "\n"
    "Examples:\n"
    "  cpstore ratelimit check --key user:42 --limit 100 --window 1m\n"
    "  cpstore ratelimit check --key user:42 --policy api --cost 5\n"
    "  cpstore ratelimit check-many --check '{user:42}:min:10:1m' \\\n"
    "      --check '{user:42}:day:1000:1d' --check '{user:42}:login@login:1'\n"
    "\n"
    "--json prints allowed, limit, remaining, reset_after_ms, retry_after_ms\n"
    "and fallback for check; allowed, denied_index (-1 when allowed),\n"
    "denied_key, fallback and results (one object per --check, in order:\n"
    "key, policy, allowed, limit, remaining, reset_after_ms, retry_after_ms)\n"
    "for check-many. In a result, allowed says whether that limit alone\n"
    "admits the request. fallback is true when the server could not reach\n"
    "its counters and answered by its configured fallback.\n"
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
        cli_json_bool(&j, "fallback", r->fallback);
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
    if (r->fallback) {
        cli_field("fallback", "yes: the server could not reach its counters");
    }
}


static int cli_ratelimit_check(cli_opts_t *o, int argc, char **argv) {
    static const char cmd[] = "ratelimit check";
    static const struct option longopts[] = {
        {"key", required_argument, NULL, CLI_RL_KEY},
        {"limit", required_argument, NULL, CLI_RL_LIMIT},
        {"window", required_argument, NULL, CLI_RL_WINDOW},
        {"cost", required_argument, NULL, CLI_RL_COST},
        {"policy", required_argument, NULL, CLI_RL_POLICY},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    cpstore_v1_RateLimitCheckRequest req =
        cpstore_v1_RateLimitCheckRequest_init_zero;
    cpstore_v1_RateLimitCheckResponse resp =
        cpstore_v1_RateLimitCheckResponse_init_zero;
    int have_key = 0, have_limit = 0, have_window = 0, have_policy = 0;
    cpc_reply_t reply;
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
        case CLI_RL_POLICY:
            have_policy = 1;
            rc = cli_copy_string(cmd, "--policy", optarg, req.policy,
                                 sizeof(req.policy));
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
    if (have_policy) {
        if (req.policy[0] == '\0') {
            return cli_usage_error(cmd, "--policy needs a name");
        }
        if (have_limit || have_window) {
            return cli_usage_error(cmd, "--policy gives the limit and the "
                                        "window: leave out --limit and "
                                        "--window");
        }
    } else if (!have_limit) {
        return cli_usage_error(cmd, "--limit is required (or --policy)");
    } else if (!have_window) {
        return cli_usage_error(cmd, "--window is required (or --policy)");
    }

    rc = cli_rpc(o, cpstore_v1_RateLimiterMethod_RATE_LIMITER_METHOD_CHECK,
                 cpstore_v1_RateLimitCheckRequest_fields, &req,
                 cpstore_v1_RateLimitCheckResponse_fields, &resp, &reply);
    if (rc != 0) {
        return rc;
    }
    cli_ratelimit_print(o, &resp);
    return resp.allowed ? CLI_EXIT_YES : CLI_EXIT_NO;
}


static bool cli_rl_digits(const char *s) {
    return *s != '\0' && strspn(s, "0123456789") == strlen(s);
}


/* Cut buf at its last ':' and return what followed, or NULL if none. */
static char *cli_rl_cut_last(char *buf) {
    char *colon = strrchr(buf, ':');

    if (colon == NULL) {
        return NULL;
    }
    *colon = '\0';
    return colon + 1;
}


/* Read the limit form KEY:LIMIT:WINDOW from buf into c; false (buf
 * unchanged) when buf does not have that shape. */
static bool cli_rl_limit_form(char *buf,
                              cpstore_v1_RateLimitCheckRequest *c,
                              const char **key,
                              const char **limit) {
    char *window = strrchr(buf, ':');
    char *lim;

    if (window == NULL || cli_rl_digits(window + 1) ||
        duration_parse(window + 1, &c->window_ms) != CPS_OK) {
        return false;
    }
    *window = '\0';
    lim = strrchr(buf, ':');
    if (lim == NULL || lim == buf || !cli_rl_digits(lim + 1)) {
        *window = ':';
        c->window_ms = 0;
        return false;
    }
    *lim = '\0';
    *key = buf;
    *limit = lim + 1;
    return true;
}


/* Parse one --check into c. 0, or CLI_EXIT_USAGE after saying why. */
static int cli_rl_parse_check(const char *cmd,
                              const char *spec,
                              cpstore_v1_RateLimitCheckRequest *c) {
    char buf[CLI_RL_SPEC_MAX + 1];
    const char *key = NULL;
    const char *limit = NULL;
    const char *last;
    char *at;

    if (strlen(spec) > CLI_RL_SPEC_MAX) {
        return cli_usage_error(cmd, "--check is longer than %zu bytes",
                               CLI_RL_SPEC_MAX);
    }
    memcpy(buf, spec, strlen(spec) + 1);

    last = strrchr(buf, ':');
    if (last != NULL && cli_rl_digits(last + 1)) {
        if (cli_parse_count(cmd, "the COST of --check", cli_rl_cut_last(buf),
                            &c->cost) != 0) {
            return CLI_EXIT_USAGE;
        }
    }
    if (cli_rl_limit_form(buf, c, &key, &limit)) {
        if (cli_parse_count(cmd, "the LIMIT of --check", limit, &c->limit) !=
            0) {
            return CLI_EXIT_USAGE;
        }
    } else {
        at = strrchr(buf, '@');
        if (at == NULL || at == buf || at[1] == '\0') {
            return cli_usage_error(cmd,
                                   "--check needs KEY:LIMIT:WINDOW[:COST] or "
                                   "KEY@POLICY[:COST], not '%s'",
                                   spec);
        }
        *at = '\0';
        key = buf;
        if (cli_copy_string(cmd, "the POLICY of --check", at + 1, c->policy,
                            sizeof(c->policy)) != 0) {
            return CLI_EXIT_USAGE;
        }
    }
    return cli_copy_string(cmd, "the KEY of --check", key, c->key,
                           sizeof(c->key));
}


static void
cli_ratelimit_print_many(const cli_opts_t *o,
                         const cpstore_v1_RateLimitCheckManyRequest *req,
                         const cpstore_v1_RateLimitCheckManyResponse *r) {
    cli_json_t j;

    if (o->json) {
        cli_json_begin(&j, stdout);
        cli_json_bool(&j, "allowed", r->allowed);
        cli_json_i64(&j, "denied_index", r->denied_index);
        cli_json_str(&j, "denied_key", r->denied_key);
        cli_json_bool(&j, "fallback", r->fallback);
        cli_json_array(&j, "results");
        for (pb_size_t i = 0; i < r->results_count; i++) {
            const cpstore_v1_RateLimitCheckResponse *x = &r->results[i];

            cli_json_object(&j, NULL);
            cli_json_str(&j, "key",
                         i < req->checks_count ? req->checks[i].key : "");
            if (i < req->checks_count && req->checks[i].policy[0] != '\0') {
                cli_json_str(&j, "policy", req->checks[i].policy);
            }
            cli_json_bool(&j, "allowed", x->allowed);
            cli_json_u64(&j, "limit", x->limit);
            cli_json_u64(&j, "remaining", x->remaining);
            cli_json_u64(&j, "reset_after_ms", x->reset_after_ms);
            cli_json_u64(&j, "retry_after_ms", x->retry_after_ms);
            cli_json_close(&j);
        }
        cli_json_close(&j);
        cli_json_end(&j);
        return;
    }

    cli_field("allowed", "%s", r->allowed ? "yes" : "no (nothing counted)");
    if (!r->allowed) {
        cli_field("denied by", "#%ld %s", (long)r->denied_index, r->denied_key);
    }
    if (r->fallback) {
        cli_field("fallback", "yes: the server could not reach its counters");
    }
    for (pb_size_t i = 0; i < r->results_count; i++) {
        const cpstore_v1_RateLimitCheckResponse *x = &r->results[i];
        char label[16];
        char when[DURATION_BUF_SIZE];

        snprintf(label, sizeof(label), "#%u", (unsigned)i);
        if (x->allowed) {
            duration_format(x->reset_after_ms, when, sizeof(when));
        } else if (x->retry_after_ms > 0) {
            duration_format(x->retry_after_ms, when, sizeof(when));
        } else {
            snprintf(when, sizeof(when), "never");
        }
        cli_field(label, "%s: %s, %llu of %llu left, %s %s",
                  i < req->checks_count ? req->checks[i].key : "",
                  x->allowed ? "allows" : "denies",
                  (unsigned long long)x->remaining,
                  (unsigned long long)x->limit,
                  x->allowed ? "resets after" : "retry after", when);
    }
}


static int cli_ratelimit_check_many(cli_opts_t *o, int argc, char **argv) {
    static const char cmd[] = "ratelimit check-many";
    static const struct option longopts[] = {
        {"check", required_argument, NULL, CLI_RL_CHECK},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    /* About 10 KiB each: off the stack. */
    static cpstore_v1_RateLimitCheckManyRequest req;
    static cpstore_v1_RateLimitCheckManyResponse resp;
    const pb_size_t max = sizeof(req.checks) / sizeof(req.checks[0]);
    cpc_reply_t reply;
    cpc_t *c;
    int opt;
    int rc = 0;

    memset(&req, 0, sizeof(req));
    memset(&resp, 0, sizeof(resp));
    optind = 0;
    while ((opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            fputs(cli_ratelimit_usage, stdout);
            return CLI_EXIT_YES;
        case CLI_RL_CHECK:
            if (req.checks_count >= max) {
                return cli_usage_error(cmd,
                                       "--check is allowed at most %u "
                                       "times",
                                       (unsigned)max);
            }
            rc = cli_rl_parse_check(cmd, optarg,
                                    &req.checks[req.checks_count++]);
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
    if (req.checks_count == 0) {
        return cli_usage_error(cmd, "at least one --check is required");
    }
    for (pb_size_t i = 1; i < req.checks_count; i++) {
        for (pb_size_t k = 0; k < i; k++) {
            if (strcmp(req.checks[i].key, req.checks[k].key) == 0) {
                return cli_usage_error(cmd,
                                       "key '%s' is given twice: each "
                                       "--check needs its own key",
                                       req.checks[i].key);
            }
        }
    }

    c = cli_connect(o);
    if (c == NULL) {
        return CLI_EXIT_ERROR;
    }
    rc =
        cpc_call(c, cpstore_v1_RateLimiterMethod_RATE_LIMITER_METHOD_CHECK_MANY,
                 cpstore_v1_RateLimitCheckManyRequest_fields, &req,
                 cpstore_v1_RateLimitCheckManyResponse_fields, &resp, &reply);
    rc = cli_call_result(c, rc, &reply);
    cpc_close(c);
    if (rc != 0) {
        return rc;
    }
    cli_ratelimit_print_many(o, &req, &resp);
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
    if (strcmp(argv[1], "check-many") == 0) {
        return cli_ratelimit_check_many(o, argc - 1, argv + 1);
    }
    return cli_usage_error("ratelimit", "unknown command 'ratelimit %s'",
                           argv[1]);
}
