/* Durations as flags and config files write them: duration_parse/format. */
#include <criterion/criterion.h>

#include <stdint.h>
#include <string.h>

#include "duration.h"
#include "status.h"


static uint64_t parsed(const char *s) {
    uint64_t ms = 0;

    cr_assert_eq(duration_parse(s, &ms), CPS_OK, "'%s' should parse", s);
    return ms;
}


static void refused(const char *s) {
    uint64_t ms = 4242;

    cr_expect_eq(duration_parse(s, &ms), CPS_INVALID_ARGUMENT,
                 "'%s' should be refused", s);
    cr_expect_eq(ms, 4242, "a refused '%s' must not touch the output", s);
}


static const char *formatted(uint64_t ms, char *buf) {
    cr_assert_eq(duration_format(ms, buf, DURATION_BUF_SIZE), CPS_OK);
    return buf;
}


Test(duration, parses_every_unit_into_milliseconds) {
    cr_expect_eq(parsed("250ms"), 250);
    cr_expect_eq(parsed("10s"), 10000);
    cr_expect_eq(parsed("5m"), 300000);
    cr_expect_eq(parsed("1h"), 3600000);
    cr_expect_eq(parsed("30d"), 30ull * 86400000);
    cr_expect_eq(parsed("007s"), 7000);
}


Test(duration, accepts_zero_with_or_without_a_unit) {
    cr_expect_eq(parsed("0"), 0);
    cr_expect_eq(parsed("0ms"), 0);
    cr_expect_eq(parsed("0d"), 0);
}


Test(duration, refuses_a_number_without_a_unit) {
    refused("30");
    refused("1500");
}


Test(duration, refuses_empty_input_and_signs) {
    uint64_t ms = 4242;

    cr_expect_eq(duration_parse(NULL, &ms), CPS_INVALID_ARGUMENT);
    refused("");
    refused("-5s");
    refused("+5s");
    refused("-0");
}


Test(duration, refuses_unknown_units_and_trailing_junk) {
    refused("s");
    refused("5sec");
    refused("5S");
    refused("5us");
    refused("5w");
    refused("5 s");
    refused(" 5s");
    refused("5s ");
    refused("5s\n");
    refused("1.5s");
    refused("1h30m");
    refused("5ms5");
    refused("0x10s");
}


Test(duration, refuses_values_beyond_uint64_milliseconds) {
    cr_expect_eq(parsed("18446744073709551615ms"), UINT64_MAX);
    refused("18446744073709551616ms");
    refused("99999999999999999999999ms");
    cr_expect_eq(parsed("213503982334d"), 213503982334ull * 86400000);
    refused("213503982335d");
    refused("18446744073709551615s");
}


Test(duration, formats_in_the_largest_unit_that_is_exact) {
    char buf[DURATION_BUF_SIZE];

    cr_expect_str_eq(formatted(0, buf), "0ms");
    cr_expect_str_eq(formatted(1, buf), "1ms");
    cr_expect_str_eq(formatted(1500, buf), "1500ms");
    cr_expect_str_eq(formatted(2000, buf), "2s");
    cr_expect_str_eq(formatted(90000, buf), "90s");
    cr_expect_str_eq(formatted(5400000, buf), "90m");
    cr_expect_str_eq(formatted(90000000, buf), "25h");
    cr_expect_str_eq(formatted(86400000, buf), "1d");
    cr_expect_str_eq(formatted(UINT64_MAX, buf), "18446744073709551615ms");
}


Test(duration, reads_back_what_it_formats) {
    static const uint64_t fixed[] = {
        0,
        1,
        999,
        1000,
        59999,
        60000,
        3599999,
        3600000,
        86399999,
        86400000,
        UINT64_MAX,
        UINT64_MAX - 1,
        213503982334ull * 86400000,
    };
    char buf[DURATION_BUF_SIZE];
    uint64_t x = 0x9e3779b97f4a7c15ull;

    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        cr_expect_eq(parsed(formatted(fixed[i], buf)), fixed[i]);
    }
    /* Values that are whole units of each size, from a fixed sequence. */
    for (int i = 0; i < 1000; i++) {
        static const uint64_t units[] = {1, 1000, 60000, 3600000, 86400000};
        uint64_t v;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v = (x % 1000000) * units[i % 5];
        cr_expect_eq(parsed(formatted(v, buf)), v, "round trip of %llu",
                     (unsigned long long)v);
    }
}


Test(duration, format_reports_a_buffer_too_small) {
    char buf[4] = "xyz";

    cr_expect_eq(duration_format(1500, buf, sizeof(buf)), CPS_OUT_OF_RANGE);
    cr_expect_str_eq(buf, "");
    cr_expect_eq(duration_format(2000, buf, sizeof(buf)), CPS_OK);
    cr_expect_str_eq(buf, "2s");
}
