/*
 * cpstored's configuration: command-line flags, each with an environment
 * variable. A flag wins over its variable, which wins over the default.
 */
#ifndef CPSTORE_CONFIG_H
#define CPSTORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "server.h"

typedef enum cfg_profile {
    CFG_PROFILE_DEV = 0,
    CFG_PROFILE_PRODUCTION = 1,
} cfg_profile_t;

typedef struct cfg {
    srv_config_t srv;
    const char *redis_url; /* NULL: memory rate limiter */
    const char *redis_prefix;
    const char *mongo_uri; /* NULL: memory key store */
    const char *mongo_db;  /* NULL: from the URI, else "cpstore" */
    cfg_profile_t profile;
    const char *secret_file;
    const char *secret_env;  /* value of CPSTORE_SECRET */
    const char *key_prefix;  /* NULL: cpk_live in production, else cpk_dev */
    const char *config_path; /* NULL: built-in defaults (cfgfile.h) */
    int log_level;
    int workers;
    bool help;
    bool version;
} cfg_t;

/*
 * Fill cfg from argv and the environment. Returns 0, or -1 with a one-line
 * reason in err (a usage error). Strings point into argv or environ.
 */
int cfg_parse(cfg_t *cfg, int argc, char **argv, char *err, size_t err_len);

/* The --help text. */
void cfg_usage(FILE *out);

/*
 * Load the server secret: CPSTORE_SECRET, else the secret file (trailing
 * newlines removed). Returns 0 and a malloc'd secret (caller cleanses and
 * frees), 1 when none is configured, or -1 with a reason in err.
 */
int cfg_load_secret(
    const cfg_t *cfg, uint8_t **secret, size_t *len, char *err, size_t err_len);

#endif
