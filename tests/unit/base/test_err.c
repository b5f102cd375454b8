#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "base/err.h"

static void test_first_message_wins(void **state)
{
    (void)state;
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(bm_err_set(&e, "inner %d", 1), -1);
    bm_err_set(&e, "outer");
    assert_string_equal(bm_err_msg(&e), "inner 1");
    bm_err_prefix(&e, "reading %s", "x");
    assert_string_equal(bm_err_msg(&e), "reading x: inner 1");
}

static void test_sys_and_null(void **state)
{
    (void)state;
    struct bm_err e = BM_ERR_INIT;
    assert_string_equal(bm_err_msg(&e), "unknown error");
    bm_err_sys(&e, ENOENT, "open %s", "/nope");
    assert_non_null(strstr(bm_err_msg(&e), "open /nope: "));
    assert_int_equal(bm_err_set(NULL, "ignored"), -1);
    bm_err_clear(&e);
    assert_false(e.set);
}

static void test_truncation(void **state)
{
    (void)state;
    struct bm_err e = BM_ERR_INIT;
    char big[2000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    bm_err_set(&e, "%s", big);
    bm_err_prefix(&e, "%s", big);
    assert_true(strlen(bm_err_msg(&e)) < BM_ERR_MSG_MAX);
}

/* Hostile bytes quoted in a message cannot split it (found by fuzzing:
 * a guest export name holding a newline, tests/fuzz/fuzz_winkernel). */
static void test_one_line(void **state)
{
    (void)state;
    struct bm_err e = BM_ERR_INIT;
    bm_err_set(&e, "image (%s)", "ntoskrnl\n[BSODMON] forged\r\x1b[2J\x7f");
    assert_string_equal(bm_err_msg(&e), "image (ntoskrnl?[BSODMON] forged??[2J?)");
    bm_err_prefix(&e, "a\tb");
    assert_string_equal(bm_err_msg(&e), "a?b: image (ntoskrnl?[BSODMON] forged??[2J?)");
    struct bm_err f = BM_ERR_INIT;
    bm_err_prefix(&f, "x\ny");
    assert_string_equal(bm_err_msg(&f), "x?y");
    struct bm_err g = BM_ERR_INIT;
    bm_err_sys(&g, ENOENT, "open %s", "a\nb");
    assert_null(strchr(bm_err_msg(&g), '\n'));
    assert_non_null(strstr(bm_err_msg(&g), "open a?b: "));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_message_wins),
        cmocka_unit_test(test_sys_and_null),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_one_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
