/*
 * `cpstore keys create|verify|get|list|revoke|rotate`.
 *
 * `keys list` decodes the keys one at a time (ListApiKeysResponse.keys is
 * a nanopb callback field) and writes each into a memory buffer, which
 * goes to stdout only once the whole answer has decoded: a response that
 * breaks halfway prints nothing rather than half a list.
 */
#include "cli.h"
#include "cli_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pb_decode.h>

#include "clock.h"

enum {
    CLI_KEYS_USER = CLI_OPT_FIRST_COMMAND,
    CLI_KEYS_NAME,
    CLI_KEYS_SCOPE,
    CLI_KEYS_ORG,
    CLI_KEYS_PROJECT,
    CLI_KEYS_EXPIRES_IN,
    CLI_KEYS_KEY,
    CLI_KEYS_ID,
    CLI_KEYS_GRACE,
};

#define CLI_KEYS_COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const char cli_keys_usage[] =
    "Usage: cpstore [OPTIONS] keys create --user ID [--name TEXT]\n"
    "                   [--scope S]... [--org ID] [--project ID]\n"
    "                   [--expires-in DURATION]\n"
    "       cpstore [OPTIONS] keys verify --key KEY [--scope S]...\n"
    "                   [--org ID] [--project ID]\n"
    "       cpstore [OPTIONS] keys get --id KEY_ID\n"
    "       cpstore [OPTIONS] keys list --user ID\n"
    "       cpstore [OPTIONS] keys revoke --id KEY_ID\n"
    "       cpstore [OPTIONS] keys rotate --id KEY_ID [--grace DURATION]\n"
    "\n"
    "Commands:\n"
    "  create  issue a new API key; the key is printed this once only\n"
    "  verify  check a key, the scopes it must grant and its binding\n"
    "  get     describe a key (never the key itself)\n"
    "  list    a user's 50 newest keys, newest first\n"
    "  revoke  refuse a key from now on, on every server\n"
    "  rotate  issue a new key with the same attributes and end the old\n"
    "          one after a grace period; the new key is printed once only\n"
    "\n"
    "Options:\n"
    "  --user ID           create: owner of the new key; list: whose keys\n"
    "  --name TEXT         a label for the new key\n"
    "  --scope S           create: a scope granted; verify: a scope required\n"
    "                      (resource:action, repeatable)\n"
    "  --org ID            create: bind the key to this org;\n"
    "                      verify: the org the caller acts for\n"
    "  --project ID        the same, for a project\n"
    "  --expires-in DURATION  lifetime of the new key (default: no expiry)\n"
    "  --key KEY           the key to verify; '-' reads it from stdin, which\n"
    "                      keeps it out of the process list\n"
    "  --id KEY_ID         the key to describe, revoke or rotate\n"
    "  --grace DURATION    how long the old key keeps working after a\n"
    "                      rotation, never past its own expiry (default 0:\n"
    "                      it stops at once)\n"
    "\n"
    "verify exits 0 when the key is valid and 1 when it is not; the other\n"
    "commands exit 0 when done. All exit 3 on an error, such as NOT_FOUND\n"
    "for an unknown key_id or FAILED_PRECONDITION for rotating a revoked or\n"
    "expired key.\n"
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

    rc = cli_rpc(o, cpstore_v1_ApiKeysMethod_API_KEYS_METHOD_CREATE,
                 cpstore_v1_CreateApiKeyRequest_fields, &req,
                 cpstore_v1_CreateApiKeyResponse_fields, &resp, &reply);
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

    rc = cli_rpc(o, cpstore_v1_ApiKeysMethod_API_KEYS_METHOD_VERIFY,
                 cpstore_v1_VerifyApiKeyRequest_fields, &req,
                 cpstore_v1_VerifyApiKeyResponse_fields, &resp, &reply);
    if (rc != 0) {
        return rc;
    }
    cli_keys_print_verified(o, &resp);
    return resp.valid ? CLI_EXIT_YES : CLI_EXIT_NO;
}


/* ---- describing a key ------------------------------------------------ */


/* The key's state as of now: what a verify would say before any context
 * or scope check. */
static const char *cli_keys_state(const cpstore_v1_ApiKey *k, int64_t now) {
    if (k->revoked_at_ms != 0) {
        return "revoked";
    }
    if (k->expires_at_ms != 0 && now >= k->expires_at_ms) {
        return "expired";
    }
    return "active";
}


/* The key's fields as members of the JSON object open in j. */
static void cli_keys_json_fields(cli_json_t *j, const cpstore_v1_ApiKey *k) {
    cli_json_str(j, "key_id", k->key_id);
    cli_json_str(j, "hint", k->hint);
    cli_json_str(j, "user_id", k->user_id);
    cli_json_str(j, "name", k->name);
    cli_json_array(j, "scopes");
    for (pb_size_t i = 0; i < k->scopes_count; i++) {
        cli_json_str(j, NULL, k->scopes[i]);
    }
    cli_json_close(j);
    cli_json_str(j, "org_id", k->org_id);
    cli_json_str(j, "project_id", k->project_id);
    cli_json_i64(j, "created_at_ms", k->created_at_ms);
    cli_json_i64(j, "expires_at_ms", k->expires_at_ms);
    cli_json_i64(j, "revoked_at_ms", k->revoked_at_ms);
    cli_json_i64(j, "last_used_at_ms", k->last_used_at_ms);
    cli_json_str(j, "rotated_from", k->rotated_from);
    cli_json_object(j, "metadata");
    for (pb_size_t i = 0; i < k->metadata_count; i++) {
        cli_json_str(j, k->metadata[i].key, k->metadata[i].value);
    }
    cli_json_close(j);
}


static void cli_keys_print_time(const char *name, int64_t ms) {
    char when[64];

    cli_format_time(ms, when, sizeof(when));
    cli_field(name, "%s", when);
}


static void cli_keys_print_key(const cpstore_v1_ApiKey *k) {
    cli_field("key_id", "%s", k->key_id);
    cli_field("hint", "%s", k->hint);
    cli_field("state", "%s", cli_keys_state(k, clock_now_ms()));
    cli_field("user_id", "%s", k->user_id);
    if (k->name[0] != '\0') {
        cli_field("name", "%s", k->name);
    }
    for (pb_size_t i = 0; i < k->scopes_count; i++) {
        cli_field(i == 0 ? "scopes" : "", "%s", k->scopes[i]);
    }
    if (k->org_id[0] != '\0') {
        cli_field("org_id", "%s", k->org_id);
    }
    if (k->project_id[0] != '\0') {
        cli_field("project_id", "%s", k->project_id);
    }
    cli_keys_print_time("created", k->created_at_ms);
    cli_keys_print_time("expires", k->expires_at_ms);
    if (k->revoked_at_ms != 0) {
        cli_keys_print_time("revoked", k->revoked_at_ms);
    }
    cli_keys_print_time("last_used", k->last_used_at_ms);
    if (k->rotated_from[0] != '\0') {
        cli_field("rotated_from", "%s", k->rotated_from);
    }
    for (pb_size_t i = 0; i < k->metadata_count; i++) {
        cli_field(i == 0 ? "metadata" : "", "%s=%s", k->metadata[i].key,
                  k->metadata[i].value);
    }
}


/*
 * The options of get, revoke and rotate: --id, and --grace when grace is
 * not NULL. Returns 0, CLI_EXIT_YES after --help (*help set), or
 * CLI_EXIT_USAGE.
 */
static int cli_keys_parse_id(cli_opts_t *o,
                             int argc,
                             char **argv,
                             const char *cmd,
                             char *id,
                             size_t id_size,
                             uint64_t *grace,
                             int *help) {
    static const struct option id_opts[] = {
        {"id", required_argument, NULL, CLI_KEYS_ID},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    static const struct option grace_opts[] = {
        {"id", required_argument, NULL, CLI_KEYS_ID},
        {"grace", required_argument, NULL, CLI_KEYS_GRACE},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    int opt;
    int rc = 0;

    *help = 0;
    optind = 0;
    while ((opt = getopt_long(argc, argv, ":h",
                              grace != NULL ? grace_opts : id_opts, NULL)) !=
           -1) {
        switch (opt) {
        case 'h':
            fputs(cli_keys_usage, stdout);
            *help = 1;
            return CLI_EXIT_YES;
        case CLI_KEYS_ID:
            rc = cli_copy_string(cmd, "--id", optarg, id, id_size);
            break;
        case CLI_KEYS_GRACE:
            rc = cli_parse_duration(cmd, "--grace", optarg, grace);
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
    if (id[0] == '\0') {
        return cli_usage_error(cmd, "--id is required");
    }
    return 0;
}


/* ---- get ------------------------------------------------------------- */


static int cli_keys_get(cli_opts_t *o, int argc, char **argv) {
    static const char cmd[] = "keys get";
    static cpstore_v1_GetApiKeyRequest req;
    static cpstore_v1_GetApiKeyResponse resp;
    cpc_reply_t reply;
    cli_json_t j;
    int help;
    int rc;

    rc = cli_keys_parse_id(o, argc, argv, cmd, req.key_id, sizeof(req.key_id),
                           NULL, &help);
    if (rc != 0 || help) {
        return rc;
    }

    rc = cli_rpc(o, cpstore_v1_ApiKeysMethod_API_KEYS_METHOD_GET,
                 cpstore_v1_GetApiKeyRequest_fields, &req,
                 cpstore_v1_GetApiKeyResponse_fields, &resp, &reply);
    if (rc != 0) {
        return rc;
    }

    if (o->json) {
        cli_json_begin(&j, stdout);
        cli_keys_json_fields(&j, &resp.key);
        cli_json_end(&j);
    } else {
        cli_keys_print_key(&resp.key);
    }
    return CLI_EXIT_YES;
}


/* ---- list ------------------------------------------------------------ */


typedef struct cli_keys_list {
    const cli_opts_t *o;
    FILE *out; /* the memory buffer */
    cli_json_t json;
    size_t count;
    int64_t now;
    cpstore_v1_ApiKey key; /* one decoded item, reused */
} cli_keys_list_t;


/* One readable line per key. */
static void
cli_keys_list_line(FILE *f, const cpstore_v1_ApiKey *k, int64_t now) {
    char created[64];

    cli_format_time(k->created_at_ms, created, sizeof(created));
    fprintf(f, "%-28s  %-20s  %-7s  %-24s  %s\n", k->key_id, k->hint,
            cli_keys_state(k, now), created, k->name);
}


/* nanopb calls this once per element of ListApiKeysResponse.keys. */
static bool
cli_keys_list_item(pb_istream_t *stream, const pb_field_t *field, void **arg) {
    cli_keys_list_t *l = *arg;

    (void)field;
    if (!pb_decode(stream, cpstore_v1_ApiKey_fields, &l->key)) {
        return false;
    }
    if (l->o->json) {
        cli_json_object(&l->json, NULL);
        cli_keys_json_fields(&l->json, &l->key);
        cli_json_close(&l->json);
    } else {
        cli_keys_list_line(l->out, &l->key, l->now);
    }
    l->count++;
    return true;
}


/* Write the decoded list (buf) to stdout, closing the JSON or adding the
 * readable header. */
static void cli_keys_list_print(cli_keys_list_t *l, const char *buf) {
    if (l->o->json) {
        fputs(buf, stdout);
        return;
    }
    if (l->count == 0) {
        printf("no keys\n");
        return;
    }
    printf("%-28s  %-20s  %-7s  %-24s  %s\n", "KEY_ID", "HINT", "STATE",
           "CREATED", "NAME");
    fputs(buf, stdout);
}


static int cli_keys_list(cli_opts_t *o, int argc, char **argv) {
    static const char cmd[] = "keys list";
    static const struct option longopts[] = {
        {"user", required_argument, NULL, CLI_KEYS_USER},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    static cpstore_v1_ListApiKeysRequest req;
    static cli_keys_list_t list;
    cpstore_v1_ListApiKeysResponse resp =
        cpstore_v1_ListApiKeysResponse_init_zero;
    cpc_reply_t reply;
    char *buf = NULL;
    size_t buf_len = 0;
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
    list.o = o;
    list.now = clock_now_ms();
    list.out = open_memstream(&buf, &buf_len);
    if (list.out == NULL) {
        cpc_close(c);
        fprintf(stderr, "cpstore: out of memory\n");
        return CLI_EXIT_ERROR;
    }
    if (o->json) {
        cli_json_begin(&list.json, list.out);
        cli_json_array(&list.json, "keys");
    }
    resp.keys.funcs.decode = cli_keys_list_item;
    resp.keys.arg = &list;
    rc = cpc_call(c, cpstore_v1_ApiKeysMethod_API_KEYS_METHOD_LIST,
                  cpstore_v1_ListApiKeysRequest_fields, &req,
                  cpstore_v1_ListApiKeysResponse_fields, &resp, &reply);
    rc = cli_call_result(c, rc, &reply);
    cpc_close(c);
    if (rc == 0 && o->json) {
        cli_json_end(&list.json);
    }
    if (fclose(list.out) != 0 && rc == 0) {
        fprintf(stderr, "cpstore: out of memory\n");
        rc = CLI_EXIT_ERROR;
    }
    if (rc == 0) {
        cli_keys_list_print(&list, buf);
    }
    free(buf);
    return rc != 0 ? rc : CLI_EXIT_YES;
}


/* ---- revoke ---------------------------------------------------------- */


static int cli_keys_revoke(cli_opts_t *o, int argc, char **argv) {
    static const char cmd[] = "keys revoke";
    static cpstore_v1_RevokeApiKeyRequest req;
    cpstore_v1_RevokeApiKeyResponse resp;
    cpc_reply_t reply;
    cli_json_t j;
    int help;
    int rc;

    rc = cli_keys_parse_id(o, argc, argv, cmd, req.key_id, sizeof(req.key_id),
                           NULL, &help);
    if (rc != 0 || help) {
        return rc;
    }

    rc = cli_rpc(o, cpstore_v1_ApiKeysMethod_API_KEYS_METHOD_REVOKE,
                 cpstore_v1_RevokeApiKeyRequest_fields, &req,
                 cpstore_v1_RevokeApiKeyResponse_fields, &resp, &reply);
    if (rc != 0) {
        return rc;
    }

    if (o->json) {
        cli_json_begin(&j, stdout);
        cli_json_str(&j, "key_id", req.key_id);
        cli_json_i64(&j, "revoked_at_ms", resp.revoked_at_ms);
        cli_json_end(&j);
    } else {
        cli_field("key_id", "%s", req.key_id);
        cli_keys_print_time("revoked", resp.revoked_at_ms);
    }
    return CLI_EXIT_YES;
}


/* ---- rotate ---------------------------------------------------------- */


static void cli_keys_print_rotated(const cli_opts_t *o,
                                   const cpstore_v1_RotateApiKeyRequest *req,
                                   const cpstore_v1_RotateApiKeyResponse *r) {
    const cpstore_v1_ApiKey *k = &r->info;
    cli_json_t j;

    if (o->json) {
        cli_json_begin(&j, stdout);
        cli_json_str(&j, "key", r->key);
        cli_json_str(&j, "key_id", r->key_id);
        cli_json_str(&j, "hint", r->has_info ? k->hint : "");
        cli_json_i64(&j, "expires_at_ms", r->has_info ? k->expires_at_ms : 0);
        cli_json_str(&j, "rotated_from",
                     r->has_info ? k->rotated_from : req->key_id);
        cli_json_i64(&j, "old_expires_at_ms", r->old_expires_at_ms);
        cli_json_end(&j);
        return;
    }

    cli_field("key", "%s", r->key);
    cli_field("key_id", "%s", r->key_id);
    if (r->has_info && k->hint[0] != '\0') {
        cli_field("hint", "%s", k->hint);
    }
    cli_keys_print_time("expires", r->has_info ? k->expires_at_ms : 0);
    cli_field("replaces", "%s", req->key_id);
    cli_keys_print_time("old_ends", r->old_expires_at_ms);
    printf("\nStore this key now: it is shown only once and cannot be shown "
           "again.\n");
}


static int cli_keys_rotate(cli_opts_t *o, int argc, char **argv) {
    static const char cmd[] = "keys rotate";
    static cpstore_v1_RotateApiKeyRequest req;
    static cpstore_v1_RotateApiKeyResponse resp;
    cpc_reply_t reply;
    int help;
    int rc;

    rc = cli_keys_parse_id(o, argc, argv, cmd, req.key_id, sizeof(req.key_id),
                           &req.grace_ms, &help);
    if (rc != 0 || help) {
        return rc;
    }

    rc = cli_rpc(o, cpstore_v1_ApiKeysMethod_API_KEYS_METHOD_ROTATE,
                 cpstore_v1_RotateApiKeyRequest_fields, &req,
                 cpstore_v1_RotateApiKeyResponse_fields, &resp, &reply);
    if (rc != 0) {
        return rc;
    }
    cli_keys_print_rotated(o, &req, &resp);
    return CLI_EXIT_YES;
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
    if (strcmp(argv[1], "get") == 0) {
        return cli_keys_get(o, argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "list") == 0) {
        return cli_keys_list(o, argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "revoke") == 0) {
        return cli_keys_revoke(o, argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "rotate") == 0) {
        return cli_keys_rotate(o, argc - 1, argv + 1);
    }
    return cli_usage_error("keys", "unknown command 'keys %s'", argv[1]);
}
