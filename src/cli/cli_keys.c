/* `cpstore keys create` and `cpstore keys verify`. */
#include "cli.h"
#include "cli_json.h"

#include <stdio.h>
#include <string.h>

enum {
    CLI_KEYS_USER = CLI_OPT_FIRST_COMMAND,
    CLI_KEYS_NAME,
    CLI_KEYS_SCOPE,
    CLI_KEYS_ORG,
    CLI_KEYS_PROJECT,
    CLI_KEYS_EXPIRES_IN,
    CLI_KEYS_KEY,
};

#define CLI_KEYS_COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const char cli_keys_usage[] =
    "Usage: cpstore [OPTIONS] keys create --user ID [--name TEXT]\n"
    "                   [--scope S]... [--org ID] [--project ID]\n"
    "                   [--expires-in DURATION]\n"
    "       cpstore [OPTIONS] keys verify --key KEY [--scope S]...\n"
    "                   [--org ID] [--project ID]\n"
    "\n"
    "Commands:\n"
    "  create  issue a new API key; the key is printed this once only\n"
    "  verify  check a key, the scopes it must grant and its binding\n"
    "\n"
    "Options:\n"
    "  --user ID           owner of the new key\n"
    "  --name TEXT         a label for the new key\n"
    "  --scope S           create: a scope granted; verify: a scope required\n"
    "                      (resource:action, repeatable)\n"
    "  --org ID            create: bind the key to this org;\n"
    "                      verify: the org the caller acts for\n"
    "  --project ID        the same, for a project\n"
    "  --expires-in DURATION  lifetime of the new key (default: no expiry)\n"
    "  --key KEY           the key to verify; '-' reads it from stdin, which\n"
    "                      keeps it out of the process list\n"
    "\n"
    "create exits 0 when the key was created; verify exits 0 when the key is\n"
    "valid and 1 when it is not; both exit 3 on an error.\n"
    "\n" CLI_COMMON_HELP;


/* ---- create ---------------------------------------------------------- */


static void cli_keys_print_created(const cli_opts_t *o,
                                   const cpstore_v1_CreateApiKeyResponse *r) {
    int64_t expires = r->has_info ? r->info.expires_at_ms : 0;
    char when[64];
    cli_json_t j;

    if (o->json) {
        cli_json_begin(&j, stdout);
        cli_json_str(&j, "key", r->key);
        cli_json_str(&j, "key_id", r->key_id);
        cli_json_str(&j, "hint", r->has_info ? r->info.hint : "");
        cli_json_i64(&j, "expires_at_ms", expires);
        cli_json_end(&j);
        return;
    }

    cli_format_time(expires, when, sizeof(when));
    cli_field("key", "%s", r->key);
    cli_field("key_id", "%s", r->key_id);
    if (r->has_info && r->info.hint[0] != '\0') {
        cli_field("hint", "%s", r->info.hint);
    }
    cli_field("expires", "%s", when);
    printf("\nStore this key now: it is shown only once and cannot be shown "
           "again.\n");
}


static int cli_keys_create(cli_opts_t *o, int argc, char **argv) {
    static const char cmd[] = "keys create";
    static const struct option longopts[] = {
        {"user", required_argument, NULL, CLI_KEYS_USER},
        {"name", required_argument, NULL, CLI_KEYS_NAME},
        {"scope", required_argument, NULL, CLI_KEYS_SCOPE},
        {"org", required_argument, NULL, CLI_KEYS_ORG},
        {"project", required_argument, NULL, CLI_KEYS_PROJECT},
        {"expires-in", required_argument, NULL, CLI_KEYS_EXPIRES_IN},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    /* Static: the request and response are about 30 KB together. */
    static cpstore_v1_CreateApiKeyRequest req;
    static cpstore_v1_CreateApiKeyResponse resp;
    cpc_reply_t reply;
    cpc_t *c;
    int opt;
    int rc = 0;

    optind = 0;
    while ((opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            fputs(cli_keys_usage, stdout);
            return CLI_EXIT_YES;
        case CLI_KEYS_USER:
            rc = cli_copy_string(cmd, "--user", optarg, req.user_id,
                                 sizeof(req.user_id));
            break;
        case CLI_KEYS_NAME:
            rc = cli_copy_string(cmd, "--name", optarg, req.name,
                                 sizeof(req.name));
            break;
        case CLI_KEYS_SCOPE:
            rc = cli_add_string(cmd, "--scope", optarg, req.scopes[0],
                                sizeof(req.scopes[0]),
                                CLI_KEYS_COUNT(req.scopes), &req.scopes_count);
            break;
        case CLI_KEYS_ORG:
            rc = cli_copy_string(cmd, "--org", optarg, req.org_id,
                                 sizeof(req.org_id));
            break;
        case CLI_KEYS_PROJECT:
            rc = cli_copy_string(cmd, "--project", optarg, req.project_id,
                                 sizeof(req.project_id));
            break;
        case CLI_KEYS_EXPIRES_IN:
            rc = cli_parse_duration(cmd, "--expires-in", optarg,
                                    &req.expires_in_ms);
            if (rc == 0 && req.expires_in_ms == 0) {
                rc = cli_usage_error(cmd, "--expires-in must be above 0");
            }
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
    if (req.user_id[0] == '\0') {
        return cli_usage_error(cmd, "--user is required");
    }

    c = cli_connect(o);
    if (c == NULL) {
        return CLI_EXIT_ERROR;
    }
    rc = cpc_apikeys_create(c, &req, &resp, &reply);
    rc = cli_call_result(c, rc, &reply);
    cpc_close(c);
    if (rc != 0) {
        return rc;
    }
    cli_keys_print_created(o, &resp);
    return CLI_EXIT_YES;
}


/* ---- verify ---------------------------------------------------------- */


static const char *cli_keys_code_name(cpstore_v1_VerifyCode code) {
    static const char *const names[] = {
        "VERIFY_CODE_UNSPECIFIED",
        "VALID",
        "NOT_FOUND",
        "REVOKED",
        "EXPIRED",
        "CONTEXT_MISMATCH",
        "INSUFFICIENT_SCOPE",
    };

    if ((int)code < 0 || (size_t)code >= CLI_KEYS_COUNT(names)) {
        return "VERIFY_CODE_UNKNOWN";
    }
    return names[code];
}


/* Read the key from stdin: one line, without its line ending. */
static int cli_keys_read_key(const char *cmd, char *dst, size_t dst_size) {
    char line[512]; /* room for any key that fits dst, and its line end */
    size_t len;

    if (fgets(line, sizeof(line), stdin) == NULL) {
        return cli_usage_error(cmd, "--key -: nothing to read on stdin");
    }
    len = strcspn(line, "\r\n");
    if (line[len] == '\0' && !feof(stdin)) {
        return cli_usage_error(cmd, "--key is longer than %zu bytes",
                               dst_size - 1);
    }
    line[len] = '\0';
    return cli_copy_string(cmd, "--key", line, dst, dst_size);
}


static void cli_keys_print_verified(const cli_opts_t *o,
                                    const cpstore_v1_VerifyApiKeyResponse *r) {
    char when[64];
    cli_json_t j;

    if (o->json) {
        cli_json_begin(&j, stdout);
        cli_json_bool(&j, "valid", r->valid);
        cli_json_str(&j, "code", cli_keys_code_name(r->code));
        cli_json_str(&j, "key_id", r->key_id);
        cli_json_str(&j, "user_id", r->user_id);
        cli_json_array(&j, "scopes");
        for (pb_size_t i = 0; i < r->scopes_count; i++) {
            cli_json_str(&j, NULL, r->scopes[i]);
        }
        cli_json_close(&j);
        cli_json_str(&j, "org_id", r->org_id);
        cli_json_str(&j, "project_id", r->project_id);
        cli_json_i64(&j, "expires_at_ms", r->expires_at_ms);
        cli_json_end(&j);
        return;
    }

    cli_field("valid", "%s", r->valid ? "yes" : "no");
    cli_field("code", "%s", cli_keys_code_name(r->code));
    if (r->key_id[0] != '\0') {
        cli_field("key_id", "%s", r->key_id);
    }
    if (r->user_id[0] != '\0') {
        cli_field("user_id", "%s", r->user_id);
    }
    for (pb_size_t i = 0; i < r->scopes_count; i++) {
        cli_field(i == 0 ? "scopes" : "", "%s", r->scopes[i]);
    }
    if (r->org_id[0] != '\0') {
        cli_field("org_id", "%s", r->org_id);
    }
    if (r->project_id[0] != '\0') {
        cli_field("project_id", "%s", r->project_id);
    }
    if (r->key_id[0] != '\0') {
        cli_format_time(r->expires_at_ms, when, sizeof(when));
        cli_field("expires", "%s", when);
    }
}


static int cli_keys_verify(cli_opts_t *o, int argc, char **argv) {
    static const char cmd[] = "keys verify";
    static const struct option longopts[] = {
        {"key", required_argument, NULL, CLI_KEYS_KEY},
        {"scope", required_argument, NULL, CLI_KEYS_SCOPE},
        {"org", required_argument, NULL, CLI_KEYS_ORG},
        {"project", required_argument, NULL, CLI_KEYS_PROJECT},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    static cpstore_v1_VerifyApiKeyRequest req;
    static cpstore_v1_VerifyApiKeyResponse resp;
    const char *key = NULL;
    cpc_reply_t reply;
    cpc_t *c;
    int opt;
    int rc = 0;

    optind = 0;
    while ((opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            fputs(cli_keys_usage, stdout);
            return CLI_EXIT_YES;
        case CLI_KEYS_KEY:
            key = optarg;
            break;
        case CLI_KEYS_SCOPE:
            rc = cli_add_string(cmd, "--scope", optarg, req.required_scopes[0],
                                sizeof(req.required_scopes[0]),
                                CLI_KEYS_COUNT(req.required_scopes),
                                &req.required_scopes_count);
            break;
        case CLI_KEYS_ORG:
            rc = cli_copy_string(cmd, "--org", optarg, req.org_id,
                                 sizeof(req.org_id));
            break;
        case CLI_KEYS_PROJECT:
            rc = cli_copy_string(cmd, "--project", optarg, req.project_id,
                                 sizeof(req.project_id));
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
    if (key == NULL || *key == '\0') {
        return cli_usage_error(cmd, "--key is required");
    }
    if (strcmp(key, "-") == 0) {
        rc = cli_keys_read_key(cmd, req.key, sizeof(req.key));
    } else {
        rc = cli_copy_string(cmd, "--key", key, req.key, sizeof(req.key));
    }
    if (rc != 0) {
        return CLI_EXIT_USAGE;
    }

    c = cli_connect(o);
    if (c == NULL) {
        return CLI_EXIT_ERROR;
    }
    rc = cpc_apikeys_verify(c, &req, &resp, &reply);
    rc = cli_call_result(c, rc, &reply);
    cpc_close(c);
    if (rc != 0) {
        return rc;
    }
    cli_keys_print_verified(o, &resp);
    return resp.valid ? CLI_EXIT_YES : CLI_EXIT_NO;
}


int cli_keys_main(cli_opts_t *o, int argc, char **argv) {
    if (argc < 2) {
        return cli_usage_error("keys", "missing command after 'keys'");
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        fputs(cli_keys_usage, stdout);
        return CLI_EXIT_YES;
    }
    if (strcmp(argv[1], "create") == 0) {
        return cli_keys_create(o, argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "verify") == 0) {
        return cli_keys_verify(o, argc - 1, argv + 1);
    }
    return cli_usage_error("keys", "unknown command 'keys %s'", argv[1]);
}
