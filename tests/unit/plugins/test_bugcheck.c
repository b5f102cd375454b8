#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugins/bsodmon/bugcheck.h"

struct known {
    uint64_t code;
    const char *name;
};

static void check_all(const struct known *k, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *got = bugcheck_name(k[i].code);
        if (strcmp(got, k[i].name) != 0)
            fail_msg("bugcheck_name(0x%llx) = %s, want %s",
                     (unsigned long long)k[i].code, got, k[i].name);
    }
}

#define CHECK_ALL(arr) check_all((arr), sizeof(arr) / sizeof((arr)[0]))

/* bsodmon-plugin.md, "Common Bug Check Codes", exactly. */
static void test_spec_common_codes(void **state)
{
    (void)state;
    static const struct known k[] = {
        { 0x0000000A, "IRQL_NOT_LESS_OR_EQUAL" },
        { 0x0000001E, "KMODE_EXCEPTION_NOT_HANDLED" },
        { 0x00000050, "PAGE_FAULT_IN_NONPAGED_AREA" },
        { 0x0000007E, "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED" },
        { 0x0000007F, "UNEXPECTED_KERNEL_MODE_TRAP" },
        { 0x000000D1, "DRIVER_IRQL_NOT_LESS_OR_EQUAL" },
        { 0x000000E2, "MANUALLY_INITIATED_CRASH" },
        { 0x000000EF, "CRITICAL_PROCESS_DIED" },
        { 0x00000139, "KERNEL_SECURITY_CHECK_FAILURE" },
    };
    CHECK_ALL(k);
}

/* Current Microsoft spelling, including where older lists or the summary
 * tables of the docs differ. */
static void test_current_spelling(void **state)
{
    (void)state;
    static const struct known k[] = {
        { 0x00000001, "APC_INDEX_MISMATCH" },
        { 0x000001D0, "ACPI_FIRMWARE_WATCHDOG_TIMEOUT" },
        { 0x000000DF, "IMPERSONATING_WORKER_THREAD" },
        { 0x00000058, "FTDISK_INTERNAL_ERROR" },
        { 0x0000006E, "SESSION2_INITIALIZATION_FAILED" },
        { 0x00000071, "SESSION5_INITIALIZATION_FAILED" },
        { 0x0000011A, "EM_INITIALIZATION_FAILURE" },
        { 0x00000356, "XBOX_ERACTRL_CS_TIMEOUT" },
        { 0x0000009F, "DRIVER_POWER_STATE_FAILURE" },
        { 0x00000124, "WHEA_UNCORRECTABLE_ERROR" },
        { 0x00000133, "DPC_WATCHDOG_VIOLATION" },
        { 0x000001F2, "KASAN_ILLEGAL_ACCESS" },
        { 0x00000BFE, "BC_BLUETOOTH_VERIFIER_FAULT" },
        { 0x00000BFF, "BC_BTHMINI_VERIFIER_FAULT" },
        { 0x00020001, "HYPERVISOR_ERROR" },
        { 0x00030006, "XBOX_MANUALLY_INITIATED_CRASH" },
        { 0x4000008A, "THREAD_TERMINATE_HELD_MUTEX" },
    };
    CHECK_ALL(k);
}

static void test_m_variants(void **state)
{
    (void)state;
    static const struct known k[] = {
        { 0x10000050, "PAGE_FAULT_IN_NONPAGED_AREA_M" },
        { 0x1000007E, "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED_M" },
        { 0x1000007F, "UNEXPECTED_KERNEL_MODE_TRAP_M" },
        { 0x1000008E, "KERNEL_MODE_EXCEPTION_NOT_HANDLED_M" },
        { 0x100000D6, "DRIVER_PAGE_FAULT_BEYOND_END_OF_ALLOCATION_M" },
        { 0x100000EA, "THREAD_STUCK_IN_DEVICE_DRIVER_M" },
    };
    CHECK_ALL(k);
}

static void test_live_dumps(void **state)
{
    (void)state;
    static const struct known k[] = {
        { 0x000000AB, "SESSION_HAS_VALID_POOL_ON_EXIT" },
        { 0x00000117, "VIDEO_TDR_TIMEOUT_DETECTED" },
        { 0x0000015D, "SOC_SUBSYSTEM_FAILURE_LIVEDUMP" },
        { 0x0000015E, "BUGCODE_NDIS_DRIVER_LIVE_DUMP" },
        { 0x00000161, "LIVE_SYSTEM_DUMP" },
        { 0x00000193, "VIDEO_DXGKRNL_LIVEDUMP" },
        { 0x000001A1, "WIN32K_CALLOUT_WATCHDOG_LIVEDUMP" },
        { 0x000001A8, "VIDEO_DXGKRNL_BLACK_SCREEN_LIVEDUMP" },
        { 0x000001C4, "DRIVER_VERIFIER_DETECTED_VIOLATION_LIVEDUMP" },
        { 0x000001F5, "APPLICATION_HANG_KERNEL_LIVEDUMP" },
        { 0x00000184, "WVR_LIVEDUMP_MANUALLY_INITIATED" },
        { 0x000011C8, "MANUALLY_INITIATED_POWER_BUTTON_HOLD_LIVE_DUMP" },
        { 0x000021C8, "MANUALLY_INITIATED_BLACKSCREEN_HOTKEY_LIVE_DUMP" },
        { 0x000000AD, "VIDEO_DRIVER_DEBUG_REPORT_REQUEST" },
        { 0x400000AD, "VIDEO_DRIVER_DEBUG_REPORT_REQUEST" },
        { 0x400001EF, "VMBUS_LIVEDUMP" },
    };
    CHECK_ALL(k);
}

static void test_status_codes(void **state)
{
    (void)state;
    static const struct known k[] = {
        { 0xC0000218, "STATUS_CANNOT_LOAD_REGISTRY_FILE" },
        { 0xC000021A, "WINLOGON_FATAL_ERROR" },
        { 0xC0000221, "STATUS_IMAGE_CHECKSUM_MISMATCH" },
        { 0xC000026C, "STATUS_DRIVER_UNABLE_TO_LOAD" },
        { 0xDEADDEAD, "MANUALLY_INITIATED_CRASH1" },
    };
    CHECK_ALL(k);
}

static void test_unknown(void **state)
{
    (void)state;
    static const uint64_t unknown[] = {
        0x0, 0x1D9A, 0x12345678, 0x4000007E /* WINDOWS_NT_BANNER: a string id */,
        0x80000000 /* BUGCHECK_CONTEXT_MODIFIER: a flag */, 0xC0000005,
        0xFFFFFFFF,
        /* the low 32 bits alone would name a code */
        0x100000050ULL, 0x10000000AULL, 0xFFFFFFFF00000050ULL, 0x8000000000000050ULL,
        0x1C000021AULL, UINT64_MAX,
    };
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *got = bugcheck_name(unknown[i]);
        if (strcmp(got, BUGCHECK_UNKNOWN_NAME) != 0)
            fail_msg("bugcheck_name(0x%llx) = %s, want UNKNOWN_CODE",
                     (unsigned long long)unknown[i], got);
    }
    assert_string_equal(BUGCHECK_UNKNOWN_NAME, "UNKNOWN_CODE");
}

static int name_ok(const char *s)
{
    if (!s || !*s)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return 0;
    return 1;
}

/* Strictly ascending (hence no duplicates), well-formed names, every entry
 * found by the search, neighbours of every entry not confused with it. */
static void test_table_shape(void **state)
{
    (void)state;
    size_t n = bugcheck_count();
    assert_true(n > 500);
    uint32_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t code = 1;
        const char *name = NULL;
        bugcheck_entry(i, &code, &name);
        assert_true(name_ok(name));
        assert_string_not_equal(name, BUGCHECK_UNKNOWN_NAME);
        if (i > 0 && code <= prev)
            fail_msg("entry %zu: 0x%08x after 0x%08x (not strictly ascending)",
                     i, (unsigned)code, (unsigned)prev);
        assert_ptr_equal(bugcheck_name(code), name);
        if (code > 0 && (i == 0 || code - 1 != prev))
            assert_string_equal(bugcheck_name(code - 1), BUGCHECK_UNKNOWN_NAME);
        assert_string_equal(bugcheck_name((uint64_t)code | (1ULL << 32)),
                            BUGCHECK_UNKNOWN_NAME);
        prev = code;
    }
    uint32_t c = 7;
    const char *nm = "x";
    bugcheck_entry(n, &c, &nm);
    assert_int_equal(c, 0);
    assert_null(nm);
    bugcheck_entry(0, NULL, NULL);
}

/* The compiled table is the TSV, entry for entry (BUGCHECK_TSV from meson). */
static void test_matches_tsv(void **state)
{
    (void)state;
    const char *path = getenv("BUGCHECK_TSV");
    if (!path)
        fail_msg("BUGCHECK_TSV is not set; run the test through meson test");
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s: %s", path, strerror(errno));
    char line[512];
    size_t i = 0, lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        char name[256], source[32];
        unsigned int code;
        if (sscanf(line, "0x%8x\t%255[A-Z0-9_]\t%31s", &code, name, source) != 3)
            fail_msg("%s:%zu: malformed line", path, lineno);
        uint32_t got_code;
        const char *got_name;
        if (i >= bugcheck_count())
            fail_msg("%s:%zu: more TSV entries than the table's %zu", path, lineno,
                     bugcheck_count());
        bugcheck_entry(i, &got_code, &got_name);
        if (got_code != code || strcmp(got_name, name) != 0)
            fail_msg("%s:%zu: TSV has 0x%08X %s, table entry %zu is 0x%08X %s; "
                     "regenerate bugcheck_table.c",
                     path, lineno, code, name, i, (unsigned)got_code, got_name);
        i++;
    }
    fclose(f);
    assert_int_equal(i, bugcheck_count());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_common_codes),
        cmocka_unit_test(test_current_spelling),
        cmocka_unit_test(test_m_variants),
        cmocka_unit_test(test_live_dumps),
        cmocka_unit_test(test_status_codes),
        cmocka_unit_test(test_unknown),
        cmocka_unit_test(test_table_shape),
        cmocka_unit_test(test_matches_tsv),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
