/*
 * The configuration file parser on its own.
 */
#include <criterion/criterion.h>

#include <string.h>

#include "cfgfile.h"


Test(cfgfile, policies_kinds_and_settings_are_read) {
    const char *text = "[ratelimit]\n"
                       "unavailable = allow\n"
                       "[policy.login]\n"
                       "limit = 5\n"
                       "window = 1m\n"
                       "[token.magic_link]\n"
                       "max_ttl = 15m\n"
                       "[session]\n"
                       "touch_interval = 30s\n";
    const cf_policy_t *p;
    cf_file_t cf;
    char err[256];

    cr_assert_eq(cf_load_string(text, &cf, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(cf.rl_unavailable, CF_UNAVAILABLE_ALLOW);
    p = cf_policy(&cf, "login");
    cr_assert_not_null(p);
    cr_assert_eq(p->limit, 5);
    cr_assert_eq(p->window_ms, 60000);
    /* Naming a kind replaces the built-in ones. */
    cr_assert_not_null(cf_token_kind(&cf, "magic_link"));
    cr_assert_null(cf_token_kind(&cf, "oauth_code"));
    cr_assert_eq(cf.session_touch_ms, 30000);
    cf_free(&cf);
}


Test(cfgfile, the_first_error_is_reported_with_its_own_line) {
    const char *text = "[session]\n"
                       "idle_timeout = 30m\n"
                       "[policy.a]\n"
                       "limit = 5\n"
                       "window = soon\n"
                       "[session]\n"
                       "absolute_lifetime = forever\n";
    cf_file_t cf;
    char err[256];

    cr_assert_eq(cf_load_string(text, &cf, err, sizeof(err)), -1);
    cr_assert_not_null(strstr(err, ":5:"), "%s", err);
    cr_assert_not_null(strstr(err, "window"), "%s", err);
    cr_assert_null(strstr(err, "forever"), "%s", err);
}


Test(cfgfile, a_policy_without_a_window_is_refused) {
    cf_file_t cf;
    char err[256];

    cr_assert_eq(
        cf_load_string("[policy.x]\nlimit = 3\n", &cf, err, sizeof(err)), -1);
    cr_assert_not_null(strstr(err, "no window"), "%s", err);
}
