/*
 * `cpstore tokens issue | consume | revoke`: single-use tokens.
 *
 * A token given as '-' is read from stdin, which keeps it out of the
 * process list. Consume prints the answer's code without its "CONSUME_"
 * prefix (CONSUMED, ALREADY_CONSUMED, ...) and exits 0 only for CONSUMED:
 * every other answer is a negative one (exit 1), not an error.
 */
#include "cli.h"
#include "cli_json.h"

#include <stdio.h>
#include <string.h>

#include "cpstore/v1/tokens.pb.h"

enum {
    CLI_TK_KIND = CLI_OPT_FIRST_COMMAND,
    CLI_TK_SUBJECT,
    CLI_TK_TTL,
    CLI_TK_META,
    CLI_TK_CLIENT,
    CLI_TK_REDIRECT_URI,
    CLI_TK_PKCE_CHALLENGE,
    CLI_TK_PKCE_VERIFIER,
    CLI_TK_TOKEN,
};

#define CLI_TK_COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const char cli_tokens_usage[] =
    "Usage: cpstore [OPTIONS] tokens issue --kind KIND --subject S\n"
    "                   [--ttl DURATION] [--meta K=V]... [--client ID]\n"
    "                   [--redirect-uri URI] [--pkce-challenge C]\n"
    "       cpstore [OPTIONS] tokens consume --kind KIND --token TOKEN\n"
    "                   [--client ID] [--redirect-uri URI]\n"
    "                   [--pkce-verifier V]\n"
    "       cpstore [OPTIONS] tokens revoke --kind KIND --token TOKEN\n"
    "\n"
    "Commands:\n"
    "  issue    issue a single-use token; it is printed this once only\n"
    "  consume  use a token up: it succeeds once, and only with the binding\n"
    "           it was issued with\n"
    "  revoke   make a token unusable from now on\n"
    "\n"
    "Options:\n"
    "  --kind KIND         a token kind configured on the server, such as\n"
    "                      oauth_code or exchange\n"
    "  --subject S         whom the token stands for, e.g. a user id\n"
    "  --ttl DURATION      lifetime (default 10m; the kind's max_ttl caps it)\n"
    "  --meta K=V          a metadata entry returned by the consume\n"
    "                      (repeatable, at most 16)\n"
    "  --client ID         issue: bind the token to this client id;\n"
    "                      consume: the client presenting it\n"
    "  --redirect-uri URI  the same, for a redirect URI\n"
    "  --pkce-challenge C  bind a PKCE S256 challenge:\n"
    "                      BASE64URL(SHA-256(verifier)), 43 characters\n"
    "  --pkce-verifier V   the PKCE code verifier of the consume\n"
    "  --token TOKEN       the token; '-' reads it from stdin\n"
    "\n"
    "issue exits 0 when the token was issued; consume exits 0 when this call\n"
    "consumed the token and 1 for any other answer (ALREADY_CONSUMED,\n"
    "EXPIRED, NOT_FOUND, BINDING_MISMATCH, REVOKED); revoke exits 0 when it\n"
    "revoked a token and 1 when there was none; all exit 3 on an error.\n"
    "\n" CLI_COMMON_HELP;


/* ---- shared pieces --------------------------------------------------- */

/* The token from --token: the argument, or one line of stdin for '-'. */
static int
cli_tokens_token(const char *cmd, const char *arg, char *dst, size_t dst_size) {
    char line[512]; /* room for any token that fits dst, and its line end */
    size_t len;

    if (strcmp(arg, "-") != 0) {
        return cli_copy_string(cmd, "--token", arg, dst, dst_size);
    }
    if (fgets(line, sizeof(line), stdin) == NULL) {
        return cli_usage_error(cmd, "--token -: nothing to read on stdin");
    }
    len = strcspn(line, "\r\n");
    if (line[len] == '\0' && !feof(stdin)) {
        return cli_usage_error(cmd, "--token is longer than %zu bytes",
                               dst_size - 1);
    }
    line[len] = '\0';
    return cli_copy_string(cmd, "--token", line, dst, dst_size);
}


/* --meta K=V: split at the first '='; keys are unique and not empty. */
static int cli_tokens_meta(const char *cmd,
                           const char *arg,
                           cpstore_v1_IssueTokenRequest *req) {
    const char *eq = strchr(arg, '=');
    cpstore_v1_MetadataEntry *e;
    size_t key_len;

    if (eq == NULL || eq == arg) {
        return cli_usage_error(cmd, "--meta needs KEY=VALUE, not '%s'", arg);
    }
    if (req->metadata_count >= CLI_TK_COUNT(req->metadata)) {
        return cli_usage_error(cmd, "--meta is allowed at most %zu times",
                               CLI_TK_COUNT(req->metadata));
    }
    key_len = (size_t)(eq - arg);
    e = &req->metadata[req->metadata_count];
    if (key_len >= sizeof(e->key)) {
        return cli_usage_error(cmd, "--meta key is longer than %zu bytes",
                               sizeof(e->key) - 1);
    }
    memcpy(e->key, arg, key_len);
    e->key[key_len] = '\0';
    for (pb_size_t i = 0; i < req->metadata_count; i++) {
        if (strcmp(req->metadata[i].key, e->key) == 0) {
            return cli_usage_error(cmd, "--meta key '%s' is repeated", e->key);
        }
    }
    if (cli_copy_string(cmd, "--meta value", eq + 1, e->value,
                        sizeof(e->value)) != 0) {
        return CLI_EXIT_USAGE;
    }
    req->metadata_count++;
    return 0;
}


/* "CONSUME_ALREADY_CONSUMED" without its "CONSUME_" prefix. */
static const char *cli_tokens_code_name(cpstore_v1_ConsumeCode code) {
    static const char *const names[] = {
        "CODE_UNSPECIFIED", "CONSUMED",         "ALREADY_CONSUMED", "EXPIRED",
        "NOT_FOUND",        "BINDING_MISMATCH", "REVOKED",
    };

    if ((int)code < 0 || (size_t)code >= CLI_TK_COUNT(names)) {
        return "CODE_UNKNOWN";
    }
    return names[code];
}


static void cli_tokens_time(const char *name, int64_t ms) {
    char when[64];

    cli_format_time(ms, when, sizeof(when));
    cli_field(name, "%s", when);
}


/* ---- issue ----------------------------------------------------------- */

static void cli_tokens_print_issued(const cli_opts_t *o,
                                    const cpstore_v1_IssueTokenResponse *r) {
    cli_json_t j;

    if (o->json) {
        cli_json_begin(&j, stdout);
        cli_json_str(&j, "token", r->token);
        cli_json_str(&j, "token_id", r->token_id);
        cli_json_i64(&j, "expires_at_ms", r->expires_at_ms);
        cli_json_end(&j);
        return;
    }
    cli_field("token", "%s", r->token);
    cli_field("token_id", "%s", r->token_id);
    cli_tokens_time("expires", r->expires_at_ms);
}


/* One option of issue into req. */
static int cli_tokens_issue_option(const char *cmd,
                                   int opt,
                                   cpstore_v1_IssueTokenRequest *req) {
    cpstore_v1_TokenBinding *b = &req->binding;

    switch (opt) {
    case CLI_TK_KIND:
        return cli_copy_string(cmd, "--kind", optarg, req->kind,
                               sizeof(req->kind));
    case CLI_TK_SUBJECT:
        return cli_copy_string(cmd, "--subject", optarg, req->subject,
                               sizeof(req->subject));
    case CLI_TK_TTL:
        if (cli_parse_duration(cmd, "--ttl", optarg, &req->ttl_ms) != 0) {
            return CLI_EXIT_USAGE;
        }
        if (req->ttl_ms == 0) {
            return cli_usage_error(cmd, "--ttl must be above 0");
        }
        return 0;
    case CLI_TK_META:
        return cli_tokens_meta(cmd, optarg, req);
    case CLI_TK_CLIENT:
        req->has_binding = true;
        return cli_copy_string(cmd, "--client", optarg, b->client_id,
                               sizeof(b->client_id));
    case CLI_TK_REDIRECT_URI:
        req->has_binding = true;
        return cli_copy_string(cmd, "--redirect-uri", optarg, b->redirect_uri,
                               sizeof(b->redirect_uri));
    case CLI_TK_PKCE_CHALLENGE:
        req->has_binding = true;
        return cli_copy_string(cmd, "--pkce-challenge", optarg,
                               b->pkce_challenge, sizeof(b->pkce_challenge));
    default:
        return -1; /* not one of issue's own */
    }
}


static int cli_tokens_issue(cli_opts_t *o, int argc, char **argv) {
    static const char cmd[] = "tokens issue";
    static const struct option longopts[] = {
        {"kind", required_argument, NULL, CLI_TK_KIND},
        {"subject", required_argument, NULL, CLI_TK_SUBJECT},
        {"ttl", required_argument, NULL, CLI_TK_TTL},
        {"meta", required_argument, NULL, CLI_TK_META},
        {"client", required_argument, NULL, CLI_TK_CLIENT},
        {"redirect-uri", required_argument, NULL, CLI_TK_REDIRECT_URI},
        {"pkce-challenge", required_argument, NULL, CLI_TK_PKCE_CHALLENGE},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    /* Static: the request is about 11 KB. */
    static cpstore_v1_IssueTokenRequest req;
    static cpstore_v1_IssueTokenResponse resp;
    cpc_reply_t reply;
    int opt;
    int rc;

    optind = 0;
    while ((opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (opt == 'h') {
            fputs(cli_tokens_usage, stdout);
            return CLI_EXIT_YES;
        }
        rc = cli_tokens_issue_option(cmd, opt, &req);
        if (rc < 0) {
            rc = cli_common_option(o, opt, argv, cmd);
        }
        if (rc != 0) {
            return CLI_EXIT_USAGE;
        }
    }
    if (cli_no_operands(argc, argv, cmd) != 0) {
        return CLI_EXIT_USAGE;
    }
    if (req.kind[0] == '\0') {
        return cli_usage_error(cmd, "--kind is required");
    }
    if (req.subject[0] == '\0') {
        return cli_usage_error(cmd, "--subject is required");
    }

    rc = cli_rpc(o, cpstore_v1_TokensMethod_TOKENS_METHOD_ISSUE,
                 cpstore_v1_IssueTokenRequest_fields, &req,
                 cpstore_v1_IssueTokenResponse_fields, &resp, &reply);
    if (rc != 0) {
        return rc;
    }
    cli_tokens_print_issued(o, &resp);
    memset(resp.token, 0, sizeof(resp.token));
    return CLI_EXIT_YES;
}


/* ---- consume --------------------------------------------------------- */

static void
cli_tokens_print_consumed(const cli_opts_t *o,
                          const cpstore_v1_ConsumeTokenResponse *r) {
    cli_json_t j;

    if (o->json) {
        cli_json_begin(&j, stdout);
        cli_json_str(&j, "code", cli_tokens_code_name(r->code));
        cli_json_str(&j, "token_id", r->token_id);
        cli_json_str(&j, "subject", r->subject);
        cli_json_object(&j, "metadata");
        for (pb_size_t i = 0; i < r->metadata_count; i++) {
            cli_json_str(&j, r->metadata[i].key, r->metadata[i].value);
        }
        cli_json_close(&j);
        cli_json_i64(&j, "consumed_at_ms", r->consumed_at_ms);
        cli_json_end(&j);
        return;
    }
    cli_field("code", "%s", cli_tokens_code_name(r->code));
    if (r->token_id[0] != '\0') {
        cli_field("token_id", "%s", r->token_id);
    }
    if (r->subject[0] != '\0') {
        cli_field("subject", "%s", r->subject);
    }
    for (pb_size_t i = 0; i < r->metadata_count; i++) {
        cli_field(i == 0 ? "metadata" : "", "%s=%s", r->metadata[i].key,
                  r->metadata[i].value);
    }
    if (r->consumed_at_ms != 0) {
        cli_tokens_time("consumed", r->consumed_at_ms);
    }
}


static int cli_tokens_consume(cli_opts_t *o, int argc, char **argv) {
    static const char cmd[] = "tokens consume";
    static const struct option longopts[] = {
        {"kind", required_argument, NULL, CLI_TK_KIND},
        {"token", required_argument, NULL, CLI_TK_TOKEN},
        {"client", required_argument, NULL, CLI_TK_CLIENT},
        {"redirect-uri", required_argument, NULL, CLI_TK_REDIRECT_URI},
        {"pkce-verifier", required_argument, NULL, CLI_TK_PKCE_VERIFIER},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    static cpstore_v1_ConsumeTokenRequest req;
    static cpstore_v1_ConsumeTokenResponse resp;
    const char *token = NULL;
    cpc_reply_t reply;
    int opt;
    int rc = 0;

    optind = 0;
    while ((opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            fputs(cli_tokens_usage, stdout);
            return CLI_EXIT_YES;
        case CLI_TK_KIND:
            rc = cli_copy_string(cmd, "--kind", optarg, req.kind,
                                 sizeof(req.kind));
            break;
        case CLI_TK_TOKEN:
            token = optarg;
            break;
        case CLI_TK_CLIENT:
            rc = cli_copy_string(cmd, "--client", optarg, req.client_id,
                                 sizeof(req.client_id));
            break;
        case CLI_TK_REDIRECT_URI:
            rc = cli_copy_string(cmd, "--redirect-uri", optarg,
                                 req.redirect_uri, sizeof(req.redirect_uri));
            break;
        case CLI_TK_PKCE_VERIFIER:
            rc = cli_copy_string(cmd, "--pkce-verifier", optarg,
                                 req.pkce_verifier, sizeof(req.pkce_verifier));
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
    if (req.kind[0] == '\0') {
        return cli_usage_error(cmd, "--kind is required");
    }
    if (token == NULL || *token == '\0') {
        return cli_usage_error(cmd, "--token is required");
    }
    if (cli_tokens_token(cmd, token, req.token, sizeof(req.token)) != 0) {
        return CLI_EXIT_USAGE;
    }

    rc = cli_rpc(o, cpstore_v1_TokensMethod_TOKENS_METHOD_CONSUME,
                 cpstore_v1_ConsumeTokenRequest_fields, &req,
                 cpstore_v1_ConsumeTokenResponse_fields, &resp, &reply);
    memset(req.token, 0, sizeof(req.token));
    if (rc != 0) {
        return rc;
    }
    cli_tokens_print_consumed(o, &resp);
    return resp.code == cpstore_v1_ConsumeCode_CONSUME_CONSUMED ? CLI_EXIT_YES
                                                                : CLI_EXIT_NO;
}


/* ---- revoke ---------------------------------------------------------- */

static int cli_tokens_revoke(cli_opts_t *o, int argc, char **argv) {
    static const char cmd[] = "tokens revoke";
    static const struct option longopts[] = {
        {"kind", required_argument, NULL, CLI_TK_KIND},
        {"token", required_argument, NULL, CLI_TK_TOKEN},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    static cpstore_v1_RevokeTokenRequest req;
    cpstore_v1_RevokeTokenResponse resp =
        cpstore_v1_RevokeTokenResponse_init_zero;
    const char *token = NULL;
    cpc_reply_t reply;
    cli_json_t j;
    int opt;
    int rc = 0;

    optind = 0;
    while ((opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            fputs(cli_tokens_usage, stdout);
            return CLI_EXIT_YES;
        case CLI_TK_KIND:
            rc = cli_copy_string(cmd, "--kind", optarg, req.kind,
                                 sizeof(req.kind));
            break;
        case CLI_TK_TOKEN:
            token = optarg;
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
    if (req.kind[0] == '\0') {
        return cli_usage_error(cmd, "--kind is required");
    }
    if (token == NULL || *token == '\0') {
        return cli_usage_error(cmd, "--token is required");
    }
    if (cli_tokens_token(cmd, token, req.token, sizeof(req.token)) != 0) {
        return CLI_EXIT_USAGE;
    }

    rc = cli_rpc(o, cpstore_v1_TokensMethod_TOKENS_METHOD_REVOKE,
                 cpstore_v1_RevokeTokenRequest_fields, &req,
                 cpstore_v1_RevokeTokenResponse_fields, &resp, &reply);
    memset(req.token, 0, sizeof(req.token));
    if (rc != 0) {
        return rc;
    }
    if (o->json) {
        cli_json_begin(&j, stdout);
        cli_json_bool(&j, "revoked", resp.revoked);
        cli_json_end(&j);
    } else {
        cli_field("revoked", "%s", resp.revoked ? "yes" : "no");
    }
    return resp.revoked ? CLI_EXIT_YES : CLI_EXIT_NO;
}


int cli_tokens_main(cli_opts_t *o, int argc, char **argv) {
    if (argc < 2) {
        return cli_usage_error("tokens", "missing command after 'tokens'");
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        fputs(cli_tokens_usage, stdout);
        return CLI_EXIT_YES;
    }
    if (strcmp(argv[1], "issue") == 0) {
        return cli_tokens_issue(o, argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "consume") == 0) {
        return cli_tokens_consume(o, argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "revoke") == 0) {
        return cli_tokens_revoke(o, argc - 1, argv + 1);
    }
    return cli_usage_error("tokens", "unknown command 'tokens %s'", argv[1]);
}
