/* Unit tests of win/winmod (PsLoadedModuleList walk) and win/wintrap (trap
 * frame, exception record, context, process name) over a fake guest,
 * including the hostile lists the issue names: a loop, an over-long name, a
 * DllBase that overlaps another, an unmapped record. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "triage_world.h"
#include "win/winmod.h"
#include "win/wintrap.h"

static const char *const drv[] = { "guestdrv.sys", NULL };
static struct winmod_list list;

static struct tw *world(const char *const *names)
{
    struct tw *w = malloc(sizeof *w);
    assert_non_null(w);
    tw_init(w, names);
    return w;
}

static void done(struct tw *w)
{
    tw_free(w);
    free(w);
}

static int walk(struct tw *w)
{
    struct bm_err e = BM_ERR_INIT;
    return winmod_walk(fakevm_read, &w->vm, &w->prof, TW_KBASE + TW_HEAD_RVA, &list, &e);
}

static void test_walk_find_name_timestamp(void **state)
{
    (void)state;
    struct tw *w = world(drv);
    assert_int_equal(walk(w), 0);
    assert_int_equal(list.n, 3);
    assert_false(list.capped || list.looped || list.broken);
    int i = winmod_find(&list, TW_MOD(2) + 0x1234);
    assert_int_equal(i, 2);
    assert_int_equal(list.m[i].pos, 2);
    assert_int_equal(winmod_find(&list, TW_MOD(0)), 0);
    assert_int_equal(winmod_find(&list, TW_MOD(1) + PB_SIZE - 1), 1);
    assert_int_equal(winmod_find(&list, TW_MOD(1) + PB_SIZE), -1);
    assert_int_equal(winmod_find(&list, 0x1000), -1);
    char name[WINMOD_NAME_MAX + 1];
    bool trunc;
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(winmod_name(fakevm_read, &w->vm, &list.m[i], name, &trunc, &e), 0);
    assert_string_equal(name, "guestdrv.sys");
    assert_false(trunc);
    uint32_t ts;
    assert_int_equal(winmod_timestamp(fakevm_read, &w->vm, &list.m[i], &ts, &e), 0);
    assert_int_equal(ts, TW_DRV_TS + 2);
    done(w);
}

/* The _KLDR_DATA_TABLE_ENTRY offsets win over _LDR_'s when both exist. */
static void test_kldr_preferred_and_missing_offsets(void **state)
{
    (void)state;
    struct tw *w = world(drv);
    w->prof.kldr_links = (struct win_off){ 0, true };
    w->prof.kldr_dll_base = (struct win_off){ 0x30, true };
    w->prof.kldr_size_of_image = (struct win_off){ 0x40, true };
    w->prof.kldr_base_dll_name = (struct win_off){ 0x58, true };
    w->prof.ldr_dll_base.value = 0x99;     /* would be wrong */
    assert_int_equal(walk(w), 0);
    assert_int_equal(list.n, 3);
    /* Neither complete: refused, with a message. */
    w->prof.kldr_dll_base.present = false;
    w->prof.ldr_dll_base.present = false;
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(winmod_walk(fakevm_read, &w->vm, &w->prof, TW_KBASE + TW_HEAD_RVA,
                                 &list, &e), -1);
    assert_non_null(strstr(bm_err_msg(&e), "_LDR_DATA_TABLE_ENTRY"));
    done(w);
}

static void test_loop_not_through_head(void **state)
{
    (void)state;
    struct tw *w = world(drv);
    tw_put64(w, tw_entry_va(2), tw_entry_va(1));   /* driver -> HAL -> driver ... */
    assert_int_equal(walk(w), 0);
    assert_true(list.looped);
    assert_int_equal(list.n, 3);
    /* A self-loop. */
    tw_put64(w, tw_entry_va(0), tw_entry_va(0));
    assert_int_equal(walk(w), 0);
    assert_true(list.looped);
    assert_int_equal(list.n, 1);
    done(w);
}

static void test_cap(void **state)
{
    (void)state;
    struct tw *w = world(NULL);
    /* 600 entries that never come back to the head. */
    for (unsigned i = 2; i < 600; i++)
        tw_set_entry(w, i, TW_MOD(2) + (uint64_t)i * 0x10000, 0x1000, tw_entry_va(i + 1));
    tw_put64(w, tw_entry_va(1), tw_entry_va(2));
    assert_int_equal(walk(w), 0);
    assert_true(list.capped);
    assert_int_equal(list.n, WINMOD_MAX);
    done(w);
}

static void test_overlap_and_bad_sizes(void **state)
{
    static const char *const two[] = { "a.sys", "b.sys", "c.sys", NULL };
    (void)state;
    struct tw *w = world(two);
    /* b.sys (entry 3) claims a base inside a.sys: dropped; c.sys a size of 0. */
    tw_put64(w, tw_entry_va(3) + 0x30, TW_MOD(2) + 0x100);
    tw_put32(w, tw_entry_va(4) + 0x40, 0);
    assert_int_equal(walk(w), 0);
    assert_int_equal(list.n, 3);
    assert_int_equal(list.overlaps, 1);
    assert_int_equal(list.bad_sizes, 1);
    assert_int_equal(winmod_find(&list, TW_MOD(2) + 0x100), 2);     /* still a.sys */
    assert_int_equal(winmod_find(&list, TW_MOD(4)), -1);
    done(w);
}

static void test_broken_links(void **state)
{
    (void)state;
    struct tw *w = world(drv);
    /* Flink into an unmapped page, then a user-mode Flink. */
    tw_put64(w, tw_entry_va(1), UINT64_C(0xffffb00000000000));
    assert_int_equal(walk(w), 0);
    assert_true(list.broken);
    assert_int_equal(list.n, 2);
    tw_put64(w, tw_entry_va(1), 0x1000);
    assert_int_equal(walk(w), 0);
    assert_true(list.broken);
    /* An unreadable head fails. */
    fakevm_unmap(&w->vm, TW_KBASE + TW_HEAD_RVA);
    assert_int_equal(walk(w), -1);
    done(w);
}

static void test_long_and_odd_names(void **state)
{
    (void)state;
    struct tw *w = world(drv);
    char longname[600];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    tw_set_name(w, 2, longname, 0xFFFE);           /* Length far beyond the buffer */
    assert_int_equal(walk(w), 0);
    char name[WINMOD_NAME_MAX + 1];
    bool trunc;
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(winmod_name(fakevm_read, &w->vm, &list.m[2], name, &trunc, &e), 0);
    assert_true(trunc);
    assert_int_equal(strlen(name), WINMOD_NAME_MAX);
    /* Non-ASCII units become '?'; an empty name fails. */
    uint16_t odd[3] = { 'a', 0x263A, 0x0A };
    tw_put_bytes(w, list.m[2].name_buf, odd, sizeof odd);
    list.m[2].name_len = 6;
    assert_int_equal(winmod_name(fakevm_read, &w->vm, &list.m[2], name, &trunc, &e), 0);
    assert_string_equal(name, "a??");
    list.m[2].name_len = 0;
    assert_int_equal(winmod_name(fakevm_read, &w->vm, &list.m[2], name, &trunc, &e), -1);
    /* A name buffer in unmapped memory fails. */
    list.m[2].name_len = 8;
    list.m[2].name_buf = UINT64_C(0xffffb00000000000);
    assert_int_equal(winmod_name(fakevm_read, &w->vm, &list.m[2], name, &trunc, &e), -1);
    done(w);
}

static void test_records(void **state)
{
    (void)state;
    struct tw *w = world(drv);
    uint64_t tf = TW_RECORDS, er = TW_RECORDS + 0x1000, cx = TW_RECORDS + 0x2000;
    tw_put64(w, tf + 0x168, TW_MOD(2) + 0x42);
    tw_put64(w, tf + 0x180, UINT64_C(0xffffa00000777000));
    tw_put32(w, er, 0xC0000005);
    tw_put64(w, er + 0x10, TW_MOD(2) + 0x43);
    tw_put64(w, cx + 0xF8, TW_MOD(2) + 0x44);
    tw_put64(w, cx + 0x98, UINT64_C(0xffffa00000778000));
    struct wintrap_regs r;
    struct wintrap_exrec x;
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(wintrap_read_trap_frame(fakevm_read, &w->vm, &w->prof, tf, &r, &e), 0);
    assert_true(r.has_rip && r.has_rsp);
    assert_int_equal(r.rip, TW_MOD(2) + 0x42);
    assert_int_equal(r.rsp, UINT64_C(0xffffa00000777000));
    assert_int_equal(wintrap_read_exception_record(fakevm_read, &w->vm, &w->prof, er, &x, &e), 0);
    assert_true(x.has_code && x.has_address);
    assert_int_equal(x.code, 0xC0000005);
    assert_int_equal(x.address, TW_MOD(2) + 0x43);
    assert_int_equal(wintrap_read_context(fakevm_read, &w->vm, &w->prof, cx, &r, &e), 0);
    assert_int_equal(r.rip, TW_MOD(2) + 0x44);
    assert_int_equal(r.rsp, UINT64_C(0xffffa00000778000));
    /* Unmapped, user-mode, NULL: failures, nothing present. */
    assert_int_equal(wintrap_read_trap_frame(fakevm_read, &w->vm, &w->prof,
                                             UINT64_C(0xffffb00000000000), &r, &e), -1);
    assert_false(r.has_rip || r.has_rsp);
    assert_int_equal(wintrap_read_trap_frame(fakevm_read, &w->vm, &w->prof, 0x7ff00000, &r, &e), -1);
    assert_int_equal(wintrap_read_exception_record(fakevm_read, &w->vm, &w->prof, 0, &x, &e), -1);
    assert_false(x.has_code || x.has_address);
    /* A profile without the field: absent, not guessed. */
    w->prof.ktrap_frame_rsp.present = false;
    assert_int_equal(wintrap_read_trap_frame(fakevm_read, &w->vm, &w->prof, tf, &r, &e), 0);
    assert_true(r.has_rip);
    assert_false(r.has_rsp);
    w->prof.ktrap_frame_rip.present = false;
    assert_int_equal(wintrap_read_trap_frame(fakevm_read, &w->vm, &w->prof, tf, &r, &e), -1);
    /* An absurd profile offset is refused. */
    w->prof.context_rip.value = 0x100000;
    assert_int_equal(wintrap_read_context(fakevm_read, &w->vm, &w->prof, cx, &r, &e), -1);
    done(w);
}

static void test_process_name(void **state)
{
    (void)state;
    struct tw *w = world(drv);
    uint64_t ep = TW_RECORDS + 0x3000;
    tw_put_bytes(w, ep + 0x5A8, "csrss.exe", 10);
    uint8_t name[15];
    size_t len;
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(wintrap_read_process_name(fakevm_read, &w->vm, &w->prof, ep, name, &len, &e), 0);
    assert_int_equal(len, 9);
    assert_memory_equal(name, "csrss.exe", 9);
    /* 15 bytes without a NUL: all 15. */
    tw_put_bytes(w, ep + 0x5A8, "abcdefghijklmnopq", 17);
    assert_int_equal(wintrap_read_process_name(fakevm_read, &w->vm, &w->prof, ep, name, &len, &e), 0);
    assert_int_equal(len, 15);
    assert_int_equal(wintrap_read_process_name(fakevm_read, &w->vm, &w->prof,
                                               UINT64_C(0xffffb00000000000), name, &len, &e), -1);
    assert_int_equal(len, 0);
    done(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_walk_find_name_timestamp),
        cmocka_unit_test(test_kldr_preferred_and_missing_offsets),
        cmocka_unit_test(test_loop_not_through_head),
        cmocka_unit_test(test_cap),
        cmocka_unit_test(test_overlap_and_bad_sizes),
        cmocka_unit_test(test_broken_links),
        cmocka_unit_test(test_long_and_odd_names),
        cmocka_unit_test(test_records),
        cmocka_unit_test(test_process_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
