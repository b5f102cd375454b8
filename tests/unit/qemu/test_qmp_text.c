/* test_qmp_text.c - the parsers of HMP text: 'info mtree -f' (guest RAM
 * layout), gpa2hva, and the IDT line of 'info registers'. Shapes follow
 * QEMU 7.2's output (measured; the recorded sessions cover the real text,
 * these cover the variants: KVM suffixes, rom/romd/ramd/nv-ram, high RAM,
 * long mode, and every kind of miss). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "vmi/qemu/qmp.h"

#define FAILS(call, part)                                           \
    do {                                                            \
        struct bm_err e_ = BM_ERR_INIT;                             \
        if ((call) != -1)                                           \
            fail_msg("%s did not fail", #call);                     \
        if (strstr(bm_err_msg(&e_), part) == NULL)                  \
            fail_msg("%s: '%s' lacks '%s'", #call,                  \
                     bm_err_msg(&e_), part);                        \
    } while (0)
#define E (&e_)

/* A 4 GiB q35-like guest under KVM; the "memory" view is not #0. */
static const char mtree[] =
    "FlatView #0\r\n"
    " AS \"I/O\", root: io\r\n"
    " Root memory region: io\r\n"
    "  0000000000000000-0000000000000007 (prio 0, i/o): dma-chan\r\n"
    "\r\n"
    "FlatView #1\r\n"
    " AS \"memory-2\", root: system\r\n"
    "  0000000000000000-0000000000000fff (prio 0, ram): decoy\r\n"
    "\r\n"
    "FlatView #2\r\n"
    " AS \"cpu-memory-0\", root: system\r\n"
    " AS \"memory\", root: system\r\n"
    " Root memory region: system\r\n"
    "  0000000000000000-000000000009ffff (prio 0, ram): pc.ram KVM\r\n"
    "  00000000000a0000-00000000000bffff (prio 1, i/o): vga-lowmem\r\n"
    "  00000000000c0000-00000000000dffff (prio 1, rom): pc.ram "
    "@00000000000c0000 KVM\r\n"
    "  00000000000e0000-00000000000fffff (prio 1, romd): pc.bios "
    "@0000000000020000 KVM\r\n"
    "  0000000000100000-000000007fffffff (prio 0, ram): pc.ram "
    "@0000000000100000 KVM\r\n"
    "  00000000fd000000-00000000fdffffff (prio 1, ramd): vfio-bar\r\n"
    "  00000000fe000000-00000000fe000fff (prio -1, nv-ram): nvdimm\r\n"
    "  0000000100000000-000000017fffffff (prio 0, ram): pc.ram "
    "@0000000080000000 KVM\r\n"
    "\r\n"
    "FlatView #3\r\n"
    " AS \"bus master\", root: bus master container\r\n"
    "  0000000000000000-ffffffffffffffff (prio 0, ram): after-the-view\r\n";

static void test_mtree(void **state)
{
    (void)state;
    struct qmp_ram_range r[8];
    size_t n = 0;
    struct bm_err err = BM_ERR_INIT;
    if (qmp_parse_mtree(mtree, r, 8, &n, &err) < 0)
        fail_msg("%s", bm_err_msg(&err));
    /* RAM mapped read-only ("rom": the BIOS shadow) counts; a ROM device
     * ("romd"), "ramd" and non-volatile RAM do not. Firmware ROM that shows
     * as "rom" is left out later, for not being a memory backend. */
    assert_int_equal(n, 4);
    assert_int_equal(r[0].gpa_start, 0);
    assert_int_equal(r[0].gpa_end, 0xa0000);
    assert_int_equal(r[0].offset, 0);        /* "@" omitted when zero */
    assert_string_equal(r[0].block, "pc.ram");
    assert_int_equal(r[1].gpa_start, 0xc0000);
    assert_int_equal(r[1].gpa_end, 0xe0000);
    assert_int_equal(r[1].offset, 0xc0000);
    assert_string_equal(r[1].block, "pc.ram");
    assert_int_equal(r[2].gpa_start, 0x100000);
    assert_int_equal(r[2].gpa_end, 0x80000000);
    assert_int_equal(r[2].offset, 0x100000);
    assert_int_equal(r[3].gpa_start, 0x100000000);
    assert_int_equal(r[3].gpa_end, 0x180000000);
    assert_int_equal(r[3].offset, 0x80000000);

    FAILS(qmp_parse_mtree(mtree, r, 3, &n, E), "more than 3 RAM ranges");
}

static void test_mtree_lf_and_single_view(void **state)
{
    (void)state;
    static const char text[] =
        "FlatView #0\n AS \"memory\", root: system\n"
        "  0000000000000000-0000000007ffffff (prio 0, ram): m0\n";
    struct qmp_ram_range r[2];
    size_t n = 0;
    struct bm_err err = BM_ERR_INIT;
    assert_int_equal(qmp_parse_mtree(text, r, 2, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].gpa_end, 0x8000000);
    assert_string_equal(r[0].block, "m0");
}

/* Recorded from a 2-vCPU pc guest: the system view lists several address
 * spaces, and "AS ..." starts with a letter that is also a hex digit. */
static void test_mtree_several_address_spaces(void **state)
{
    (void)state;
    static const char text[] =
        "FlatView #1\r\n"
        " AS \"memory\", root: system\r\n"
        " AS \"cpu-memory-0\", root: system\r\n"
        " AS \"cpu-memory-1\", root: system\r\n"
        " Root memory region: system\r\n"
        "  0000000000000000-000000000009ffff (prio 0, ram): pc.ram\r\n"
        "  00000000000a0000-00000000000bffff (prio 1, i/o): vga-lowmem\r\n"
        "  0000000000100000-000000000fffffff (prio 0, ram): pc.ram @0000000000100000\r\n"
        "  00000000fd000000-00000000fdffffff (prio 1, ram): vga.vram\r\n"
        "\r\n"
        "FlatView #2\r\n AS \"cpu-smm-1\", root: memory\r\n";
    struct qmp_ram_range r[8];
    size_t n = 0;
    struct bm_err err = BM_ERR_INIT;
    assert_int_equal(qmp_parse_mtree(text, r, 8, &n, &err), 0);
    /* vga.vram is "ram" in QEMU's terms; ram.c keeps only memory backends. */
    assert_int_equal(n, 3);
    assert_int_equal(r[1].gpa_start, 0x100000);
    assert_int_equal(r[1].offset, 0x100000);
    assert_string_equal(r[2].block, "vga.vram");
}

static void test_mtree_misses(void **state)
{
    (void)state;
    struct qmp_ram_range r[4];
    size_t n;
    /* What QEMU shows for the SMM view alone: no "memory" address space. */
    FAILS(qmp_parse_mtree("FlatView #0\r\n AS \"cpu-smm-0\", root: memory\r\n"
                          "  0000000000000000-0000000007ffffff (prio 0, ram):"
                          " pc.ram\r\n", r, 4, &n, E),
          "no FlatView of address space \"memory\"");
    FAILS(qmp_parse_mtree("", r, 4, &n, E), "no FlatView");
    FAILS(qmp_parse_mtree("unknown command: 'info'\r\n", r, 4, &n, E),
          "starts 'unknown command");
    FAILS(qmp_parse_mtree("FlatView #0\r\n AS \"memory\", root: system\r\n"
                          "  No rendered FlatView\r\n", r, 4, &n, E),
          "no RAM");

    static const char *const bad[] = {
        "  0000000000000000-00000000000fffff (prio 0, ram) pc.ram",
        "  0000000000000000-00000000000fffff (prio 0, ram): ",
        "  0000000000000000-00000000000fffff (prio x, ram): pc.ram",
        "  0000000000000000-00000000000fffff (prio 0 ram): pc.ram",
        "  0000000000000000 (prio 0, ram): pc.ram",
        "  00000000000fffff-0000000000000000 (prio 0, ram): backwards",
        "  0000000000000000-ffffffffffffffff (prio 0, ram): whole",
        "  00000000000000000-00000000000fffff (prio 0, ram): seventeen",
        "  0000000000000000-00000000000fffff (prio 0, ram): pc.ram @zz",
        ("  0000000000000000-00000000000fffff (prio 0, a-very-long-type-name):"
         " x"),
        ("  0000000000000000-00000000000fffff (prio 0, ram): "
         "a-region-name-of-more-than-sixty-three-characters-is-refused-here-x"),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[512];
        snprintf(text, sizeof text,
                 "FlatView #0\r\n AS \"memory\", root: system\r\n%s\r\n",
                 bad[i]);
        FAILS(qmp_parse_mtree(text, r, 4, &n, E), "malformed line");
    }
}

static void test_gpa2hva(void **state)
{
    (void)state;
    uint64_t hva = 0;
    char block[QMP_NAME_MAX];
    struct bm_err err = BM_ERR_INIT;
    assert_int_equal(qmp_parse_gpa2hva("Host virtual address for 0x1000 "
                                       "(pc.ram) is 0x7f6557e01000\r\n",
                                       0x1000, &hva, block, &err), 0);
    assert_int_equal(hva, 0x7f6557e01000);
    assert_string_equal(block, "pc.ram");
    assert_int_equal(qmp_parse_gpa2hva("Host virtual address for "
                                       "0x100000000 (m0) is 0x7f0000000000",
                                       0x100000000, &hva, NULL, &err), 0);
    assert_int_equal(hva, 0x7f0000000000);

    FAILS(qmp_parse_gpa2hva("No memory is mapped at address 0x80000000\r\n",
                            0x80000000, &hva, NULL, E),
          "gpa2hva 0x80000000: No memory is mapped at address 0x80000000");
    FAILS(qmp_parse_gpa2hva("Memory at address 0x1000is not RAM\r\n", 0x1000,
                            &hva, NULL, E), "is not RAM");
    FAILS(qmp_parse_gpa2hva("Host virtual address for 0x2000 (pc.ram) is "
                            "0x7f0000002000\r\n", 0x1000, &hva, NULL, E),
          "answered for 0x2000");
    static const char *const bad[] = {
        "Host virtual address for 0x1000 (pc.ram) is 0x7f0000001000 x\r\n",
        "Host virtual address for 0x1000 (pc.ram) is 0x\r\n",
        "Host virtual address for 0x1000 (pc.ram) is 0x17f00000010000000\r\n",
        "Host virtual address for 0x1000 () is 0x7f0000001000\r\n",
        "Host virtual address for 0x1000 (pc.ram is 0x7f0000001000\r\n",
        "Host virtual address for 0x1000 (pc.ram) is 0x7f0000001000\r\nmore",
        ("Host virtual address for 0x1000 (a-region-name-of-more-than-sixty-"
         "three-characters-is-refused-here-x) is 0x7f0000001000\r\n"),
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        FAILS(qmp_parse_gpa2hva(bad[i], 0x1000, &hva, NULL, E),
              "gpa2hva 0x1000");
}

static void test_idt(void **state)
{
    (void)state;
    uint64_t base = 0;
    uint32_t limit = 0;
    struct bm_err err = BM_ERR_INIT;
    static const char longmode[] =
        "RAX=0000000000000000 RBX=0000000000000528\r\n"
        "GS =0010 ffff888000220000 ffffffff 00af9300 DPL=0 DS   [-WA]\r\n"
        "GDT=     fffff80000001000 0000007f\r\n"
        "IDT=     fffffe0000000000 00000fff\r\n"
        "CR0=80050033 CR2=0000000000000000 CR3=0000000000010000\r\n";
    assert_int_equal(qmp_parse_idt(longmode, &base, &limit, &err), 0);
    assert_int_equal(base, 0xfffffe0000000000);
    assert_int_equal(limit, 0xfff);
    assert_int_equal(qmp_parse_idt("\r\nCPU#1\r\nIDT=     000f61be 00000000\r\n",
                                   &base, &limit, &err), 0);
    assert_int_equal(base, 0xf61be);
    assert_int_equal(limit, 0);

    FAILS(qmp_parse_idt("CPU#7 not available\r\n", &base, &limit, E),
          "no valid IDT= line in 'info registers' output: 'CPU#7 not available'");
    static const char *const bad[] = {
        "IDT=     zz 00000fff\r\n",
        "IDT=     fffffe0000000000\r\n",
        "IDT=     fffffe0000000000 \r\n",
        "IDT=     1fffffe0000000000 00000fff\r\n",
        "IDT=     fffffe0000000000 100000fff\r\n",
        "IDT=     fffffe0000000000 00000fff x\r\n",
        " IDT=     fffffe0000000000 00000fff\r\n",
        "GDT=     fffff80000001000 0000007f\r\n",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        FAILS(qmp_parse_idt(bad[i], &base, &limit, E), "no valid IDT= line");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mtree),
        cmocka_unit_test(test_mtree_lf_and_single_view),
        cmocka_unit_test(test_mtree_several_address_spaces),
        cmocka_unit_test(test_mtree_misses),
        cmocka_unit_test(test_gpa2hva),
        cmocka_unit_test(test_idt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
