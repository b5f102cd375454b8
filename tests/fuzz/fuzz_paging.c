/* fuzz_paging.c - the x86 page walker (paging_translate, paging_read_virt)
 * over fuzzer-controlled physical memory: every page-table entry is hostile.
 *
 * Input: mode (1: 4-level, 5-level or none), MAXPHYADDR (1: 32..52),
 * CR3 (8), four virtual addresses (4 x 8), read length (2), then physical
 * memory from address 0 (reads beyond it fail).
 *
 * Oracles: a translation keeps the offset inside its page, reports a
 * supported page size, never a physical address at or above MAXPHYADDR,
 * and agrees with what paging_read_virt returns byte for byte; the
 * walker's TLB never changes a result (a fresh walker agrees) and a
 * repeated translation reads no memory.
 */
#include "fuzz.h"
#include "vmi/paging.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HDR (1 + 1 + 8 + 4 * 8 + 2)

static void check_va(struct paging *pg, struct fuzz_mem *phys,
                     uint64_t va, size_t len)
{
    struct paging_xlat x;
    struct bm_err err = BM_ERR_INIT;
    uint64_t reads = phys->reads;
    int rc = paging_translate(pg, va, &x, &err);
    fuzz_note("translate", rc, &err);
    if (rc < 0) {
        FUZZ_CHECK(fuzz_err_ok(&err));
        FUZZ_CHECK(phys->reads - reads <= 5);
        return;
    }
    FUZZ_CHECK(phys->reads - reads <= 5);       /* one entry per level */
    FUZZ_CHECK(x.page_size == 0x1000 || x.page_size == 0x200000 ||
               x.page_size == 0x40000000);
    FUZZ_CHECK((x.pa & (x.page_size - 1)) == (va & (x.page_size - 1)));
    if (pg->mode == PAGING_NONE)
        FUZZ_CHECK(x.pa == va);
    else
        FUZZ_CHECK(pg->maxphyaddr == 64 || x.pa >> pg->maxphyaddr == 0);

    /* The bytes read through the walker are the bytes at the translation. */
    uint8_t buf[0x3000];
    if (len > sizeof buf)
        len = sizeof buf;
    struct bm_err e2 = BM_ERR_INIT;
    rc = paging_read_virt(pg, va, buf, len, &e2);
    fuzz_note("read_virt", rc, &e2);
    if (rc == 0) {
        if (len > 0) {
            uint8_t b;
            struct bm_err e3 = BM_ERR_INIT;
            FUZZ_CHECK(fuzz_mem_read(phys, x.pa, &b, 1, &e3) == 0);
            FUZZ_CHECK(b == buf[0]);
        }
    } else {
        FUZZ_CHECK(fuzz_err_ok(&e2));
    }
}

static bool same_xlat(const struct paging_xlat *a, const struct paging_xlat *b)
{
    return a->pa == b->pa && a->page_size == b->page_size &&
           a->writable == b->writable && a->user == b->user && a->nx == b->nx;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < HDR)
        return 0;
    static const enum paging_mode modes[] = {
        PAGING_IA32E_4, PAGING_IA32E_5, PAGING_NONE,
    };
    enum paging_mode mode = modes[data[0] % 3];
    unsigned maxphyaddr = 32 + data[1] % 21;
    uint64_t cr3 = fuzz_le64(data + 2);
    struct fuzz_mem phys = { .data = data + HDR, .size = size - HDR };

    struct paging pg;
    struct bm_err err = BM_ERR_INIT;
    FUZZ_CHECK(paging_init(&pg, mode, cr3, maxphyaddr, fuzz_mem_read, &phys,
                           &err) == 0);
    size_t len = fuzz_le16(data + 42) % 0x3001;
    for (int i = 0; i < 4; i++) {
        uint64_t va = fuzz_le64(data + 10 + 8 * i);
        FUZZ_CHECK(paging_is_canonical(&pg, va) ||
                   mode != PAGING_NONE);
        check_va(&pg, &phys, va, len);
    }
    /* The walker's TLB changes nothing but the number of reads: every
     * address translates as a fresh walker translates it, and a second
     * translation of an address that translated reads no memory. */
    for (int i = 0; i < 4; i++) {
        uint64_t va = fuzz_le64(data + 10 + 8 * i);
        struct paging fresh;
        FUZZ_CHECK(paging_init(&fresh, mode, cr3, maxphyaddr, fuzz_mem_read, &phys,
                               &err) == 0);
        struct paging_xlat a, a2, b;
        struct bm_err ea = BM_ERR_INIT, eb = BM_ERR_INIT;
        int ra = paging_translate(&pg, va, &a, &ea);
        int rb = paging_translate(&fresh, va, &b, &eb);
        FUZZ_CHECK(ra == rb);
        if (ra < 0)
            continue;
        FUZZ_CHECK(same_xlat(&a, &b));
        uint64_t reads = phys.reads;
        FUZZ_CHECK(paging_translate(&pg, va ^ 0xfff, &a2, &ea) == 0);
        FUZZ_CHECK(phys.reads == reads);
        FUZZ_CHECK(a2.pa == (a.pa ^ 0xfff) && a2.page_size == a.page_size);
    }
    return 0;
}
