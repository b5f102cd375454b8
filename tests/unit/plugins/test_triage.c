/* Unit tests of the triage analysis (plugins/bsodmon/triage.c) over a fake
 * guest (tests/unit/win/triage_world): one case per scenario of issue 15,
 * and hostile pointers giving a partial analysis. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "plugins/bsodmon/triage.h"
#include "triage_world.h"

static const char *const drv[] = { "guestdrv.sys", NULL };
static struct winmod_list mods;
static struct tw *w;

static int setup(void **state)
{
    (void)state;
    w = malloc(sizeof *w);
    tw_init(w, drv);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tw_free(w);
    free(w);
    return 0;
}

static void run(uint64_t code, uint64_t p1, uint64_t p2, uint64_t p3, uint64_t p4,
                struct triage *t)
{
    struct triage_input in = {
        .code = code, .p = { p1, p2, p3, p4 }, .prof = &w->prof, .kernel_base = TW_KBASE,
        .read = fakevm_read, .ctx = &w->vm, .modules = &mods,
    };
    triage_analyse(&in, t);
}

#define DRV_IP (TW_MOD(2) + 0x1234)

static void test_irql_driver_fault(void **state)
{
    (void)state;
    struct triage t;
    run(0xA, 0x10, 2, 1, DRV_IP, &t);
    assert_true(t.has_reported);
    assert_int_equal(t.reported, 0xD1);
    assert_true(t.has_ip);
    assert_int_equal(t.ip, DRV_IP);
    assert_true(t.has_module);
    assert_string_equal(t.module, "guestdrv.sys");
    assert_int_equal(t.module_offset, 0x1234);
    assert_int_equal(t.module_size, PB_SIZE);
    assert_true(t.has_module_timestamp);
    assert_int_equal(t.module_timestamp, TW_DRV_TS + 2);
    assert_false(t.has_subcode || t.has_exception || t.has_process);
    assert_true(t.has_bucket);
    assert_string_equal(t.bucket, "0xd1_guestdrv.sys+0x1234");
    assert_int_equal(t.failed_reads, 0);
    /* IP in ntoskrnl: the kernel picks among 0xA/0xC5/0xD3/0xD4 - not decided. */
    run(0xA, 0x10, 2, 1, TW_MOD(0) + 0x100, &t);
    assert_false(t.has_reported);
    assert_false(t.has_bucket);
    assert_true(t.has_module);
    assert_string_equal(t.module, "ntoskrnl.exe");
    /* IP in no module, both kernel entries read: 0xD1, no module, no bucket. */
    run(0xA, 0x10, 2, 1, UINT64_C(0xffffc00000001000), &t);
    assert_true(t.has_reported);
    assert_int_equal(t.reported, 0xD1);
    assert_false(t.has_module || t.has_bucket);
}

static void test_kmode_exception(void **state)
{
    (void)state;
    struct triage t;
    run(0x1E, UINT64_C(0xffffffffc0000005), DRV_IP, 1, 0x28, &t);
    assert_true(t.has_reported);
    assert_int_equal(t.reported, 0x1E);
    assert_true(t.has_exception);
    assert_int_equal(t.exception_code, 0xC0000005);
    assert_string_equal(t.exception_name, "STATUS_ACCESS_VIOLATION");
    assert_string_equal(t.bucket, "0x1e_guestdrv.sys+0x1234");
}

static void test_thread_exception_records(void **state)
{
    (void)state;
    uint64_t er = TW_RECORDS, cx = TW_RECORDS + 0x1000;
    tw_put32(w, er, 0xC0000094);
    tw_put64(w, er + 0x10, DRV_IP + 1);
    tw_put64(w, cx + 0xF8, DRV_IP + 2);
    struct triage t;
    run(0x7E, 0xC0000094, DRV_IP, er, cx, &t);
    assert_int_equal(t.exception_code, 0xC0000094);
    assert_string_equal(t.exception_name, "STATUS_INTEGER_DIVIDE_BY_ZERO");
    assert_int_equal(t.ip, DRV_IP);             /* the IP parameter first */
    assert_string_equal(t.bucket, "0x7e_guestdrv.sys+0x1234");
    /* 0x3D: no IP parameter; the context record's Rip. */
    run(0x3D, er, cx, 0, 0, &t);
    assert_int_equal(t.ip, DRV_IP + 2);
    assert_int_equal(t.exception_code, 0xC0000094);
    assert_string_equal(t.bucket, "0x3d_guestdrv.sys+0x1236");
}

static void test_page_fault_trap_frame(void **state)
{
    (void)state;
    uint64_t tf = TW_RECORDS + 0x2000;
    tw_put64(w, tf + 0x168, DRV_IP + 0x10);
    struct triage t;
    run(0x50, UINT64_C(0xffffc00000000000), 2, tf, 2, &t);
    assert_true(t.has_ip);
    assert_int_equal(t.ip, DRV_IP + 0x10);
    assert_string_equal(t.module, "guestdrv.sys");
    assert_int_equal(t.module_offset, 0x1244);
    assert_true(t.has_subcode);
    assert_int_equal(t.subcode, 2);
    assert_string_equal(t.subcode_name, "NONPAGED_BUGCHECK_NOT_PRESENT_PAGE_TABLE");
    assert_false(t.has_reported);       /* 0x50 may become 0xCC..0xD6 */
    assert_false(t.has_bucket);
    /* Trap frame in unmapped memory: partial, one failed read. */
    run(0x50, UINT64_C(0xffffc00000000000), 2, UINT64_C(0xffffb00000000000), 2, &t);
    assert_false(t.has_ip || t.has_module);
    assert_true(t.has_subcode);
    assert_int_equal(t.failed_reads, 1);
    assert_non_null(strstr(t.first_error, "trap frame"));
}

static void test_fast_fail(void **state)
{
    (void)state;
    uint64_t tf = TW_RECORDS + 0x3000, er = TW_RECORDS + 0x4000;
    tw_put64(w, tf + 0x168, DRV_IP + 0x20);
    tw_put32(w, er, 0xC0000409);
    tw_put64(w, er + 0x10, DRV_IP + 0x21);
    struct triage t;
    run(0x139, 3, tf, er, 0, &t);
    assert_string_equal(t.subcode_name, "CORRUPT_LIST_ENTRY");
    assert_int_equal(t.ip, DRV_IP + 0x20);
    assert_int_equal(t.exception_code, 0xC0000409);
    assert_string_equal(t.exception_name, "STATUS_STACK_BUFFER_OVERRUN");
    assert_string_equal(t.bucket, "0x139_0x3_guestdrv.sys+0x1254");
    /* Trap frame unreadable: the exception record's address. */
    run(0x139, 3, UINT64_C(0xffffb00000000000), er, 0, &t);
    assert_int_equal(t.ip, DRV_IP + 0x21);
    assert_int_equal(t.failed_reads, 1);
}

static void test_critical_process(void **state)
{
    (void)state;
    uint64_t ep = TW_RECORDS + 0x5000;
    tw_put_bytes(w, ep + 0x5A8, "csrss.exe", 10);
    struct triage t;
    run(0xEF, ep, 0, 0, 0, &t);
    assert_true(t.has_process);
    assert_int_equal(t.process_len, 9);
    assert_memory_equal(t.process, "csrss.exe", 9);
    assert_string_equal(t.subcode_name, "process terminated");
    assert_string_equal(t.bucket, "0xef_0x0");
    run(0xEF, UINT64_C(0xffffb00000000000), 1, 0, 0, &t);
    assert_false(t.has_process);
    assert_string_equal(t.bucket, "0xef_0x1");
}

static void test_region_and_hard_error(void **state)
{
    (void)state;
    struct triage t;
    run(0x109, 0xa3a01f5891c5a5e1, 0xb3b72bdee4440b6b, 0xfffff80000001000, 0x1, &t);
    assert_string_equal(t.subcode_name, "function modification");
    assert_string_equal(t.bucket, "0x109_0x1");
    assert_false(t.has_ip);
    run(0x4C, 0xC000021A, UINT64_C(0xffffa00000500000), 0, 0, &t);
    assert_true(t.has_reported);
    assert_int_equal(t.reported, 0xC000021A);
    assert_false(t.has_exception);      /* a hard-error status, not an exception */
    assert_string_equal(t.bucket, "0xc000021a");
}

static void test_hostile_module_list(void **state)
{
    (void)state;
    struct triage t;
    /* A loop: the driver is still found (it comes before the loop closes). */
    tw_put64(w, tw_entry_va(2), tw_entry_va(1));
    run(0xA, 0x10, 2, 1, DRV_IP, &t);
    assert_true(t.has_module);
    /* IP in no module of a looping list: maybe in an entry not reached. */
    run(0xA, 0x10, 2, 1, UINT64_C(0xffffc00000001000), &t);
    assert_false(t.has_reported || t.has_module);
    tw_put64(w, tw_entry_va(2), TW_KBASE + TW_HEAD_RVA);
    /* Over-long name: the module is left out (a cut name is not its name). */
    char longname[200];
    memset(longname, 'y', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    tw_set_name(w, 2, longname, 0x1000);
    run(0xA, 0x10, 2, 1, DRV_IP, &t);
    assert_true(t.module_truncated);
    assert_false(t.has_module || t.has_bucket);
    assert_true(t.has_ip && t.has_reported);
    assert_int_equal(t.failed_reads, 1);
    assert_non_null(strstr(t.first_error, "longer than"));
    tw_set_name(w, 2, "guestdrv.sys", 24);
    /* No profile: the parameters alone. */
    struct triage_input in = { .code = 0xA, .p = { 0x10, 2, 1, DRV_IP }, .read = fakevm_read,
                               .ctx = &w->vm, .modules = &mods };
    triage_analyse(&in, &t);
    assert_true(t.has_ip);
    assert_false(t.has_module || t.has_reported || t.has_bucket);
    /* Unknown code: nothing but what nobody can get wrong. */
    run(0x12345, 1, 2, 3, 4, &t);
    assert_false(t.has_reported || t.has_ip || t.has_subcode || t.has_bucket);
}

/* What KeBugCheck2 stored replaces the entry rules: the code, the
 * parameters when they differ, the driver, and the bucket with that code. */
/* Whether the follow is worth its cost: only where the kernel's stored
 * data can differ from the entry rules. */
static void test_wants_stored(void **state)
{
    (void)state;
    struct triage t;
    struct triage_input in = {
        .code = 0x4C, .p = { 0xC000021A, TW_RECORDS + 0x200, 0, 0 }, .prof = &w->prof,
        .kernel_base = TW_KBASE, .read = fakevm_read, .ctx = &w->vm, .modules = &mods,
    };
    /* 0x4C: the four hard-error parameters at P2 are the reported ones. */
    for (int i = 0; i < 4; i++)
        tw_put64(w, TW_RECORDS + 0x200 + 8 * i, UINT64_C(0x1000) + (uint64_t)i);
    triage_analyse(&in, &t);
    assert_true(t.has_reported && t.hard_error_params_read && t.has_reported_params);
    assert_int_equal(t.reported, 0xC000021A);
    assert_int_equal(t.reported_params[0], 0x1000);
    assert_int_equal(t.reported_params[3], 0x1003);
    assert_false(triage_wants_stored(&in, &t));
    /* ... and when they cannot be read, the kernel's copy is wanted. */
    in.p[1] = UINT64_C(0xffffa00000500000);
    triage_analyse(&in, &t);
    assert_true(t.has_reported);
    assert_false(t.hard_error_params_read || t.has_reported_params);
    assert_int_equal(t.failed_reads, 1);
    assert_true(triage_wants_stored(&in, &t));
    /* A code KeBugCheck2 does not rewrite: the rules decide. */
    in.code = 0x1E;
    in.p[0] = 0xC0000005; in.p[1] = DRV_IP; in.p[2] = 0; in.p[3] = 0;
    triage_analyse(&in, &t);
    assert_false(triage_wants_stored(&in, &t));
    /* 0xA with the IP in a driver: 0xD1, decided; in ntoskrnl: not. */
    in.code = 0xA;
    in.p[0] = 0x10; in.p[1] = 2; in.p[2] = 1; in.p[3] = DRV_IP;
    triage_analyse(&in, &t);
    assert_true(t.has_reported);
    assert_false(triage_wants_stored(&in, &t));
    in.p[3] = TW_MOD(0) + 0x100;
    triage_analyse(&in, &t);
    assert_true(triage_wants_stored(&in, &t));
    /* 0x50 (special pool, unloaded drivers), a driver-naming code, a code
     * the table lacks: the kernel's data decides. */
    static const uint32_t follow[] = { 0x50, 0xD8, 0xEA, 0xBE, 0xFC, 0xCB, 0x7A5A };
    for (size_t i = 0; i < sizeof follow / sizeof follow[0]; i++) {
        in.code = follow[i];
        in.p[0] = 0; in.p[1] = 0; in.p[2] = 0; in.p[3] = 0;
        triage_analyse(&in, &t);
        assert_true(triage_wants_stored(&in, &t));
    }
}

static void test_final(void **state)
{
    (void)state;
    struct triage t;
    struct triage_input in = {
        .code = 0xA, .p = { DRV_IP + 0x10, 2, 0, TW_MOD(0) + 0x100 }, .prof = &w->prof,
        .kernel_base = TW_KBASE, .read = fakevm_read, .ctx = &w->vm, .modules = &mods,
    };
    triage_analyse(&in, &t);
    assert_false(t.has_reported || t.has_bucket);   /* the IP in ntoskrnl: undecided */
    struct winbc_final f = { .data = { 0xD3, DRV_IP + 0x10, 2, 0, TW_MOD(0) + 0x100 },
                             .has_driver = true, .driver = "guestdrv.sys" };
    triage_final(&in, &f, &t);
    assert_true(t.has_reported && t.reported_stored);
    assert_int_equal(t.reported, 0xD3);
    assert_false(t.has_reported_params);
    assert_true(t.has_driver);
    assert_string_equal(t.driver, "guestdrv.sys");
    assert_true(t.has_bucket);
    assert_string_equal(t.bucket, "0xd3_ntoskrnl.exe+0x100");
    /* 0x50: P3 rewritten (the trap frame's Rip), 0xD5: parameters differ. */
    uint64_t tf = TW_RECORDS;
    tw_put64(w, tf + 0x168, DRV_IP);
    struct triage_input pf = in;
    pf.code = 0x50;
    pf.p[0] = UINT64_C(0xffffb00000001000); pf.p[1] = 0; pf.p[2] = tf; pf.p[3] = 0;
    triage_analyse(&pf, &t);
    assert_false(t.has_reported);
    struct winbc_final g = { .data = { 0xD5, pf.p[0], 0, DRV_IP, 0 } };
    triage_final(&pf, &g, &t);
    assert_int_equal(t.reported, 0xD5);
    assert_true(t.has_reported_params);
    assert_int_equal(t.reported_params[2], DRV_IP);
    assert_false(t.has_driver);
    assert_string_equal(t.bucket, "0xd5_0x0_guestdrv.sys+0x1234");
    /* Nothing stored (0) keeps the entry rules; a failed driver read counts. */
    triage_analyse(&in, &t);
    struct winbc_final z = { .driver_failed = true, .driver_error = "unmapped" };
    triage_final(&in, &z, &t);
    assert_false(t.has_reported || t.has_bucket || t.has_driver);
    assert_int_equal(t.failed_reads, 1);
    assert_non_null(strstr(t.first_error, "unmapped"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_irql_driver_fault),
        cmocka_unit_test(test_kmode_exception),
        cmocka_unit_test(test_thread_exception_records),
        cmocka_unit_test(test_page_fault_trap_frame),
        cmocka_unit_test(test_fast_fail),
        cmocka_unit_test(test_critical_process),
        cmocka_unit_test(test_region_and_hard_error),
        cmocka_unit_test(test_hostile_module_list),
        cmocka_unit_test(test_wants_stored),
        cmocka_unit_test(test_final),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
