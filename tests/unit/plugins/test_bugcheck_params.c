/* Unit tests of the bug check parameter tables (bugcheck_params.h): the
 * lookups, the completeness for every code of the analysis note, the
 * sub-code names that matter for triage, NTSTATUS names with sign
 * extension, and the generator's refusal of bad TSVs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugins/bsodmon/bugcheck.h"
#include "plugins/bsodmon/bugcheck_params.h"

/* The 34 codes of ../shared/notes/bugcheck-parameters.md section 4, plus the
 * 0x1000xxxx twins it names and 0x4C (the hard-error code KeBugCheck2
 * rewrites). Kept here, not parsed from ../shared, so the test does not
 * depend on the note's layout. */
static const uint32_t note_codes[] = {
    0x0A, 0x19, 0x1A, 0x1E, 0x24, 0x3B, 0x3D, 0x44, 0x50, 0x7E, 0x7F, 0x8E,
    0x9F, 0xBE, 0xC2, 0xC4, 0xC5, 0xD1, 0xE2, 0xEF, 0xF4, 0xFC, 0x101, 0x109,
    0x124, 0x12B, 0x133, 0x139, 0x13A, 0x154, 0x18B, 0x18E, 0x1CA, 0x1D5,
    0x1000007E, 0x1000007F, 0x1000008E, 0x4C,
};

static void test_complete_for_the_note(void **state)
{
    (void)state;
    size_t n = sizeof note_codes / sizeof note_codes[0];
    assert_int_equal(n, 38);
    for (size_t i = 0; i < n; i++) {
        const struct bcp_code *c = bcp_find(note_codes[i]);
        if (c == NULL)
            fail_msg("no parameter table for 0x%X", note_codes[i]);
        assert_int_equal(c->code, note_codes[i]);
        for (int j = 0; j < 4; j++) {
            assert_non_null(c->p[j].meaning);
            assert_true(strlen(c->p[j].meaning) > 0);
            assert_true(c->p[j].kind <= BCP_RESERVED);
        }
        /* Every code of the table has a name too. */
        assert_string_not_equal(bugcheck_name(note_codes[i]), BUGCHECK_UNKNOWN_NAME);
    }
    assert_int_equal(bcp_count(), n);
}

struct kinds {
    uint32_t code;
    enum bcp_kind k[4];
};

/* Which parameter is what, for the codes the analysis decodes. */
static void test_kinds(void **state)
{
    (void)state;
    static const struct kinds t[] = {
        { 0x0A, { BCP_ADDRESS, BCP_VALUE, BCP_VALUE, BCP_IP } },
        { 0xD1, { BCP_ADDRESS, BCP_VALUE, BCP_VALUE, BCP_IP } },
        { 0x1E, { BCP_STATUS, BCP_IP, BCP_VALUE, BCP_ADDRESS } },
        { 0x3B, { BCP_STATUS, BCP_IP, BCP_CONTEXT, BCP_RESERVED } },
        { 0x3D, { BCP_EXREC, BCP_CONTEXT, BCP_RESERVED, BCP_RESERVED } },
        { 0x4C, { BCP_STATUS, BCP_OBJECT, BCP_STRING, BCP_STRING } },
        { 0x50, { BCP_ADDRESS, BCP_VALUE, BCP_TRAP, BCP_SUBCODE } },
        { 0x7E, { BCP_STATUS, BCP_IP, BCP_EXREC, BCP_CONTEXT } },
        { 0x1000007E, { BCP_STATUS, BCP_IP, BCP_EXREC, BCP_CONTEXT } },
        { 0x8E, { BCP_STATUS, BCP_IP, BCP_TRAP, BCP_RESERVED } },
        { 0xEF, { BCP_PROCESS, BCP_SUBCODE, BCP_RESERVED, BCP_RESERVED } },
        { 0xFC, { BCP_IP, BCP_VALUE, BCP_TRAP, BCP_RESERVED } },
        { 0x109, { BCP_RESERVED, BCP_RESERVED, BCP_RESERVED, BCP_SUBCODE } },
        { 0x139, { BCP_SUBCODE, BCP_TRAP, BCP_EXREC, BCP_RESERVED } },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        const struct bcp_code *c = bcp_find(t[i].code);
        assert_non_null(c);
        for (int j = 0; j < 4; j++)
            if (c->p[j].kind != t[i].k[j])
                fail_msg("0x%X P%d is %s, want %s", t[i].code, j + 1,
                         bcp_kind_name(c->p[j].kind), bcp_kind_name(t[i].k[j]));
    }
}

/* subcode_param agrees with the kinds; the codes the issue names have one. */
static void test_subcode_param(void **state)
{
    (void)state;
    for (size_t i = 0; i < bcp_count(); i++) {
        const struct bcp_code *c = bcp_entry(i);
        int want = -1;
        for (int j = 0; j < 4; j++)
            if (c->p[j].kind == BCP_SUBCODE)
                want = j;
        assert_int_equal(c->subcode_param, want);
    }
    static const struct { uint32_t code; int param; } t[] = {
        { 0x139, 0 }, { 0x109, 3 }, { 0x1A, 0 }, { 0xC2, 0 }, { 0xC4, 0 },
        { 0x9F, 0 }, { 0x124, 0 }, { 0x13A, 0 }, { 0x133, 0 }, { 0x19, 0 },
        { 0x7F, 0 }, { 0x50, 3 }, { 0xEF, 1 }, { 0xF4, 0 }, { 0x18E, 0 },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        assert_int_equal(bcp_find(t[i].code)->subcode_param, t[i].param);
    assert_int_equal(bcp_find(0x0A)->subcode_param, -1);
    assert_int_equal(bcp_find(0x7E)->subcode_param, -1);
}

static void test_subcode_names(void **state)
{
    (void)state;
    assert_string_equal(bcp_subcode_name(0x139, 3), "CORRUPT_LIST_ENTRY");
    assert_string_equal(bcp_subcode_name(0x139, 0), "LEGACY_GS_VIOLATION");
    assert_string_equal(bcp_subcode_name(0x139, 0x27), "INVALID_DISPATCH_CONTEXT");
    assert_string_equal(bcp_subcode_name(0x139, 0xFFFFFFFF), "INVALID_FAST_FAIL_CODE");
    assert_string_equal(bcp_subcode_name(0x109, 0x1), "function modification");
    assert_string_equal(bcp_subcode_name(0x109, 0x2F), "process shadow corruption");
    assert_string_equal(bcp_subcode_name(0x109, 0x102), "modification of win32k.sys");
    assert_string_equal(bcp_subcode_name(0x1A, 0x41790), "page table page corrupt");
    assert_string_equal(bcp_subcode_name(0xC2, 0x7), "double free");
    assert_string_equal(bcp_subcode_name(0x9F, 0x3), "power IRP blocked too long");
    assert_string_equal(bcp_subcode_name(0x124, 0x0), "MCE");
    assert_string_equal(bcp_subcode_name(0x13A, 0x17), "block corrupted in a delay free list");
    assert_string_equal(bcp_subcode_name(0x133, 0x1),
                        "cumulative time at DISPATCH_LEVEL or above exceeded");
    assert_string_equal(bcp_subcode_name(0xEF, 0), "process terminated");
    assert_string_equal(bcp_subcode_name(0x7F, 8), "double fault");
    assert_string_equal(bcp_subcode_name(0x50, 2), "NONPAGED_BUGCHECK_NOT_PRESENT_PAGE_TABLE");
    /* Undocumented values, codes without sub-codes, 64-bit codes. */
    assert_null(bcp_subcode_name(0x139, 0x1E));
    assert_null(bcp_subcode_name(0x139, UINT64_C(0x100000003)));
    assert_null(bcp_subcode_name(0x109, 0x30));
    assert_null(bcp_subcode_name(0x0A, 0));
    assert_null(bcp_subcode_name(UINT64_C(0x100000139), 3));
    assert_null(bcp_subcode_name(0x12345, 0));
}

/* Every sub-code row belongs to a code with a sub-code parameter, in
 * order, each once; the getters agree with the lookup. */
static void test_subcode_table_shape(void **state)
{
    (void)state;
    assert_true(bcp_subcode_count() > 200);
    uint32_t pc = 0;
    uint64_t pv = 0;
    for (size_t i = 0; i < bcp_subcode_count(); i++) {
        uint32_t c;
        uint64_t v;
        const char *name;
        bcp_subcode_entry(i, &c, &v, &name);
        assert_non_null(name);
        const struct bcp_code *bc = bcp_find(c);
        assert_non_null(bc);
        assert_true(bc->subcode_param >= 0);
        if (i > 0)
            assert_true(c > pc || (c == pc && v > pv));
        assert_ptr_equal(bcp_subcode_name(c, v), name);
        pc = c;
        pv = v;
    }
    uint32_t c = 1;
    uint64_t v = 1;
    const char *name = "x";
    bcp_subcode_entry(bcp_subcode_count(), &c, &v, &name);
    assert_int_equal(c, 0);
    assert_int_equal(v, 0);
    assert_null(name);
    assert_null(bcp_entry(bcp_count()));
}

static void test_ntstatus(void **state)
{
    (void)state;
    assert_string_equal(bcp_ntstatus_name(0xC0000005), "STATUS_ACCESS_VIOLATION");
    assert_string_equal(bcp_ntstatus_name(UINT64_C(0xffffffffc0000005)), "STATUS_ACCESS_VIOLATION");
    assert_string_equal(bcp_ntstatus_name(UINT64_C(0xffffffff80000003)), "STATUS_BREAKPOINT");
    assert_string_equal(bcp_ntstatus_name(0xC0000409), "STATUS_STACK_BUFFER_OVERRUN");
    assert_string_equal(bcp_ntstatus_name(0xC000021A), "STATUS_SYSTEM_PROCESS_TERMINATED");
    assert_string_equal(bcp_ntstatus_name(0xC0000094), "STATUS_INTEGER_DIVIDE_BY_ZERO");
    assert_string_equal(bcp_ntstatus_name(0xC0000602), "STATUS_FAIL_FAST_EXCEPTION");
    assert_null(bcp_ntstatus_name(0));
    assert_null(bcp_ntstatus_name(0xC0000001));
    assert_null(bcp_ntstatus_name(UINT64_C(0x00000001c0000005)));
    assert_null(bcp_ntstatus_name(UINT64_C(0xfffffff0c0000005)));
    /* Ascending, each once. */
    uint32_t prev = 0;
    for (size_t i = 0; i < bcp_ntstatus_count(); i++) {
        uint32_t s;
        const char *n;
        bcp_ntstatus_entry(i, &s, &n);
        assert_true(i == 0 || s > prev);
        assert_ptr_equal(bcp_ntstatus_name(s), n);
        prev = s;
    }
    assert_int_equal(bcp_ntstatus_count(), 32);
}

static void test_kind_names(void **state)
{
    (void)state;
    assert_string_equal(bcp_kind_name(BCP_TRAP), "trap");
    assert_string_equal(bcp_kind_name(BCP_EXREC), "exrec");
    assert_string_equal(bcp_kind_name(BCP_RESERVED), "reserved");
    assert_string_equal(bcp_kind_name((enum bcp_kind)99), "?");
}

/* The generator refuses bad input with a message naming the line. */
static int gen(const char *dir, const char *params, const char *subs, const char *st)
{
    const char *files[3] = { "bugcheck-params.tsv", "bugcheck-subcodes.tsv", "ntstatus.tsv" };
    const char *text[3] = { params, subs, st };
    char path[512];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(text[i], f);
        fclose(f);
    }
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' --dir '%s' --out '%s/out.c' >/dev/null 2>&1",
             getenv("BUGCHECK_PARAMS_GEN"), dir, dir);
    return system(cmd);
}

static void test_generator_refuses(void **state)
{
    (void)state;
    const char *g = getenv("BUGCHECK_PARAMS_GEN");
    if (g == NULL)
        fail_msg("BUGCHECK_PARAMS_GEN is not set (run through meson test)");
    char dir[] = "/tmp/bcp-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    const char *ok_p = "0x00000139\tsubcode\tx\ttrap\tx\texrec\tx\treserved\tx\n";
    const char *ok_s = "0x00000139\t0x3\tCORRUPT_LIST_ENTRY\n";
    const char *ok_n = "0xC0000005\tSTATUS_ACCESS_VIOLATION\n";
    assert_int_equal(gen(dir, ok_p, ok_s, ok_n), 0);
    /* unknown kind */
    assert_int_not_equal(gen(dir, "0x00000139\tbogus\tx\ttrap\tx\texrec\tx\treserved\tx\n", ok_s, ok_n), 0);
    /* two sub-code parameters */
    assert_int_not_equal(gen(dir, "0x00000139\tsubcode\tx\tsubcode\tx\texrec\tx\treserved\tx\n", ok_s, ok_n), 0);
    /* sub-code names for a code without a sub-code parameter */
    assert_int_not_equal(gen(dir, "0x00000139\tvalue\tx\ttrap\tx\texrec\tx\treserved\tx\n", ok_s, ok_n), 0);
    /* out of order / duplicate */
    assert_int_not_equal(gen(dir, ok_p, "0x00000139\t0x3\ta\n0x00000139\t0x3\tb\n", ok_n), 0);
    assert_int_not_equal(gen(dir, ok_p, ok_s, "0xC0000005\tSTATUS_A\n0x80000003\tSTATUS_B\n"), 0);
    /* a quote would break the C string */
    assert_int_not_equal(gen(dir, "0x00000139\tsubcode\tx\"y\ttrap\tx\texrec\tx\treserved\tx\n", ok_s, ok_n), 0);
    /* lower-case hex, wrong field count */
    assert_int_not_equal(gen(dir, ok_p, ok_s, "0xc0000005\tSTATUS_ACCESS_VIOLATION\n"), 0);
    assert_int_not_equal(gen(dir, "0x00000139\tsubcode\tx\n", ok_s, ok_n), 0);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_complete_for_the_note),
        cmocka_unit_test(test_kinds),
        cmocka_unit_test(test_subcode_param),
        cmocka_unit_test(test_subcode_names),
        cmocka_unit_test(test_subcode_table_shape),
        cmocka_unit_test(test_ntstatus),
        cmocka_unit_test(test_kind_names),
        cmocka_unit_test(test_generator_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
