/* `cpstore health`: is the server able to serve, and how are its backends. */
#include "cli.h"
#include "cli_json.h"

#include <stdio.h>

static const char cli_health_usage[] =
    "Usage: cpstore [OPTIONS] health\n"
    "\n"
    "Ask the server whether it can serve. Exits 0 when it is serving, 1 when\n"
    "it is not, 3 when it cannot be asked.\n"
    "\n" CLI_COMMON_HELP;


static const char *cli_health_status_name(cpstore_v1_ServingStatus status) {
    switch (status) {
    case cpstore_v1_ServingStatus_SERVING:
        return "SERVING";
    case cpstore_v1_ServingStatus_NOT_SERVING:
        return "NOT_SERVING";
    default:
        return "SERVING_STATUS_UNSPECIFIED";
    }
}


static void cli_health_print_json(const cpstore_v1_HealthCheckResponse *r) {
    cli_json_t j;

    cli_json_begin(&j, stdout);
    cli_json_str(&j, "status", cli_health_status_name(r->status));
    cli_json_str(&j, "version", r->version);
    cli_json_array(&j, "backends");
    for (pb_size_t i = 0; i < r->backends_count; i++) {
        const cpstore_v1_BackendStatus *b = &r->backends[i];

        cli_json_object(&j, NULL);
        cli_json_str(&j, "name", b->name);
        cli_json_str(&j, "kind", b->kind);
        cli_json_bool(&j, "up", b->up);
        cli_json_str(&j, "detail", b->detail);
        cli_json_close(&j);
    }
    cli_json_close(&j);
    cli_json_object(&j, "counters");
    for (pb_size_t i = 0; i < r->counters_count; i++) {
        cli_json_u64(&j, r->counters[i].name, r->counters[i].value);
    }
    cli_json_close(&j);
    cli_json_end(&j);
}


static void cli_health_print_text(const cpstore_v1_HealthCheckResponse *r) {
    cli_field("status", "%s", cli_health_status_name(r->status));
    if (r->version[0] != '\0') {
        cli_field("version", "%s", r->version);
    }
    for (pb_size_t i = 0; i < r->backends_count; i++) {
        const cpstore_v1_BackendStatus *b = &r->backends[i];

        cli_field("backend", "%s (%s) %s%s%s", b->name, b->kind,
                  b->up ? "up" : "down", b->detail[0] != '\0' ? ": " : "",
                  b->detail);
    }
    for (pb_size_t i = 0; i < r->counters_count; i++) {
        cli_field("counter", "%s %llu", r->counters[i].name,
                  (unsigned long long)r->counters[i].value);
    }
}


int cli_health_main(cli_opts_t *o, int argc, char **argv) {
    static const struct option longopts[] = {CLI_COMMON_LONGOPTS, {0}};
    cpstore_v1_HealthCheckResponse resp =
        cpstore_v1_HealthCheckResponse_init_zero;
    cpc_reply_t reply;
    cpc_t *c;
    int opt;
    int rc;

    optind = 0;
    while ((opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (opt == 'h') {
            fputs(cli_health_usage, stdout);
            return CLI_EXIT_YES;
        }
        if (cli_common_option(o, opt, argv, "health") != 0) {
            return CLI_EXIT_USAGE;
        }
    }
    if (cli_no_operands(argc, argv, "health") != 0) {
        return CLI_EXIT_USAGE;
    }

    c = cli_connect(o);
    if (c == NULL) {
        return CLI_EXIT_ERROR;
    }
    rc = cpc_health_check(c, &resp, &reply);
    rc = cli_call_result(c, rc, &reply);
    cpc_close(c);
    if (rc != 0) {
        return rc;
    }

    if (o->json) {
        cli_health_print_json(&resp);
    } else {
        cli_health_print_text(&resp);
    }
    return resp.status == cpstore_v1_ServingStatus_SERVING ? CLI_EXIT_YES
                                                           : CLI_EXIT_NO;
}
