/*
 * Scope validation and matching: whole segments only, '*' only as a whole
 * last segment, never a substring or prefix match.
 */
#include <criterion/criterion.h>

#include <string.h>

#include "field_limits.h"
#include "scope.h"


Test(scope, accepts_resource_action_and_deeper_segments) {
    cr_assert(scope_valid("memory:read"));
    cr_assert(scope_valid("memory:x:y"));
    cr_assert(scope_valid("org-1.data:read_all"));
}


Test(scope, accepts_star_alone_or_as_the_whole_last_segment) {
    cr_assert(scope_valid("*"));
    cr_assert(scope_valid("memory:*"));
    cr_assert(scope_valid("memory:x:*"));
}


Test(scope, rejects_empty_segments_and_single_segments) {
    cr_assert_not(scope_valid(NULL));
    cr_assert_not(scope_valid(""));
    cr_assert_not(scope_valid("memory"));
    cr_assert_not(scope_valid(":read"));
    cr_assert_not(scope_valid("memory:"));
    cr_assert_not(scope_valid("memory::read"));
    cr_assert_not(scope_valid(":"));
}


Test(scope, rejects_star_anywhere_but_a_whole_last_segment) {
    cr_assert_not(scope_valid("*:read"));
    cr_assert_not(scope_valid("memory:*:read"));
    cr_assert_not(scope_valid("memory:re*"));
    cr_assert_not(scope_valid("memory:*x"));
    cr_assert_not(scope_valid("memory:**"));
    cr_assert_not(scope_valid("**"));
    cr_assert_not(scope_valid("me*mory:read"));
}


Test(scope, rejects_whitespace_control_and_non_ascii_characters) {
    cr_assert_not(scope_valid("memory: read"));
    cr_assert_not(scope_valid("memory:read "));
    cr_assert_not(scope_valid("memory:\tread"));
    cr_assert_not(scope_valid("memory:read\n"));
    cr_assert_not(scope_valid("memory:re\x01"
                              "ad"));
    cr_assert_not(scope_valid("memory:r\xc3\xa9"
                              "ad"));
}


Test(scope, length_is_limited_to_lim_scope_max) {
    char s[LIM_SCOPE_MAX + 2];

    memset(s, 'a', sizeof(s));
    s[1] = ':';
    s[LIM_SCOPE_MAX] = '\0';
    cr_assert(scope_valid(s));
    s[LIM_SCOPE_MAX] = 'a';
    s[LIM_SCOPE_MAX + 1] = '\0';
    cr_assert_not(scope_valid(s));
}


Test(scope, a_scope_grants_itself) {
    cr_assert(scope_grants("memory:read", "memory:read"));
    cr_assert(scope_grants("memory:*", "memory:*"));
}


Test(scope, a_trailing_star_grants_every_deeper_scope_of_its_resource) {
    cr_assert(scope_grants("memory:*", "memory:read"));
    cr_assert(scope_grants("memory:*", "memory:x:y"));
    cr_assert(scope_grants("memory:x:*", "memory:x:y"));
    cr_assert_not(scope_grants("memory:x:*", "memory:y:z"));
}


Test(scope, star_alone_grants_everything) {
    cr_assert(scope_grants("*", "memory:read"));
    cr_assert(scope_grants("*", "billing:invoices:write"));
    cr_assert(scope_grants("*", "memory:*"));
}


Test(scope, memory_read_does_not_grant_memory_readwrite) {
    cr_assert_not(scope_grants("memory:read", "memory:readwrite"));
}


Test(scope, read_star_does_not_grant_write_x) {
    cr_assert_not(scope_grants("read:*", "write:x"));
}


Test(scope, a_star_never_reaches_a_resource_that_only_shares_a_prefix) {
    cr_assert_not(scope_grants("memory:*", "memoryx:read"));
    cr_assert_not(scope_grants("mem:*", "memory:read"));
    cr_assert_not(scope_grants("memory:*", "memory"));
}


Test(scope, a_plain_scope_never_grants_a_deeper_or_wider_one) {
    cr_assert_not(scope_grants("memory:read", "memory:read:all"));
    cr_assert_not(scope_grants("memory:read", "memory:*"));
    cr_assert_not(scope_grants("memory:read", "*"));
}


Test(scope, a_key_is_sufficient_when_every_required_scope_is_granted) {
    char *granted[] = {"memory:read", "billing:*"};
    char *ok[] = {"memory:read", "billing:invoices:read"};
    char *missing[] = {"memory:read", "memory:write"};

    cr_assert(scope_sufficient(granted, 2, ok, 2));
    cr_assert_not(scope_sufficient(granted, 2, missing, 2));
}


Test(scope, nothing_required_is_always_sufficient) {
    char *required[] = {"memory:read"};

    cr_assert(scope_sufficient(NULL, 0, NULL, 0));
    cr_assert_not(scope_sufficient(NULL, 0, required, 1));
}
