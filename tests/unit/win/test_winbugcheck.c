/* Unit tests of win/winbugcheck (what KeBugCheck2 stored: KiBugCheckData,
 * KiBugCheckDriver) over a fake guest: a named driver, none, and the
 * hostile pointers (unmapped, user-mode, a huge Length). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "triage_world.h"
#include "win/winbugcheck.h"

#define BCD_RVA 0x6000u
#define DRV_RVA 0x6100u

static const char *const drv[] = { "guestdrv.sys", NULL };
static struct tw *w;

static int setup(void **state)
{
    (void)state;
    w = malloc(sizeof *w);
    tw_init(w, drv);
    w->prof.KiBugCheckData = (struct win_off){ BCD_RVA, true };
    w->prof.KiBugCheckDriver = (struct win_off){ DRV_RVA, true };
    static const uint64_t d[5] = { 0xD3, 0xfffff80000201234, 2, 0, 0xfffff80000000100 };
    tw_put_bytes(w, TW_KBASE + BCD_RVA, d, sizeof d);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tw_free(w);
    free(w);
    return 0;
}

static int rd(struct winbc_final *f)
{
    struct bm_err e = BM_ERR_INIT;
    return winbc_read(fakevm_read, &w->vm, &w->prof, TW_KBASE, f, &e);
}

static void test_stored_code_and_driver(void **state)
{
    (void)state;
    struct winbc_final f;
    /* KiBugCheckDriver = &the driver's loader entry's BaseDllName (+0x58). */
    tw_put64(w, TW_KBASE + DRV_RVA, tw_entry_va(2) + 0x58);
    assert_int_equal(rd(&f), 0);
    assert_int_equal(f.data[0], 0xD3);
    assert_int_equal(f.data[1], 0xfffff80000201234);
    assert_int_equal(f.data[4], 0xfffff80000000100);
    assert_true(f.has_driver);
    assert_string_equal(f.driver, "guestdrv.sys");
    assert_false(f.driver_failed || f.driver_truncated);
    /* NULL: no driver named, nothing failed. */
    tw_put64(w, TW_KBASE + DRV_RVA, 0);
    assert_int_equal(rd(&f), 0);
    assert_false(f.has_driver || f.driver_failed);
    /* A profile without KiBugCheckDriver: the data alone. */
    w->prof.KiBugCheckDriver.present = false;
    assert_int_equal(rd(&f), 0);
    assert_int_equal(f.data[0], 0xD3);
    assert_false(f.has_driver || f.driver_failed);
    w->prof.KiBugCheckDriver.present = true;
}

static void test_hostile_driver(void **state)
{
    (void)state;
    struct winbc_final f;
    /* Unmapped: the data still comes, the driver is a failed read. */
    tw_put64(w, TW_KBASE + DRV_RVA, UINT64_C(0xffffb00000000040));
    assert_int_equal(rd(&f), 0);
    assert_int_equal(f.data[0], 0xD3);
    assert_false(f.has_driver);
    assert_true(f.driver_failed);
    assert_non_null(strstr(f.driver_error, "UNICODE_STRING"));
    /* A user-mode pointer is not followed. */
    tw_put64(w, TW_KBASE + DRV_RVA, 0x7ff000001000);
    assert_int_equal(rd(&f), 0);
    assert_true(f.driver_failed && !f.has_driver);
    assert_non_null(strstr(f.driver_error, "not kernel memory"));
    /* Length 0xFFFE: cut at WINMOD_NAME_MAX, flagged, left out. */
    uint64_t us = TW_RECORDS, buf = TW_RECORDS + 0x100;
    uint16_t len = 0xFFFE;
    tw_put_bytes(w, us, &len, 2);
    tw_put64(w, us + 8, buf);
    uint16_t a[WINMOD_NAME_MAX];
    for (int i = 0; i < WINMOD_NAME_MAX; i++)
        a[i] = 'A';
    tw_put_bytes(w, buf, a, sizeof a);
    tw_put64(w, TW_KBASE + DRV_RVA, us);
    assert_int_equal(rd(&f), 0);
    assert_true(f.driver_truncated && f.driver_failed && !f.has_driver);
    /* Its buffer unmapped. */
    tw_put64(w, us + 8, UINT64_C(0xffffb00000001000));
    len = 24;
    tw_put_bytes(w, us, &len, 2);
    assert_int_equal(rd(&f), 0);
    assert_true(f.driver_failed && !f.has_driver);
    /* An empty name. */
    len = 0;
    tw_put_bytes(w, us, &len, 2);
    assert_int_equal(rd(&f), 0);
    assert_true(f.driver_failed && !f.has_driver);
    tw_put64(w, TW_KBASE + DRV_RVA, 0);
}

static void test_no_data(void **state)
{
    (void)state;
    struct winbc_final f;
    struct bm_err e = BM_ERR_INIT;
    w->prof.KiBugCheckData.present = false;
    assert_int_equal(winbc_read(fakevm_read, &w->vm, &w->prof, TW_KBASE, &f, &e), -1);
    assert_non_null(strstr(bm_err_msg(&e), "lacks KiBugCheckData"));
    w->prof.KiBugCheckData.present = true;
    bm_err_clear(&e);
    /* Its page unreadable (a kernel base that is not the guest's). */
    assert_int_equal(winbc_read(fakevm_read, &w->vm, &w->prof, TW_KBASE + 0x40000000, &f, &e),
                     -1);
    assert_non_null(strstr(bm_err_msg(&e), "KiBugCheckData"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stored_code_and_driver),
        cmocka_unit_test(test_hostile_driver),
        cmocka_unit_test(test_no_data),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
