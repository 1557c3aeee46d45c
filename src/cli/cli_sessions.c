/*
 * `cpstore sessions create | validate | revoke | revoke-all | list`.
 *
 * A session token given as '-' is read from stdin, which keeps it out of
 * the process list. The list response is a nanopb callback field: its
 * sessions are decoded one at a time, first all of them to check the
 * reply, then again to print each, so a reply that does not decode prints
 * nothing on stdout.
 */
#include "cli.h"
#include "cli_json.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <pb_decode.h>

#include "cpstore/v1/sessions.pb.h"

enum {
    CLI_SS_USER = CLI_OPT_FIRST_COMMAND,
    CLI_SS_KIND,
    CLI_SS_IDLE,
    CLI_SS_MAX,
    CLI_SS_META,
    CLI_SS_TOKEN,
    CLI_SS_ID,
};

#define CLI_SS_COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Session metadata bounds of the server (SS_META_KEY_MAX and
 * SS_META_VALUE_MAX): MetadataEntry is shared with API keys and tokens,
 * whose longer limits size its buffers, so the struct alone would let
 * through entries a session refuses. */
#define CLI_SS_META_KEY_MAX   63
#define CLI_SS_META_VALUE_MAX 511
_Static_assert(sizeof(((cpstore_v1_MetadataEntry *)0)->key) >
                   CLI_SS_META_KEY_MAX,
               "a session metadata key fits a MetadataEntry");
_Static_assert(sizeof(((cpstore_v1_MetadataEntry *)0)->value) >
                   CLI_SS_META_VALUE_MAX,
               "a session metadata value fits a MetadataEntry");

static const char cli_sessions_usage[] =
    "Usage: cpstore [OPTIONS] sessions create --user ID [--kind KIND]\n"
    "                   [--idle DURATION] [--max DURATION] [--meta K=V]...\n"
    "       cpstore [OPTIONS] sessions validate --token TOKEN\n"
    "       cpstore [OPTIONS] sessions revoke (--token TOKEN | --id ID)\n"
    "       cpstore [OPTIONS] sessions revoke-all --user ID\n"
    "       cpstore [OPTIONS] sessions list --user ID\n"
    "\n"
    "Commands:\n"
    "  create      start a session; its token is printed this once only\n"
    "  validate    check a session token; a valid one's idle expiry slides\n"
    "  revoke      end one session, named by its token or its id\n"
    "  revoke-all  end every session of a user\n"
    "  list        a user's live sessions, newest first (at most 50),\n"
    "              never their tokens\n"
    "\n"
    "Options:\n"
    "  --user ID           the user the sessions belong to\n"
    "  --kind KIND         the kind of session, e.g. user or admin\n"
    "                      (default: user)\n"
    "  --idle DURATION     idle timeout: the session ends when unused this\n"
    "                      long (default: the server's, 30m unless set)\n"
    "  --max DURATION      absolute lifetime, however much the session is\n"
    "                      used (default: the server's, 12h unless set)\n"
    "  --meta K=V          a metadata entry such as ip=10.0.0.7 or\n"
    "                      user_agent=curl (repeatable, at most 16)\n"
    "  --token TOKEN       the session token; '-' reads it from stdin\n"
    "  --id ID             the session id (ses_...)\n"
    "\n"
    "create and list exit 0 on success; validate exits 0 when the session\n"
    "is valid and 1 when it is not; revoke and revoke-all exit 0 when they\n"
    "ended a session and 1 when there was none to end; all exit 3 on an\n"
    "error.\n"
    "\n" CLI_COMMON_HELP;


/* ---- shared pieces --------------------------------------------------- */

static int cli_sessions_call(const cli_opts_t *o,
                             uint16_t method,
                             const pb_msgdesc_t *req_fields,
                             const void *req,
                             const pb_msgdesc_t *resp_fields,
                             void *resp,
                             cpc_reply_t *reply,
                             cpc_t **conn) {
    int rc;

    *conn = cli_connect(o);
    if (*conn == NULL) {
        return CLI_EXIT_ERROR;
    }
    rc = cpc_call(*conn, method, req_fields, req, resp_fields, resp, reply);
    return cli_call_result(*conn, rc, reply);
}


/* "SESSION_VALID" without its "SESSION_" prefix. */
static const char *cli_sessions_code_name(cpstore_v1_SessionCode code) {
    static const char *const names[] = {
        "CODE_UNSPECIFIED", "VALID", "EXPIRED", "REVOKED", "NOT_FOUND",
    };

    if ((int)code < 0 || (size_t)code >= CLI_SS_COUNT(names)) {
        return "CODE_UNKNOWN";
    }
    return names[code];
}


/* The token from --token: the argument, or one line of stdin for '-'. */
static int cli_sessions_token(const char *cmd,
                              const char *arg,
                              char *dst,
                              size_t dst_size) {
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


/* A timeout option: a duration above 0 (0 would mean the default). */
static int cli_sessions_duration(const char *cmd,
                                 const char *opt,
                                 const char *arg,
                                 uint64_t *out) {
    if (cli_parse_duration(cmd, opt, arg, out) != 0) {
        return CLI_EXIT_USAGE;
    }
    if (*out == 0) {
        return cli_usage_error(cmd, "%s must be above 0", opt);
    }
    return 0;
}


/* --meta K=V: split at the first '='; keys are unique and not empty. */
static int cli_sessions_meta(const char *cmd,
                             const char *arg,
                             cpstore_v1_CreateSessionRequest *req) {
    const char *eq = strchr(arg, '=');
    cpstore_v1_MetadataEntry *e;
    size_t key_len;

    if (eq == NULL || eq == arg) {
        return cli_usage_error(cmd, "--meta needs KEY=VALUE, not '%s'", arg);
    }
    if (req->metadata_count >= CLI_SS_COUNT(req->metadata)) {
        return cli_usage_error(cmd, "--meta is allowed at most %zu times",
                               CLI_SS_COUNT(req->metadata));
    }
    key_len = (size_t)(eq - arg);
    e = &req->metadata[req->metadata_count];
    if (key_len > CLI_SS_META_KEY_MAX) {
        return cli_usage_error(cmd, "--meta key is longer than %d bytes",
                               CLI_SS_META_KEY_MAX);
    }
    memcpy(e->key, arg, key_len);
    e->key[key_len] = '\0';
    for (pb_size_t i = 0; i < req->metadata_count; i++) {
        if (strcmp(req->metadata[i].key, e->key) == 0) {
            return cli_usage_error(cmd, "--meta key '%s' is repeated", e->key);
        }
    }
    if (cli_copy_string(cmd, "--meta value", eq + 1, e->value,
                        CLI_SS_META_VALUE_MAX + 1) != 0) {
        return CLI_EXIT_USAGE;
    }
    req->metadata_count++;
    return 0;
}


/* A session's public fields as members of the open JSON object. */
static void cli_sessions_json_fields(cli_json_t *j,
                                     const cpstore_v1_Session *s,
                                     bool with_user) {
    cli_json_str(j, "session_id", s->session_id);
    if (with_user) {
        cli_json_str(j, "user_id", s->user_id);
    }
    cli_json_str(j, "kind", s->kind);
    cli_json_i64(j, "created_at_ms", s->created_at_ms);
    cli_json_i64(j, "idle_expires_at_ms", s->idle_expires_at_ms);
    cli_json_i64(j, "absolute_expires_at_ms", s->absolute_expires_at_ms);
    cli_json_i64(j, "revoked_at_ms", s->revoked_at_ms);
    cli_json_i64(j, "last_seen_at_ms", s->last_seen_at_ms);
    cli_json_object(j, "metadata");
    for (pb_size_t i = 0; i < s->metadata_count; i++) {
        cli_json_str(j, s->metadata[i].key, s->metadata[i].value);
    }
    cli_json_close(j);
}


static void cli_sessions_time(const char *name, int64_t ms) {
    char when[64];

    cli_format_time(ms, when, sizeof(when));
    cli_field(name, "%s", when);
}


/* A session's public fields as readable lines. */
static void cli_sessions_print_fields(const cpstore_v1_Session *s,
                                      bool with_user) {
    cli_field("session_id", "%s", s->session_id);
    if (with_user) {
        cli_field("user_id", "%s", s->user_id);
    }
    cli_field("kind", "%s", s->kind);
    cli_sessions_time("created", s->created_at_ms);
    cli_sessions_time("idle_expiry", s->idle_expires_at_ms);
    cli_sessions_time("expires", s->absolute_expires_at_ms);
    if (s->revoked_at_ms != 0) {
        cli_sessions_time("revoked", s->revoked_at_ms);
    }
    cli_sessions_time("last_seen", s->last_seen_at_ms);
    for (pb_size_t i = 0; i < s->metadata_count; i++) {
        cli_field(i == 0 ? "metadata" : "", "%s=%s", s->metadata[i].key,
                  s->metadata[i].value);
    }
}


/* The options of validate, revoke, revoke-all and list, as given. */
typedef struct cli_ss_args {
    const char *user;
    const char *token;
    const char *id;
} cli_ss_args_t;


/* ---- create ---------------------------------------------------------- */

static void
cli_sessions_print_created(const cli_opts_t *o,
                           const cpstore_v1_CreateSessionResponse *r) {
    cli_json_t j;

    if (o->json) {
        cli_json_begin(&j, stdout);
        cli_json_str(&j, "token", r->token);
        cli_json_str(&j, "session_id", r->session_id);
        cli_json_str(&j, "user_id", r->session.user_id);
        cli_json_str(&j, "kind", r->session.kind);
        cli_json_i64(&j, "created_at_ms", r->session.created_at_ms);
        cli_json_i64(&j, "idle_expires_at_ms", r->session.idle_expires_at_ms);
        cli_json_i64(&j, "absolute_expires_at_ms",
                     r->session.absolute_expires_at_ms);
        cli_json_end(&j);
        return;
    }
    cli_field("token", "%s", r->token);
    cli_sessions_print_fields(&r->session, true);
    printf("\nStore this token now: it is shown only once and cannot be "
           "shown again.\n");
}


static int cli_sessions_create(cli_opts_t *o, int argc, char **argv) {
    static const char cmd[] = "sessions create";
    static const struct option longopts[] = {
        {"user", required_argument, NULL, CLI_SS_USER},
        {"kind", required_argument, NULL, CLI_SS_KIND},
        {"idle", required_argument, NULL, CLI_SS_IDLE},
        {"max", required_argument, NULL, CLI_SS_MAX},
        {"meta", required_argument, NULL, CLI_SS_META},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    /* Static: request and response are about 20 KB together. */
    static cpstore_v1_CreateSessionRequest req;
    static cpstore_v1_CreateSessionResponse resp;
    cpc_reply_t reply;
    cpc_t *c = NULL;
    int opt;
    int rc = 0;

    optind = 0;
    while ((opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            fputs(cli_sessions_usage, stdout);
            return CLI_EXIT_YES;
        case CLI_SS_USER:
            rc = cli_copy_string(cmd, "--user", optarg, req.user_id,
                                 sizeof(req.user_id));
            break;
        case CLI_SS_KIND:
            rc = cli_copy_string(cmd, "--kind", optarg, req.kind,
                                 sizeof(req.kind));
            break;
        case CLI_SS_IDLE:
            rc = cli_sessions_duration(cmd, "--idle", optarg,
                                       &req.idle_timeout_ms);
            break;
        case CLI_SS_MAX:
            rc = cli_sessions_duration(cmd, "--max", optarg,
                                       &req.absolute_lifetime_ms);
            break;
        case CLI_SS_META:
            rc = cli_sessions_meta(cmd, optarg, &req);
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

    rc = cli_sessions_call(o, cpstore_v1_SessionsMethod_SESSIONS_METHOD_CREATE,
                           cpstore_v1_CreateSessionRequest_fields, &req,
                           cpstore_v1_CreateSessionResponse_fields, &resp,
                           &reply, &c);
    cpc_close(c);
    if (rc == 0) {
        cli_sessions_print_created(o, &resp);
    }
    memset(resp.token, 0, sizeof(resp.token));
    return rc == 0 ? CLI_EXIT_YES : rc;
}


/* ---- validate -------------------------------------------------------- */

static void
cli_sessions_print_validated(const cli_opts_t *o,
                             const cpstore_v1_ValidateSessionResponse *r) {
    cli_json_t j;

    if (o->json) {
        cli_json_begin(&j, stdout);
        cli_json_bool(&j, "valid", r->valid);
        cli_json_str(&j, "code", cli_sessions_code_name(r->code));
        cli_json_str(&j, "user", r->user_id);
        if (r->has_session) {
            cli_sessions_json_fields(&j, &r->session, false);
        }
        cli_json_end(&j);
        return;
    }
    cli_field("valid", "%s", r->valid ? "yes" : "no");
    cli_field("code", "%s", cli_sessions_code_name(r->code));
    if (r->user_id[0] != '\0') {
        cli_field("user", "%s", r->user_id);
    }
    if (r->has_session) {
        cli_sessions_print_fields(&r->session, false);
    }
}


/*
 * Parse the options of validate, revoke, revoke-all and list into args;
 * which of --user, --token and --id a command takes is in longopts.
 * Returns 0 to go on, or an exit code.
 */
static int cli_sessions_parse(cli_opts_t *o,
                              const char *cmd,
                              const struct option *longopts,
                              int argc,
                              char **argv,
                              cli_ss_args_t *args) {
    int opt;
    int rc = 0;

    memset(args, 0, sizeof(*args));
    optind = 0;
    while ((opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            fputs(cli_sessions_usage, stdout);
            return -1;
        case CLI_SS_USER:
            args->user = optarg;
            break;
        case CLI_SS_TOKEN:
            args->token = optarg;
            break;
        case CLI_SS_ID:
            args->id = optarg;
            break;
        default:
            rc = cli_common_option(o, opt, argv, cmd);
            break;
        }
        if (rc != 0) {
            return CLI_EXIT_USAGE;
        }
    }
    return cli_no_operands(argc, argv, cmd);
}


static int cli_sessions_validate(cli_opts_t *o, int argc, char **argv) {
    static const char cmd[] = "sessions validate";
    static const struct option longopts[] = {
        {"token", required_argument, NULL, CLI_SS_TOKEN},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    static cpstore_v1_ValidateSessionRequest req;
    static cpstore_v1_ValidateSessionResponse resp;
    cli_ss_args_t args;
    cpc_reply_t reply;
    cpc_t *c = NULL;
    int rc;

    rc = cli_sessions_parse(o, cmd, longopts, argc, argv, &args);
    if (rc != 0) {
        return rc < 0 ? CLI_EXIT_YES : rc;
    }
    if (args.token == NULL || *args.token == '\0') {
        return cli_usage_error(cmd, "--token is required");
    }
    if (cli_sessions_token(cmd, args.token, req.token, sizeof(req.token)) !=
        0) {
        return CLI_EXIT_USAGE;
    }

    rc = cli_sessions_call(
        o, cpstore_v1_SessionsMethod_SESSIONS_METHOD_VALIDATE,
        cpstore_v1_ValidateSessionRequest_fields, &req,
        cpstore_v1_ValidateSessionResponse_fields, &resp, &reply, &c);
    cpc_close(c);
    memset(req.token, 0, sizeof(req.token));
    if (rc != 0) {
        return rc;
    }
    cli_sessions_print_validated(o, &resp);
    return resp.valid ? CLI_EXIT_YES : CLI_EXIT_NO;
}


/* ---- revoke and revoke-all ------------------------------------------- */

static int cli_sessions_revoke(cli_opts_t *o, int argc, char **argv) {
    static const char cmd[] = "sessions revoke";
    static const struct option longopts[] = {
        {"token", required_argument, NULL, CLI_SS_TOKEN},
        {"id", required_argument, NULL, CLI_SS_ID},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    static cpstore_v1_RevokeSessionRequest req;
    cpstore_v1_RevokeSessionResponse resp = {0};
    cli_ss_args_t args;
    cpc_reply_t reply;
    cpc_t *c = NULL;
    cli_json_t j;
    int rc;

    rc = cli_sessions_parse(o, cmd, longopts, argc, argv, &args);
    if (rc != 0) {
        return rc < 0 ? CLI_EXIT_YES : rc;
    }
    if ((args.token == NULL || *args.token == '\0') ==
        (args.id == NULL || *args.id == '\0')) {
        return cli_usage_error(cmd, "give exactly one of --token and --id");
    }
    if (args.token != NULL) {
        rc = cli_sessions_token(cmd, args.token, req.token, sizeof(req.token));
    } else {
        rc = cli_copy_string(cmd, "--id", args.id, req.session_id,
                             sizeof(req.session_id));
    }
    if (rc != 0) {
        return CLI_EXIT_USAGE;
    }

    rc = cli_sessions_call(o, cpstore_v1_SessionsMethod_SESSIONS_METHOD_REVOKE,
                           cpstore_v1_RevokeSessionRequest_fields, &req,
                           cpstore_v1_RevokeSessionResponse_fields, &resp,
                           &reply, &c);
    cpc_close(c);
    memset(req.token, 0, sizeof(req.token));
    if (rc != 0) {
        return rc;
    }
    if (o->json) {
        cli_json_begin(&j, stdout);
        cli_json_bool(&j, "revoked", resp.revoked);
        cli_json_end(&j);
    } else {
        cli_field("revoked", "%s",
                  resp.revoked ? "yes"
                               : "no (no such live "
                                 "session)");
    }
    return resp.revoked ? CLI_EXIT_YES : CLI_EXIT_NO;
}


/* --user for revoke-all and list: required, within its bound. */
static int cli_sessions_user(const char *cmd,
                             const char *user,
                             char *dst,
                             size_t dst_size) {
    if (user == NULL || *user == '\0') {
        return cli_usage_error(cmd, "--user is required");
    }
    return cli_copy_string(cmd, "--user", user, dst, dst_size);
}


static int cli_sessions_revoke_all(cli_opts_t *o, int argc, char **argv) {
    static const char cmd[] = "sessions revoke-all";
    static const struct option longopts[] = {
        {"user", required_argument, NULL, CLI_SS_USER},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    static cpstore_v1_RevokeAllSessionsRequest req;
    cpstore_v1_RevokeAllSessionsResponse resp = {0};
    cli_ss_args_t args;
    cpc_reply_t reply;
    cpc_t *c = NULL;
    cli_json_t j;
    int rc;

    rc = cli_sessions_parse(o, cmd, longopts, argc, argv, &args);
    if (rc != 0) {
        return rc < 0 ? CLI_EXIT_YES : rc;
    }
    if (cli_sessions_user(cmd, args.user, req.user_id, sizeof(req.user_id)) !=
        0) {
        return CLI_EXIT_USAGE;
    }

    rc = cli_sessions_call(
        o, cpstore_v1_SessionsMethod_SESSIONS_METHOD_REVOKE_ALL,
        cpstore_v1_RevokeAllSessionsRequest_fields, &req,
        cpstore_v1_RevokeAllSessionsResponse_fields, &resp, &reply, &c);
    cpc_close(c);
    if (rc != 0) {
        return rc;
    }
    if (o->json) {
        cli_json_begin(&j, stdout);
        cli_json_u64(&j, "revoked", resp.revoked);
        cli_json_end(&j);
    } else {
        cli_field("revoked", "%u", (unsigned)resp.revoked);
    }
    return resp.revoked > 0 ? CLI_EXIT_YES : CLI_EXIT_NO;
}


/* ---- list ------------------------------------------------------------ */

typedef struct cli_ss_list {
    cli_json_t *json; /* NULL: readable output */
    bool print;       /* false: decode only, to check the reply */
    size_t count;     /* sessions decoded so far */
} cli_ss_list_t;


/* nanopb calls this once per element of the repeated `sessions` field. */
static bool cli_sessions_decode_one(pb_istream_t *stream,
                                    const pb_field_t *field,
                                    void **arg) {
    static cpstore_v1_Session s;
    cli_ss_list_t *l = *arg;

    (void)field;
    memset(&s, 0, sizeof(s));
    if (!pb_decode(stream, cpstore_v1_Session_fields, &s)) {
        return false;
    }
    if (l->print && l->json != NULL) {
        cli_json_object(l->json, NULL);
        cli_sessions_json_fields(l->json, &s, true);
        cli_json_close(l->json);
    } else if (l->print) {
        if (l->count > 0) {
            putchar('\n');
        }
        cli_sessions_print_fields(&s, true);
    }
    l->count++;
    return true;
}


static int cli_sessions_list(cli_opts_t *o, int argc, char **argv) {
    static const char cmd[] = "sessions list";
    static const struct option longopts[] = {
        {"user", required_argument, NULL, CLI_SS_USER},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    static cpstore_v1_ListSessionsRequest req;
    cpstore_v1_ListSessionsResponse resp = {0};
    cli_ss_list_t list = {0};
    cli_ss_args_t args;
    cpc_reply_t reply;
    cpc_t *c = NULL;
    cli_json_t j;
    int rc;

    rc = cli_sessions_parse(o, cmd, longopts, argc, argv, &args);
    if (rc != 0) {
        return rc < 0 ? CLI_EXIT_YES : rc;
    }
    if (cli_sessions_user(cmd, args.user, req.user_id, sizeof(req.user_id)) !=
        0) {
        return CLI_EXIT_USAGE;
    }

    /* First pass, inside the call: decode every session, print none. */
    resp.sessions.funcs.decode = cli_sessions_decode_one;
    resp.sessions.arg = &list;
    rc = cli_sessions_call(o, cpstore_v1_SessionsMethod_SESSIONS_METHOD_LIST,
                           cpstore_v1_ListSessionsRequest_fields, &req,
                           cpstore_v1_ListSessionsResponse_fields, &resp,
                           &reply, &c);
    if (rc == 0) {
        /* Second pass over the same payload (valid until the connection
         * is used again): print each session as it is decoded. */
        list.print = true;
        list.count = 0;
        if (o->json) {
            list.json = &j;
            cli_json_begin(&j, stdout);
            cli_json_array(&j, "sessions");
        }
        if (cpc_decode(&reply, cpstore_v1_ListSessionsResponse_fields, &resp) !=
            CPC_OK) {
            fprintf(stderr, "cpstore: the list response does not decode\n");
            rc = CLI_EXIT_ERROR;
        }
        if (o->json) {
            cli_json_close(&j);
            cli_json_end(&j);
        } else if (list.count == 0) {
            printf("no live sessions\n");
        }
    }
    cpc_close(c);
    return rc == 0 ? CLI_EXIT_YES : rc;
}


int cli_sessions_main(cli_opts_t *o, int argc, char **argv) {
    static const struct {
        const char *name;
        cli_command_fn run;
    } commands[] = {
        {"create", cli_sessions_create},
        {"validate", cli_sessions_validate},
        {"revoke", cli_sessions_revoke},
        {"revoke-all", cli_sessions_revoke_all},
        {"list", cli_sessions_list},
    };

    if (argc < 2) {
        return cli_usage_error("sessions", "missing command after 'sessions'");
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        fputs(cli_sessions_usage, stdout);
        return CLI_EXIT_YES;
    }
    for (size_t i = 0; i < CLI_SS_COUNT(commands); i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            return commands[i].run(o, argc - 1, argv + 1);
        }
    }
    return cli_usage_error("sessions", "unknown command 'sessions %s'",
                           argv[1]);
}
