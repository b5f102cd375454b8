/* Unit tests for win/pe: a valid PE32+ image built in a buffer, then many
 * damaged variants, each of which must fail with a clear message. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "pe_builder.h"
#include "win/pe.h"

static const uint64_t BASE = UINT64_C(0xfffff80000400000);
static uint8_t img[PB_SIZE];
static struct fakevm vm;

static int setup(void **state)
{
    (void)state;
    pb_build(img, "ntoskrnl.exe");
    fakevm_init(&vm);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fakevm_free(&vm);
    return 0;
}

static void map(void)
{
    fakevm_map(&vm, BASE, img, PB_SIZE);
}

/* Open the image; expect failure whose message contains `needle`. */
static void expect_open_fail(const char *needle)
{
    map();
    struct pe_image pe;
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(pe_open(&pe, fakevm_read, &vm, BASE, &e), -1);
    if (strstr(bm_err_msg(&e), needle) == NULL)
        fail_msg("message '%s' lacks '%s'", bm_err_msg(&e), needle);
}

static void open_ok(struct pe_image *pe)
{
    map();
    struct bm_err e = BM_ERR_INIT;
    if (pe_open(pe, fakevm_read, &vm, BASE, &e) != 0)
        fail_msg("pe_open: %s", bm_err_msg(&e));
}

static void test_valid_image(void **state)
{
    (void)state;
    struct pe_image pe;
    open_ok(&pe);
    assert_int_equal(pe.machine, PE_MACHINE_AMD64);
    assert_int_equal(pe.size_of_image, PB_SIZE);
    assert_int_equal(pe.nsections, 2);
    assert_string_equal(pe.sections[0].name, ".text");
    assert_ptr_equal(pe_section_at(&pe, 0x1100), &pe.sections[0]);
    assert_null(pe_section_at(&pe, 0x10));
    assert_true(pe.sections[0].characteristics & PE_SCN_MEM_EXECUTE);

    struct bm_err e = BM_ERR_INIT;
    struct pe_exports ex;
    assert_int_equal(pe_exports_open(&pe, &ex, &e), 0);
    assert_string_equal(ex.dll_name, "ntoskrnl.exe");
    assert_int_equal(ex.nnames, 4);

    struct pe_export x;
    assert_int_equal(pe_export_find(&pe, &ex, "KeBugCheckEx", &x, &e), 0);
    assert_int_equal(x.rva, 0x1100);
    assert_false(x.forwarder);
    assert_int_equal(pe_export_find(&pe, &ex, "KeBugCheck", &x, &e), 0);
    assert_int_equal(x.rva, 0x1000);
    assert_int_equal(pe_export_find(&pe, &ex, "RtlZero", &x, &e), 0);
    assert_int_equal(x.rva, 0x1200);
    assert_int_equal(pe_export_find(&pe, &ex, "KeFwd", &x, &e), 0);
    assert_true(x.forwarder);
    assert_string_equal(x.forward, "NTDLL.RtlFoo");

    struct pe_rsds r;
    assert_int_equal(pe_read_rsds(&pe, &r, &e), 0);
    assert_string_equal(r.guid, PB_GUID);
    assert_int_equal(r.age, PB_AGE);
    assert_string_equal(r.pdb_name, "ntkrnlmp.pdb");
}

static void test_export_not_found(void **state)
{
    (void)state;
    struct pe_image pe;
    open_ok(&pe);
    struct bm_err e = BM_ERR_INIT;
    struct pe_exports ex;
    struct pe_export x;
    assert_int_equal(pe_exports_open(&pe, &ex, &e), 0);
    assert_int_equal(pe_export_find(&pe, &ex, "KeBugCheck3", &x, &e), -1);
    assert_non_null(strstr(bm_err_msg(&e), "does not export KeBugCheck3"));
    bm_err_clear(&e);
    assert_int_equal(pe_export_find(&pe, &ex, "", &x, &e), -1);
    char longname[400];
    memset(longname, 'A', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    bm_err_clear(&e);
    assert_int_equal(pe_export_find(&pe, &ex, longname, &x, &e), -1);
}

static void test_unsorted_names(void **state)
{
    (void)state;
    /* Swap the first and last name pointers: binary search misses, the
     * linear pass still finds them. */
    uint32_t a, b;
    memcpy(&a, img + PB_NAMES, 4);
    memcpy(&b, img + PB_NAMES + 12, 4);
    memcpy(img + PB_NAMES, &b, 4);
    memcpy(img + PB_NAMES + 12, &a, 4);
    struct pe_image pe;
    open_ok(&pe);
    struct bm_err e = BM_ERR_INIT;
    struct pe_exports ex;
    struct pe_export x;
    assert_int_equal(pe_exports_open(&pe, &ex, &e), 0);
    assert_int_equal(pe_export_find(&pe, &ex, "KeBugCheck", &x, &e), 0);
}

static void test_truncated_headers(void **state)
{
    (void)state;
    /* Only the first 4 KiB page exists, and the NT headers are cut by a
     * hole: put them at the very end of the page. */
    pb_put32(img, 0x3c, 0xff0);
    fakevm_map(&vm, BASE, img, 0x1000);
    struct pe_image pe;
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(pe_open(&pe, fakevm_read, &vm, BASE, &e), -1);
    assert_non_null(strstr(bm_err_msg(&e), "NT headers"));
}

static void test_nothing_mapped(void **state)
{
    (void)state;
    struct pe_image pe;
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(pe_open(&pe, fakevm_read, &vm, BASE, &e), -1);
    assert_non_null(strstr(bm_err_msg(&e), "DOS header"));
}

static void test_no_mz(void **state)
{
    (void)state;
    img[0] = 'Z';
    expect_open_fail("no MZ");
}

static void test_lfanew_out_of_range(void **state)
{
    (void)state;
    pb_put32(img, 0x3c, 0x20000);
    expect_open_fail("e_lfanew 0x20000");
    pb_put32(img, 0x3c, 0x10);
    expect_open_fail("e_lfanew 0x10");
    pb_put32(img, 0x3c, 0xffffffff);
    expect_open_fail("out of range");
}

static void test_no_pe_signature(void **state)
{
    (void)state;
    img[PB_LFANEW + 1] = 'X';
    expect_open_fail("no PE signature");
}

static void test_pe32_magic(void **state)
{
    (void)state;
    pb_put16(img, PB_OPT, 0x10b);
    expect_open_fail("32-bit");
    pb_put16(img, PB_OPT, 0x1234);
    expect_open_fail("magic 0x1234");
}

static void test_bad_sizes(void **state)
{
    (void)state;
    pb_put32(img, PB_OPT + 56, 0);
    expect_open_fail("SizeOfImage 0x0");
    pb_put32(img, PB_OPT + 56, 0x40000000);
    expect_open_fail("SizeOfImage 0x40000000");
    pb_put32(img, PB_OPT + 56, PB_SIZE);
    pb_put32(img, PB_OPT + 60, 0x100);
    expect_open_fail("SizeOfHeaders 0x100");
    pb_put32(img, PB_OPT + 60, PB_SIZE + 0x1000);
    expect_open_fail("SizeOfHeaders");
}

static void test_bad_optional_header(void **state)
{
    (void)state;
    pb_put16(img, PB_LFANEW + 20, 50);
    expect_open_fail("SizeOfOptionalHeader 50");
    pb_put16(img, PB_LFANEW + 20, 0xffff);
    expect_open_fail("SizeOfOptionalHeader");
    /* 16 directories claimed but room for only 2. */
    pb_put16(img, PB_LFANEW + 20, 128);
    expect_open_fail("data directories");
}

static void test_bad_section_count(void **state)
{
    (void)state;
    pb_put16(img, PB_LFANEW + 6, 0);
    expect_open_fail("NumberOfSections 0");
    pb_put16(img, PB_LFANEW + 6, 200);
    expect_open_fail("NumberOfSections 200");
}

static void test_section_clamped(void **state)
{
    (void)state;
    pb_put32(img, PB_SECTIONS + 40 + 8, 0xfffffff0);   /* .rdata VirtualSize */
    struct pe_image pe;
    open_ok(&pe);
    assert_int_equal(pe.sections[1].vsize, PB_SIZE - 0x2000);
    assert_null(pe_section_at(&pe, PB_SIZE + 5));
}

static void exports_fail(const char *needle)
{
    struct pe_image pe;
    open_ok(&pe);
    struct bm_err e = BM_ERR_INIT;
    struct pe_exports ex;
    assert_int_equal(pe_exports_open(&pe, &ex, &e), -1);
    if (strstr(bm_err_msg(&e), needle) == NULL)
        fail_msg("message '%s' lacks '%s'", bm_err_msg(&e), needle);
}

static void find_fail(const char *name, const char *needle)
{
    struct pe_image pe;
    open_ok(&pe);
    struct bm_err e = BM_ERR_INIT;
    struct pe_exports ex;
    struct pe_export x;
    assert_int_equal(pe_exports_open(&pe, &ex, &e), 0);
    assert_int_equal(pe_export_find(&pe, &ex, name, &x, &e), -1);
    if (strstr(bm_err_msg(&e), needle) == NULL)
        fail_msg("message '%s' lacks '%s'", bm_err_msg(&e), needle);
}

static void test_huge_export_counts(void **state)
{
    (void)state;
    pb_put32(img, PB_EXPORT_DIR + 24, 0x7fffffff);
    exports_fail("2147483647 names");
    pb_put32(img, PB_EXPORT_DIR + 24, 4);
    pb_put32(img, PB_EXPORT_DIR + 20, 65537);
    exports_fail("65537 functions");
    /* Within the cap but the table would run past the image. */
    pb_put32(img, PB_EXPORT_DIR + 20, 65536);
    exports_fail("outside");
}

static void test_export_dir_outside(void **state)
{
    (void)state;
    pb_put32(img, PB_OPT + 112, PB_SIZE - 8);
    exports_fail("export directory");
    pb_put32(img, PB_OPT + 112, 0);
    exports_fail("no export directory");
}

static void test_export_tables_outside(void **state)
{
    (void)state;
    pb_put32(img, PB_EXPORT_DIR + 28, PB_SIZE - 8);     /* AddressOfFunctions */
    exports_fail("export tables lie outside");
    pb_put32(img, PB_EXPORT_DIR + 28, PB_FUNCS);
    pb_put32(img, PB_EXPORT_DIR + 36, 0xfffffffe);      /* AddressOfNameOrdinals */
    exports_fail("export tables lie outside");
}

static void test_name_rva_outside(void **state)
{
    (void)state;
    pb_put32(img, PB_NAMES + 4, 0x10000);               /* name #1 */
    find_fail("KeBugCheckEx", "name #1 has RVA 0x10000 outside");
}

static void test_name_runs_past_image(void **state)
{
    (void)state;
    memcpy(img + PB_SIZE - 4, "KeBu", 4);    /* matches, then the image ends */
    pb_put32(img, PB_NAMES + 4, PB_SIZE - 4);
    find_fail("KeBugCheckEx", "runs past SizeOfImage");
}

static void test_name_before_hole(void **state)
{
    (void)state;
    /* A name ending exactly at a page boundary followed by an unmapped page
     * is still readable: reads never span pages needlessly. */
    strcpy((char *)img + 0x2ff8, "KeBugCh");
    pb_put32(img, PB_NAMES + 0, 0x2ff8);
    struct pe_image pe;
    open_ok(&pe);
    fakevm_unmap(&vm, BASE + 0x3000);
    struct bm_err e = BM_ERR_INIT;
    struct pe_exports ex;
    struct pe_export x;
    assert_int_equal(pe_exports_open(&pe, &ex, &e), 0);
    assert_int_equal(pe_export_find(&pe, &ex, "KeBugCh", &x, &e), 0);
    assert_int_equal(x.rva, 0x1000);
}

static void test_bad_ordinal_and_rva(void **state)
{
    (void)state;
    pb_put16(img, PB_ORDS + 2, 9);                      /* KeBugCheckEx */
    find_fail("KeBugCheckEx", "ordinal index 9");
    pb_put16(img, PB_ORDS + 2, 2);
    pb_put32(img, PB_FUNCS + 8, 0x123456);
    find_fail("KeBugCheckEx", "RVA 0x123456 outside");
    pb_put32(img, PB_FUNCS + 8, 0);
    find_fail("KeBugCheckEx", "RVA 0x0");
}

static void test_forwarder_unterminated(void **state)
{
    (void)state;
    memset(img + PB_FORWARD, 'F', 0x300);
    find_fail("KeFwd", "forwarder");
}

static void rsds_fail(const char *needle)
{
    struct pe_image pe;
    open_ok(&pe);
    struct bm_err e = BM_ERR_INIT;
    struct pe_rsds r;
    assert_int_equal(pe_read_rsds(&pe, &r, &e), -1);
    if (strstr(bm_err_msg(&e), needle) == NULL)
        fail_msg("message '%s' lacks '%s'", bm_err_msg(&e), needle);
}

static void test_missing_debug_dir(void **state)
{
    (void)state;
    pb_put32(img, PB_OPT + 112 + 48, 0);
    rsds_fail("no debug directory");
    /* Fewer directories than the debug slot. */
    pb_build(img, "ntoskrnl.exe");
    pb_put32(img, PB_OPT + 108, 2);
    rsds_fail("no debug directory");
}

static void test_no_codeview(void **state)
{
    (void)state;
    pb_put32(img, PB_DEBUG_DIR + 28 + 12, 16);          /* REPRO, not CodeView */
    rsds_fail("no CodeView");
}

static void test_rsds_outside(void **state)
{
    (void)state;
    pb_put32(img, PB_DEBUG_DIR + 28 + 20, PB_SIZE - 16);
    rsds_fail("outside SizeOfImage");
    pb_put32(img, PB_DEBUG_DIR + 28 + 20, PB_RSDS);
    pb_put32(img, PB_DEBUG_DIR + 28 + 16, 0xffffffff);
    rsds_fail("outside SizeOfImage");
    pb_put32(img, PB_DEBUG_DIR + 28 + 16, 10);
    rsds_fail("too small");
    pb_put32(img, PB_DEBUG_DIR + 28 + 16, 37);
    pb_put32(img, PB_DEBUG_DIR + 28 + 20, 0);
    rsds_fail("not mapped");
}

static void test_rsds_bad_record(void **state)
{
    (void)state;
    memcpy(img + PB_RSDS, "NB10", 4);
    rsds_fail("NB10");
    memcpy(img + PB_RSDS, "RSDS", 4);
    pb_put32(img, PB_DEBUG_DIR + 28 + 16, 24 + 4);      /* name cut short */
    rsds_fail("not terminated");
    pb_put32(img, PB_DEBUG_DIR + 28 + 16, 24 + 13);
    img[PB_RSDS + 24] = 0;
    rsds_fail("empty PDB name");
}

static void test_debug_dir_outside(void **state)
{
    (void)state;
    pb_put32(img, PB_OPT + 112 + 48, PB_SIZE - 20);
    rsds_fail("debug directory");
}

static void test_guid_format(void **state)
{
    (void)state;
    const uint8_t raw[16] = { 0x0a, 0x04, 0x11, 0x8b, 0x28, 0x59, 0x7b, 0x75,
                              0x11, 0x39, 0x0a, 0xc7, 0x8f, 0x6b, 0x69, 0x25 };
    char s[33];
    pe_guid_format(raw, s);
    assert_string_equal(s, "8B11040A5928757B11390AC78F6B6925");
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_valid_image), T(test_export_not_found), T(test_unsorted_names),
        T(test_truncated_headers), T(test_nothing_mapped), T(test_no_mz),
        T(test_lfanew_out_of_range), T(test_no_pe_signature), T(test_pe32_magic),
        T(test_bad_sizes), T(test_bad_optional_header), T(test_bad_section_count),
        T(test_section_clamped), T(test_huge_export_counts),
        T(test_export_dir_outside), T(test_export_tables_outside),
        T(test_name_rva_outside), T(test_name_runs_past_image),
        T(test_name_before_hole), T(test_bad_ordinal_and_rva),
        T(test_forwarder_unterminated), T(test_missing_debug_dir),
        T(test_no_codeview), T(test_rsds_outside), T(test_rsds_bad_record),
        T(test_debug_dir_outside), T(test_guid_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
