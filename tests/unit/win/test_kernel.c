/* Unit tests for win/kernel: kernel discovery in a fake virtual memory with
 * holes, decoys and drivers, then KeBugCheck2 via the export and callscan. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "pe_builder.h"
#include "win/kernel.h"

static const uint64_t KBASE = UINT64_C(0xfffff80000400000);   /* 2 MiB aligned */
static const uint32_t KSIZE = 0x10000;
static struct fakevm vm;
static uint8_t img[PB_SIZE];

/* KeBugCheckEx at RVA 0x1100: RtlCaptureContext-like call to 0x1f00, then
 * call KeBugCheck2 at 0x1800, int3. */
static void put_kebugcheckex(uint8_t *at, uint32_t rva, uint32_t helper,
                             uint32_t target)
{
    const uint8_t pro[] = { 0x48, 0x89, 0x4c, 0x24, 0x08, 0x9c, 0x48, 0x83, 0xec, 0x30, 0xfa };
    memcpy(at, pro, sizeof pro);
    uint32_t pc = rva + sizeof pro;
    at[sizeof pro] = 0xe8;
    pb_put32(at, sizeof pro + 1, helper - (pc + 5));
    pc += 5;
    at[sizeof pro + 5] = 0xe8;
    pb_put32(at, sizeof pro + 6, target - (pc + 5));
    at[sizeof pro + 10] = 0xcc;
}

/* Kernel of SizeOfImage 0x10000: headers/.text/.rdata in the first 0x4000
 * bytes, a hole (discarded INIT) at 0x4000..0x9000 except a decoy "MZ"
 * page at 0x6000, and the pointer's page at 0x9000. */
static int setup(void **state)
{
    (void)state;
    fakevm_init(&vm);
    pb_build(img, "ntoskrnl.exe");
    pb_put32(img, PB_OPT + 56, KSIZE);
    put_kebugcheckex(img + 0x1100, 0x1100, 0x1f00, 0x1800);
    fakevm_map(&vm, KBASE, img, PB_SIZE);
    uint8_t decoy[4096] = { 'M', 'Z', 0xff, 0xff };
    fakevm_map(&vm, KBASE + 0x6000, decoy, sizeof decoy);
    uint8_t code[4096] = { 0 };
    fakevm_map(&vm, KBASE + 0x9000, code, sizeof code);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fakevm_free(&vm);
    return 0;
}

static void test_find_kernel(void **state)
{
    (void)state;
    struct winkernel k;
    struct bm_err e = BM_ERR_INIT;
    if (winkernel_find(fakevm_read, &vm, KBASE + 0x9123, 0, &k, &e) != 0)
        fail_msg("%s", bm_err_msg(&e));
    assert_int_equal(k.base, KBASE);
    assert_int_equal(k.size, KSIZE);
    assert_string_equal(k.name, "ntoskrnl.exe");
    assert_true(k.has_rsds);
    assert_string_equal(k.rsds.guid, PB_GUID);
    assert_int_equal(k.rsds.age, 1);
    assert_string_equal(k.rsds.pdb_name, "ntkrnlmp.pdb");
    /* The 2 MiB boundary below the pointer is tried first: one read. */
    assert_int_equal(k.pages_scanned, 1);
    assert_int_equal(k.pages_unreadable, 0);

    struct winkernel_bugcheck b;
    if (winkernel_find_bugcheck2(&k, &b, &e) != 0)
        fail_msg("%s", bm_err_msg(&e));
    assert_int_equal(b.kebugcheckex, KBASE + 0x1100);
    assert_int_equal(b.kebugcheck2, KBASE + 0x1800);
    assert_int_equal(b.scan.ncalls, 2);
}

/* The same kernel at a base that is not 2 MiB aligned: the boundary below
 * (unmapped) is tried first, then every page down from the pointer's,
 * skipping holes and the decoy, each page read once. */
static void test_unaligned_kernel(void **state)
{
    (void)state;
    const uint64_t base = KBASE + 0x3000;
    fakevm_free(&vm);
    fakevm_init(&vm);
    fakevm_map(&vm, base, img, PB_SIZE);
    uint8_t decoy[4096] = { 'M', 'Z', 0xff, 0xff };
    fakevm_map(&vm, base + 0x6000, decoy, sizeof decoy);
    uint8_t code[4096] = { 0 };
    fakevm_map(&vm, base + 0x9000, code, sizeof code);
    struct winkernel k;
    struct bm_err e = BM_ERR_INIT;
    if (winkernel_find(fakevm_read, &vm, base + 0x9123, 0, &k, &e) != 0)
        fail_msg("%s", bm_err_msg(&e));
    assert_int_equal(k.base, base);
    assert_int_equal(k.size, KSIZE);
    /* The 16 boundaries of the 32 MiB below (none mapped), then the 10
     * pages from the pointer's down to the base, of which 0x8000, 0x7000,
     * 0x5000 and 0x4000 are holes. */
    assert_int_equal(k.pages_scanned, 16 + 10);
    assert_int_equal(k.pages_unreadable, 16 + 4);
    /* A scan too short to reach the base: every page once, then the error. */
    bm_err_clear(&e);
    assert_int_equal(winkernel_find(fakevm_read, &vm, base + 0x9123, 0x9000, &k, &e), -1);
    assert_int_equal(k.pages_scanned, 9);
}

static void test_pointer_at_base_page(void **state)
{
    (void)state;
    struct winkernel k;
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(winkernel_find(fakevm_read, &vm, KBASE + 0x10, 0, &k, &e), 0);
    assert_int_equal(k.base, KBASE);
}

static void test_found_by_export(void **state)
{
    (void)state;
    /* An odd export-directory name: recognised by KeBugCheckEx instead. */
    fakevm_free(&vm);
    pb_build(img, "krnl.exe");
    fakevm_map(&vm, KBASE, img, PB_SIZE);
    struct winkernel k;
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(winkernel_find(fakevm_read, &vm, KBASE + 0x1000, 0, &k, &e), 0);
    assert_string_equal(k.name, "krnl.exe");
}

static void test_pointer_in_driver(void **state)
{
    (void)state;
    /* A driver below the kernel holds the pointer: not ntoskrnl (no kernel
     * name, no KeBugCheckEx export), so the search fails naming it. */
    uint8_t drv[PB_SIZE];
    pb_build(drv, "hal.dll");
    pb_put32(drv, PB_EXPORT_DIR + 24, 0);               /* no names */
    uint64_t dbase = KBASE - 0x200000;
    fakevm_map(&vm, dbase, drv, PB_SIZE);
    struct winkernel k;
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(winkernel_find(fakevm_read, &vm, dbase + 0x1500, 0x100000, &k, &e), -1);
    assert_non_null(strstr(bm_err_msg(&e), "(hal.dll), which is not ntoskrnl"));
    assert_non_null(strstr(bm_err_msg(&e), "1024 KiB"));
}

static void test_pointer_past_image(void **state)
{
    (void)state;
    uint8_t page[4096] = { 0 };
    fakevm_map(&vm, KBASE + 0x20000, page, sizeof page);
    struct winkernel k;
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(winkernel_find(fakevm_read, &vm, KBASE + 0x20010, 0, &k, &e), -1);
    assert_non_null(strstr(bm_err_msg(&e), "ends below it"));
    assert_non_null(strstr(bm_err_msg(&e), "32768 KiB"));
}

static void test_scan_bound(void **state)
{
    (void)state;
    struct winkernel k;
    struct bm_err e = BM_ERR_INIT;
    /* 8 pages of scan cannot reach a base 9 pages down. */
    assert_int_equal(winkernel_find(fakevm_read, &vm, KBASE + 0x9000, 0x8000, &k, &e), -1);
    assert_int_equal(k.pages_scanned, 8);
    /* Low addresses: the scan stops at 0 instead of wrapping. */
    bm_err_clear(&e);
    assert_int_equal(winkernel_find(fakevm_read, &vm, 0x2000, 0, &k, &e), -1);
    assert_int_equal(k.pages_scanned, 3);
}

static void test_kernel_without_rsds(void **state)
{
    (void)state;
    fakevm_free(&vm);
    pb_build(img, "ntoskrnl.exe");
    memcpy(img + PB_RSDS, "XXXX", 4);
    fakevm_map(&vm, KBASE, img, PB_SIZE);
    struct winkernel k;
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(winkernel_find(fakevm_read, &vm, KBASE + 0x1000, 0, &k, &e), 0);
    assert_false(k.has_rsds);
    assert_non_null(strstr(k.rsds_error, "not RSDS"));
}

static void test_bugcheck2_outside_code(void **state)
{
    (void)state;
    fakevm_free(&vm);
    pb_build(img, "ntoskrnl.exe");
    put_kebugcheckex(img + 0x1100, 0x1100, 0x1f00, 0x2200);   /* into .rdata */
    fakevm_map(&vm, KBASE, img, PB_SIZE);
    struct winkernel k;
    struct winkernel_bugcheck b;
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(winkernel_find(fakevm_read, &vm, KBASE + 0x1000, 0, &k, &e), 0);
    assert_int_equal(winkernel_find_bugcheck2(&k, &b, &e), -1);
    assert_non_null(strstr(bm_err_msg(&e), "outside the kernel's code"));

    put_kebugcheckex(img + 0x1100, 0x1100, 0x1f00, 0x900000);  /* outside image */
    fakevm_map(&vm, KBASE, img, PB_SIZE);
    bm_err_clear(&e);
    assert_int_equal(winkernel_find_bugcheck2(&k, &b, &e), -1);
    assert_non_null(strstr(bm_err_msg(&e), "outside the kernel's code"));
}

static void test_bugcheckex_before_hole(void **state)
{
    (void)state;
    /* KeBugCheckEx 16 bytes before a hole (the image is 0x10000 bytes but
     * only 0x4000 are mapped): the code read stops at the hole, and callscan
     * reports that no end of function was seen. */
    static uint8_t big[PB_SIZE + 0x1000];
    memcpy(big, img, PB_SIZE);
    pb_put32(big, PB_FUNCS + 8, 0x3ff0);                /* KeBugCheckEx */
    put_kebugcheckex(big + 0x3ff0, 0x3ff0, 0x1f00, 0x1800);
    fakevm_map(&vm, KBASE, big, PB_SIZE);
    struct winkernel k;
    struct winkernel_bugcheck b;
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(winkernel_find(fakevm_read, &vm, KBASE + 0x1000, 0, &k, &e), 0);
    assert_int_equal(winkernel_find_bugcheck2(&k, &b, &e), -1);
    assert_non_null(strstr(bm_err_msg(&e), "no end of function"));
    assert_int_equal(b.kebugcheckex, KBASE + 0x3ff0);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_find_kernel), T(test_unaligned_kernel), T(test_pointer_at_base_page), T(test_found_by_export),
        T(test_pointer_in_driver), T(test_pointer_past_image), T(test_scan_bound),
        T(test_kernel_without_rsds), T(test_bugcheck2_outside_code),
        T(test_bugcheckex_before_hole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
