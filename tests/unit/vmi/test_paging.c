/* Unit tests for vmi/paging: hand-built page tables in a sparse fake
 * physical memory (4 KiB frames at arbitrary physical addresses). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "vmi/paging.h"

#define NFRAMES 64
#define P   UINT64_C(0x1)
#define RW  UINT64_C(0x2)
#define US  UINT64_C(0x4)
#define PS  UINT64_C(0x80)
#define XD  (UINT64_C(1) << 63)

struct fakemem {
    int n;
    uint64_t base[NFRAMES];
    uint8_t data[NFRAMES][4096];
    int reads;
};

static uint8_t *frame(struct fakemem *m, uint64_t pa)
{
    for (int i = 0; i < m->n; i++)
        if (m->base[i] == (pa & ~UINT64_C(0xfff)))
            return m->data[i];
    assert_true(m->n < NFRAMES);
    m->base[m->n] = pa & ~UINT64_C(0xfff);
    memset(m->data[m->n], 0, 4096);
    return m->data[m->n++];
}

static int fake_read(void *ctx, uint64_t pa, void *buf, size_t len, struct bm_err *err)
{
    struct fakemem *m = ctx;
    uint8_t *out = buf;
    m->reads++;
    while (len > 0) {
        uint8_t *f = NULL;
        for (int i = 0; i < m->n; i++)
            if (m->base[i] == (pa & ~UINT64_C(0xfff)))
                f = m->data[i];
        if (f == NULL)
            return bm_err_set(err, "fake: no RAM at 0x%" PRIx64, pa);
        size_t off = pa & 0xfff, chunk = 4096 - off;
        if (chunk > len)
            chunk = len;
        memcpy(out, f + off, chunk);
        out += chunk, pa += chunk, len -= chunk;
    }
    return 0;
}

static void set_entry(struct fakemem *m, uint64_t table, unsigned idx, uint64_t val)
{
    memcpy(frame(m, table) + idx * 8, &val, 8);
}

static unsigned ix(uint64_t va, int level)
{
    return (va >> (12 + 9 * (level - 1))) & 0x1ff;
}

static struct fakemem mem;   /* big: keep off the stack */

/* 4-level tables: CR3 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> PT 0x4000. */
static struct paging setup4(void)
{
    memset(&mem, 0, sizeof mem);
    struct paging pg;
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(paging_init(&pg, PAGING_IA32E_4, 0x1000 | 0x18, 0, fake_read,
                                 &mem, &e), 0);
    frame(&mem, 0x1000), frame(&mem, 0x2000), frame(&mem, 0x3000), frame(&mem, 0x4000);
    return pg;
}

static const uint64_t KVA = UINT64_C(0xfffff80012345000);

/* A walker remembers translations: after changing the tables a test
 * builds a fresh one, as the monitor does after every stop. */
static void forget(struct paging *pg)
{
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(paging_init(pg, pg->mode, pg->cr3, pg->maxphyaddr, pg->read_phys,
                                 pg->ctx, &e), 0);
}

static void map_4k(uint64_t va, uint64_t pa, uint64_t flags)
{
    set_entry(&mem, 0x1000, ix(va, 4), 0x2000 | P | RW);
    set_entry(&mem, 0x2000, ix(va, 3), 0x3000 | P | RW);
    set_entry(&mem, 0x3000, ix(va, 2), 0x4000 | P | RW);
    set_entry(&mem, 0x4000, ix(va, 1), pa | flags);
}

static void test_mode_from_regs(void **state)
{
    (void)state;
    assert_int_equal(paging_mode_from_regs(0x11, 0, 0), PAGING_NONE);
    assert_int_equal(paging_mode_from_regs(0x80000011, 0x20, 0x500), PAGING_IA32E_4);
    assert_int_equal(paging_mode_from_regs(0x80000011, 0x1020, 0x500), PAGING_IA32E_5);
    assert_int_equal(paging_mode_from_regs(0x80000011, 0x20, 0), PAGING_PAE);
    assert_int_equal(paging_mode_from_regs(0x80000011, 0, 0), PAGING_32BIT);
    struct paging pg;
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(paging_init(&pg, PAGING_PAE, 0, 0, fake_read, NULL, &e), -1);
    assert_non_null(strstr(bm_err_msg(&e), "PAE"));
    bm_err_clear(&e);
    assert_int_equal(paging_init(&pg, PAGING_IA32E_4, 0, 60, fake_read, NULL, &e), -1);
    bm_err_clear(&e);
    assert_int_equal(paging_init(&pg, PAGING_IA32E_4, 0, 0, NULL, NULL, &e), -1);
}

static void test_4k_page(void **state)
{
    (void)state;
    struct paging pg = setup4();
    map_4k(KVA, 0x7000, P | RW | XD);
    struct paging_xlat x;
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(paging_translate(&pg, KVA + 0x123, &x, &e), 0);
    assert_int_equal(x.pa, 0x7123);
    assert_int_equal(x.page_size, 4096);
    assert_true(x.writable);
    assert_false(x.user);
    assert_true(x.nx);
}

static void test_software_bits_ignored(void **state)
{
    (void)state;
    struct paging pg = setup4();
    /* Bits 52..62 are available to software (Windows uses them). */
    map_4k(KVA, 0x7000 | (UINT64_C(0x7ff) << 52), P);
    struct paging_xlat x;
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(paging_translate(&pg, KVA, &x, &e), 0);
    assert_int_equal(x.pa, 0x7000);
    assert_false(x.nx);
    assert_false(x.writable);
}

static void test_2m_page(void **state)
{
    (void)state;
    struct paging pg = setup4();
    uint64_t va = UINT64_C(0xfffff80000400000);
    set_entry(&mem, 0x1000, ix(va, 4), 0x2000 | P | RW);
    set_entry(&mem, 0x2000, ix(va, 3), 0x3000 | P | RW);
    set_entry(&mem, 0x3000, ix(va, 2), 0x40000000 | P | RW | PS | 0x1000 /* PAT */);
    struct paging_xlat x;
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(paging_translate(&pg, va + 0x1abcde, &x, &e), 0);
    assert_int_equal(x.pa, 0x401abcde);
    assert_int_equal(x.page_size, 0x200000);
    /* Reserved bits 13..20 of a 2 MiB PDE. */
    set_entry(&mem, 0x3000, ix(va, 2), 0x40000000 | P | PS | 0x2000);
    forget(&pg);
    assert_int_equal(paging_translate(&pg, va, &x, &e), -1);
    assert_non_null(strstr(bm_err_msg(&e), "reserved"));
}

static void test_1g_page(void **state)
{
    (void)state;
    struct paging pg = setup4();
    uint64_t va = UINT64_C(0xffff880040000000);
    set_entry(&mem, 0x1000, ix(va, 4), 0x2000 | P | RW | US);
    set_entry(&mem, 0x2000, ix(va, 3), UINT64_C(0x1c0000000) | P | RW | US | PS);
    struct paging_xlat x;
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(paging_translate(&pg, va + 0x3fffffff, &x, &e), 0);
    assert_int_equal(x.pa, UINT64_C(0x1ffffffff));
    assert_int_equal(x.page_size, UINT64_C(0x40000000));
    assert_true(x.user);
    /* Bits 13..29 reserved in a 1 GiB PDPTE. */
    set_entry(&mem, 0x2000, ix(va, 3), UINT64_C(0x1c0000000) | P | PS | 0x200000);
    forget(&pg);
    assert_int_equal(paging_translate(&pg, va, &x, &e), -1);
    assert_non_null(strstr(bm_err_msg(&e), "PDPTE"));
}

static void test_ps_in_pml4e_reserved(void **state)
{
    (void)state;
    struct paging pg = setup4();
    set_entry(&mem, 0x1000, ix(KVA, 4), 0x2000 | P | PS);
    struct paging_xlat x;
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(paging_translate(&pg, KVA, &x, &e), -1);
    assert_non_null(strstr(bm_err_msg(&e), "PML4E"));
}

static void test_maxphyaddr(void **state)
{
    (void)state;
    struct paging pg = setup4();
    pg.maxphyaddr = 39;
    map_4k(KVA, UINT64_C(0x8000000000), P);   /* bit 39 set: reserved */
    struct paging_xlat x;
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(paging_translate(&pg, KVA, &x, &e), -1);
    assert_non_null(strstr(bm_err_msg(&e), "reserved address bits"));
    pg.maxphyaddr = 52;
    bm_err_clear(&e);
    assert_int_equal(paging_translate(&pg, KVA, &x, &e), 0);
    assert_int_equal(x.pa, UINT64_C(0x8000000000));
}

static void test_non_canonical(void **state)
{
    (void)state;
    struct paging pg = setup4();
    struct paging_xlat x;
    struct bm_err e = BM_ERR_INIT;
    int reads = mem.reads;
    assert_int_equal(paging_translate(&pg, UINT64_C(0x0000800000000000), &x, &e), -1);
    assert_non_null(strstr(bm_err_msg(&e), "not canonical"));
    assert_int_equal(mem.reads, reads);         /* never touched memory */
    assert_true(paging_is_canonical(&pg, UINT64_C(0xffff800000000000)));
    assert_true(paging_is_canonical(&pg, UINT64_C(0x00007fffffffffff)));
    assert_false(paging_is_canonical(&pg, UINT64_C(0xfff0800000000000)));
    pg.mode = PAGING_IA32E_5;
    assert_true(paging_is_canonical(&pg, UINT64_C(0x00ff800000000000)));
    assert_false(paging_is_canonical(&pg, UINT64_C(0x0100000000000000)));
    assert_true(paging_is_canonical(&pg, UINT64_C(0xff00000000000000)));
}

static void test_not_present(void **state)
{
    (void)state;
    struct paging pg = setup4();
    map_4k(KVA, 0x7000, P);
    set_entry(&mem, 0x3000, ix(KVA, 2), 0x4000);    /* PDE not present */
    struct paging_xlat x;
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(paging_translate(&pg, KVA, &x, &e), -1);
    assert_non_null(strstr(bm_err_msg(&e), "0xfffff80012345000"));
    assert_non_null(strstr(bm_err_msg(&e), "PDE"));
    assert_non_null(strstr(bm_err_msg(&e), "not present"));
}

static void test_table_outside_ram(void **state)
{
    (void)state;
    struct paging pg = setup4();
    map_4k(KVA, 0x7000, P);
    set_entry(&mem, 0x2000, ix(KVA, 3), UINT64_C(0xdead000) | P);
    struct paging_xlat x;
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(paging_translate(&pg, KVA, &x, &e), -1);
    assert_non_null(strstr(bm_err_msg(&e), "reading PDE at physical 0xdead"));
}

/* A PML4 entry that points at the PML4 itself (Windows' self-map): the walk
 * must stay bounded and yield the table's own frame. */
static void test_self_map(void **state)
{
    (void)state;
    struct paging pg = setup4();
    set_entry(&mem, 0x1000, 0x1ed, 0x1000 | P | RW);
    uint64_t va = UINT64_C(0xffff000000000000) | (UINT64_C(0x1ed) << 39) |
                  (UINT64_C(0x1ed) << 30) | (UINT64_C(0x1ed) << 21) |
                  (UINT64_C(0x1ed) << 12) | 0x10;
    struct paging_xlat x;
    struct bm_err e = BM_ERR_INIT;
    int reads = mem.reads;
    assert_int_equal(paging_translate(&pg, va, &x, &e), 0);
    assert_int_equal(x.pa, 0x1010);
    assert_int_equal(mem.reads - reads, 4);
    /* A loop through a missing index still ends: the 4th level reads index 0
     * of the PML4, which is empty. */
    va = (va & ~UINT64_C(0x1ff000));
    assert_int_equal(paging_translate(&pg, va, &x, &e), -1);
    assert_non_null(strstr(bm_err_msg(&e), "PTE"));
}

static void test_5level(void **state)
{
    (void)state;
    memset(&mem, 0, sizeof mem);
    struct paging pg;
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(paging_init(&pg, PAGING_IA32E_5, 0x10000, 0, fake_read, &mem, &e), 0);
    uint64_t va = UINT64_C(0xff12345678901000);   /* canonical in 57 bits */
    set_entry(&mem, 0x10000, ix(va, 5), 0x11000 | P | RW);
    set_entry(&mem, 0x11000, ix(va, 4), 0x12000 | P | RW);
    set_entry(&mem, 0x12000, ix(va, 3), 0x13000 | P | RW);
    set_entry(&mem, 0x13000, ix(va, 2), 0x14000 | P | RW);
    set_entry(&mem, 0x14000, ix(va, 1), 0x99000 | P | RW);
    struct paging_xlat x;
    assert_int_equal(paging_translate(&pg, va + 7, &x, &e), 0);
    assert_int_equal(x.pa, 0x99007);
    /* The same VA is non-canonical under 4-level paging. */
    pg.mode = PAGING_IA32E_4;
    assert_int_equal(paging_translate(&pg, va, &x, &e), -1);
    assert_non_null(strstr(bm_err_msg(&e), "not canonical"));
    /* PS in a PML5E is reserved. */
    pg.mode = PAGING_IA32E_5;
    bm_err_clear(&e);
    set_entry(&mem, 0x10000, ix(va, 5), 0x11000 | P | PS);
    forget(&pg);
    assert_int_equal(paging_translate(&pg, va, &x, &e), -1);
    assert_non_null(strstr(bm_err_msg(&e), "PML5E"));
}

static void test_read_across_pages(void **state)
{
    (void)state;
    struct paging pg = setup4();
    /* Two virtually adjacent pages backed by non-adjacent frames. */
    map_4k(KVA, 0x9000, P);
    set_entry(&mem, 0x4000, ix(KVA + 0x1000, 1), 0x5000 | P);
    memcpy(frame(&mem, 0x9000) + 0xffc, "ABCD", 4);
    memcpy(frame(&mem, 0x5000), "EFGH", 4);
    char buf[9] = { 0 };
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(paging_read_virt(&pg, KVA + 0xffc, buf, 8, &e), 0);
    assert_string_equal(buf, "ABCDEFGH");
    /* Through the callback adapter too. */
    memset(buf, 0, sizeof buf);
    assert_int_equal(paging_read_virt_cb(&pg, KVA + 0xffe, buf, 4, &e), 0);
    assert_string_equal(buf, "CDEF");
    /* The third page is unmapped: the error names its first address. */
    char big[0x20];
    assert_int_equal(paging_read_virt(&pg, KVA + 0x1ff0, big, sizeof big, &e), -1);
    assert_non_null(strstr(bm_err_msg(&e), "0xfffff80012347000"));
}

static void test_read_in_large_page(void **state)
{
    (void)state;
    struct paging pg = setup4();
    uint64_t va = UINT64_C(0xfffff80000400000);
    set_entry(&mem, 0x1000, ix(va, 4), 0x2000 | P);
    set_entry(&mem, 0x2000, ix(va, 3), 0x3000 | P);
    set_entry(&mem, 0x3000, ix(va, 2), 0x600000 | P | PS);
    memcpy(frame(&mem, 0x600000 + 0x1000) + 0xffe, "xy", 2);
    memcpy(frame(&mem, 0x600000 + 0x2000), "zw", 2);
    char buf[5] = { 0 };
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(paging_read_virt(&pg, va + 0x1ffe, buf, 4, &e), 0);
    assert_string_equal(buf, "xyzw");
    /* Physical hole inside the large page: the message names that VA. */
    assert_int_equal(paging_read_virt(&pg, va + 0x2ffe, buf, 4, &e), -1);
    assert_non_null(strstr(bm_err_msg(&e), "0xfffff80000403000"));
}

static void test_read_wraps(void **state)
{
    (void)state;
    memset(&mem, 0, sizeof mem);
    struct paging pg;
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(paging_init(&pg, PAGING_NONE, 0, 0, fake_read, &mem, &e), 0);
    frame(&mem, UINT64_C(0xfffffffffffff000));
    frame(&mem, 0);
    char buf[32];
    assert_int_equal(paging_read_virt(&pg, UINT64_C(0xfffffffffffffff0), buf, 32, &e), -1);
    assert_non_null(strstr(bm_err_msg(&e), "runs past"));
    bm_err_clear(&e);
    assert_int_equal(paging_read_virt(&pg, 0x10, buf, 32, &e), 0);
}

/* The walker's TLB: a second access to a page (4 KiB or large) reads no
 * page table; a failed walk is not remembered; the oldest of
 * PAGING_TLB_SIZE pages is walked again; a fresh walker forgets all. */
static void test_tlb(void **state)
{
    (void)state;
    struct paging pg = setup4();
    struct paging_xlat x;
    struct bm_err e = BM_ERR_INIT;
    for (unsigned i = 0; i <= PAGING_TLB_SIZE; i++)
        map_4k(KVA + i * 0x1000, 0x10000 + i * 0x2000, P | RW | XD);
    assert_int_equal(paging_translate(&pg, KVA + 8, &x, &e), 0);
    assert_int_equal(mem.reads, 4);
    assert_int_equal(paging_translate(&pg, KVA + 0xff8, &x, &e), 0);
    assert_int_equal(mem.reads, 4);
    assert_int_equal(x.pa, 0x10ff8);
    assert_int_equal(x.page_size, 4096);
    assert_true(x.writable && x.nx && !x.user);

    /* Fill the other slots, then one more page evicts the first. */
    /* (Each new page of the same page table: one read, its PTE.) */
    for (unsigned i = 1; i < PAGING_TLB_SIZE; i++)
        assert_int_equal(paging_translate(&pg, KVA + i * 0x1000, &x, &e), 0);
    assert_int_equal(mem.reads, 4 + (PAGING_TLB_SIZE - 1));
    for (unsigned i = 0; i < PAGING_TLB_SIZE; i++)
        assert_int_equal(paging_translate(&pg, KVA + i * 0x1000 + 1, &x, &e), 0);
    assert_int_equal(mem.reads, 4 + (PAGING_TLB_SIZE - 1));
    assert_int_equal(paging_translate(&pg, KVA + PAGING_TLB_SIZE * 0x1000, &x, &e), 0);
    assert_int_equal(mem.reads, 4 + PAGING_TLB_SIZE);
    assert_int_equal(paging_translate(&pg, KVA, &x, &e), 0);
    assert_int_equal(mem.reads, 4 + PAGING_TLB_SIZE + 1);
    assert_int_equal(x.pa, 0x10000);

    /* A 2 MiB page: any address in it hits. */
    uint64_t va = UINT64_C(0xfffff80000400000);
    set_entry(&mem, 0x1000, ix(va, 4), 0x2000 | P | RW);
    set_entry(&mem, 0x2000, ix(va, 3), 0x3000 | P | RW);
    set_entry(&mem, 0x3000, ix(va, 2), 0x600000 | P | PS);
    int before = mem.reads;
    assert_int_equal(paging_translate(&pg, va + 0x1234, &x, &e), 0);
    assert_int_equal(mem.reads, before + 1);    /* its page directory was cached */
    assert_int_equal(paging_translate(&pg, va + 0x1ffff1, &x, &e), 0);
    assert_int_equal(mem.reads, before + 1);
    assert_int_equal(x.pa, 0x7ffff1);
    assert_int_equal(x.page_size, 0x200000);

    /* Not present, then mapped: the failure was not remembered. */
    uint64_t hole = KVA + 0x120000;   /* another PDE and PTE slot */
    assert_int_equal(paging_translate(&pg, hole, &x, &e), -1);
    bm_err_clear(&e);
    map_4k(hole, 0x8000, P);
    assert_int_equal(paging_translate(&pg, hole + 4, &x, &e), 0);
    assert_int_equal(x.pa, 0x8004);

    /* Remapped tables are seen only by a fresh walker. */
    map_4k(hole, 0x9000, P);
    assert_int_equal(paging_translate(&pg, hole, &x, &e), 0);
    assert_int_equal(x.pa, 0x8000);
    forget(&pg);
    assert_int_equal(paging_translate(&pg, hole, &x, &e), 0);
    assert_int_equal(x.pa, 0x9000);

    /* A non-canonical address never hits, whatever the TLB holds. */
    assert_int_equal(paging_translate(&pg, hole & ~(UINT64_C(1) << 63), &x, &e), -1);
    assert_non_null(strstr(bm_err_msg(&e), "not canonical"));
}

/* The paging-structure cache: the tables a walk went through, with the
 * rights of the entries above them; never a table of another region. */
static void test_psc(void **state)
{
    (void)state;
    struct paging pg = setup4();
    struct paging_xlat x;
    struct bm_err e = BM_ERR_INIT;
    /* Two pages 2 MiB apart (two page tables under one directory), the
     * directory entry of the second without RW and with XD. */
    uint64_t a = KVA, b = KVA + 0x200000;
    map_4k(a, 0x10000, P | RW);
    set_entry(&mem, 0x3000, ix(b, 2), 0x5000 | P | XD);
    set_entry(&mem, 0x5000, ix(b, 1), 0x20000 | P | RW);
    assert_int_equal(paging_translate(&pg, a, &x, &e), 0);
    assert_int_equal(mem.reads, 4);
    assert_int_equal(paging_translate(&pg, b + 8, &x, &e), 0);
    assert_int_equal(mem.reads, 6);             /* PDE and PTE: PML4E and PDPTE cached */
    assert_int_equal(x.pa, 0x20008);
    assert_true(!x.writable && x.nx);
    assert_int_equal(paging_translate(&pg, b + 0x1000, &x, &e), -1);   /* not present */
    bm_err_clear(&e);
    assert_int_equal(mem.reads, 7);             /* its PTE alone */
    map_4k(b + 0x1000, 0x21000, P | RW);        /* rewrites b's PDE: RW, no XD, table 0x4000 */
    set_entry(&mem, 0x5000, ix(b + 0x1000, 1), 0x22000 | P | RW);
    assert_int_equal(paging_translate(&pg, b + 0x1000, &x, &e), 0);
    assert_int_equal(x.pa, 0x22000);            /* the cached table, as a CPU would */
    assert_true(!x.writable && x.nx);
    forget(&pg);
    assert_int_equal(paging_translate(&pg, b + 0x1000, &x, &e), 0);
    assert_int_equal(x.pa, 0x21000);            /* a fresh walker sees the new tables */
    assert_true(x.writable && !x.nx);
    /* Another PML4 slot shares nothing with the cache. */
    uint64_t c = UINT64_C(0xffff800000000000);
    assert_int_equal(paging_translate(&pg, c, &x, &e), -1);
    assert_non_null(strstr(bm_err_msg(&e), "PML4E"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mode_from_regs),
        cmocka_unit_test(test_4k_page),
        cmocka_unit_test(test_software_bits_ignored),
        cmocka_unit_test(test_2m_page),
        cmocka_unit_test(test_1g_page),
        cmocka_unit_test(test_ps_in_pml4e_reserved),
        cmocka_unit_test(test_maxphyaddr),
        cmocka_unit_test(test_non_canonical),
        cmocka_unit_test(test_not_present),
        cmocka_unit_test(test_table_outside_ram),
        cmocka_unit_test(test_self_map),
        cmocka_unit_test(test_5level),
        cmocka_unit_test(test_read_across_pages),
        cmocka_unit_test(test_read_in_large_page),
        cmocka_unit_test(test_read_wraps),
        cmocka_unit_test(test_tlb),
        cmocka_unit_test(test_psc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
