#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "base/util.h"

/* Quote `in` with `max`, then check nothing was written at out[max] and
 * beyond (the guard bytes) and return the excerpt. */
static const char *excerpt(const char *in, size_t len, size_t max, char out[64])
{
    memset(out, 'Z', 64);
    const char *s = bm_excerpt(in, len, out, max);
    for (size_t i = max; i < 64; i++)
        assert_int_equal(out[i], 'Z');
    return s;
}

static void test_excerpt(void **state)
{
    (void)state;
    char out[64];
    assert_string_equal(excerpt("abc", 3, 16, out), "abc");
    assert_string_equal(excerpt("a\nb\x7f\x80", 5, 16, out), "a.b..");
    assert_string_equal(excerpt("abcdefghij", 10, 8, out), "abcd...");
    assert_string_equal(excerpt("abcdefghij", 10, 4, out), "...");
    /* Under 4 bytes there is no room for "...": only the NUL. */
    assert_string_equal(excerpt("abcdefghij", 10, 3, out), "");
    assert_string_equal(excerpt("abcdefghij", 10, 1, out), "");
    assert_string_equal(excerpt("abcdefghij", 10, 0, out), "");
    assert_string_equal(excerpt("", 0, 5, out), "");
}

static void test_hexdigit(void **state)
{
    (void)state;
    assert_int_equal(bm_hexdigit('0'), 0);
    assert_int_equal(bm_hexdigit('f'), 15);
    assert_int_equal(bm_hexdigit('F'), 15);
    assert_int_equal(bm_hexdigit('g'), -1);
    assert_int_equal(bm_hexdigit(0x80), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_excerpt),
        cmocka_unit_test(test_hexdigit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
