/* paging.c - see paging.h.
 *
 * References: Intel SDM vol. 3A, 4.5 "4-level paging and 5-level paging".
 * Entry bits used: P(0) R/W(1) U/S(2) PS(7) XD(63); address field bits
 * 12..MAXPHYADDR-1. Bits 52..62 are ignored by the CPU (Windows keeps
 * software state there), so they are masked, never refused.
 */
#include "vmi/paging.h"

#include <inttypes.h>
#include <string.h>

#define PTE_P   (UINT64_C(1) << 0)
#define PTE_RW  (UINT64_C(1) << 1)
#define PTE_US  (UINT64_C(1) << 2)
#define PTE_PS  (UINT64_C(1) << 7)
#define PTE_XD  (UINT64_C(1) << 63)

#define CR0_PG    (UINT64_C(1) << 31)
#define CR4_PAE   (UINT64_C(1) << 5)
#define CR4_LA57  (UINT64_C(1) << 12)
#define EFER_LMA  (UINT64_C(1) << 10)

#define PAGE_4K  UINT64_C(0x1000)
#define PAGE_2M  UINT64_C(0x200000)
#define PAGE_1G  UINT64_C(0x40000000)

/* Level numbers follow the SDM: 5 = PML5E ... 1 = PTE. */
static const char *const level_name[] = { "?", "PTE", "PDE", "PDPTE", "PML4E", "PML5E" };

enum paging_mode paging_mode_from_regs(uint64_t cr0, uint64_t cr4, uint64_t efer)
{
    if (!(cr0 & CR0_PG))
        return PAGING_NONE;
    if (efer & EFER_LMA)
        return (cr4 & CR4_LA57) ? PAGING_IA32E_5 : PAGING_IA32E_4;
    return (cr4 & CR4_PAE) ? PAGING_PAE : PAGING_32BIT;
}

const char *paging_mode_name(enum paging_mode mode)
{
    switch (mode) {
    case PAGING_NONE:    return "no paging";
    case PAGING_32BIT:   return "32-bit";
    case PAGING_PAE:     return "PAE";
    case PAGING_IA32E_4: return "4-level";
    case PAGING_IA32E_5: return "5-level";
    }
    return "unknown";
}

int paging_init(struct paging *pg, enum paging_mode mode, uint64_t cr3,
                unsigned maxphyaddr, paging_read_fn read_phys, void *ctx,
                struct bm_err *err)
{
    if (pg == NULL || read_phys == NULL)
        return bm_err_set(err, "paging: no physical-memory reader given");
    if (maxphyaddr == 0)
        maxphyaddr = PAGING_MAXPHYADDR_DEFAULT;
    if (maxphyaddr < 32 || maxphyaddr > 52)
        return bm_err_set(err, "paging: physical address width %u is out of range "
                          "(32..52 bits)", maxphyaddr);
    switch (mode) {
    case PAGING_NONE:
    case PAGING_IA32E_4:
    case PAGING_IA32E_5:
        break;
    default:
        return bm_err_set(err, "paging: %s paging is not supported yet (only "
                          "64-bit guests with 4- or 5-level paging)",
                          paging_mode_name(mode));
    }
    memset(pg, 0, sizeof *pg);
    pg->mode = mode;
    pg->cr3 = cr3;
    pg->maxphyaddr = maxphyaddr;
    pg->read_phys = read_phys;
    pg->ctx = ctx;
    return 0;
}

bool paging_is_canonical(const struct paging *pg, uint64_t va)
{
    unsigned bits;
    if (pg->mode == PAGING_IA32E_4)
        bits = 48;
    else if (pg->mode == PAGING_IA32E_5)
        bits = 57;
    else
        return true;
    /* Bits 63..bits-1 must all equal bit bits-1. */
    uint64_t top = va >> (bits - 1);
    return top == 0 || top == (UINT64_MAX >> (bits - 1));
}

/* Mask of the physical-address field of an entry (bits 12..maxphyaddr-1). */
static uint64_t addr_mask(const struct paging *pg)
{
    return ((UINT64_C(1) << pg->maxphyaddr) - 1) & ~(PAGE_4K - 1);
}

/* Bits 12..51 that lie at or above MAXPHYADDR: reserved in every entry. */
static uint64_t high_reserved(const struct paging *pg)
{
    return ((UINT64_C(1) << 52) - 1) & ~((UINT64_C(1) << pg->maxphyaddr) - 1);
}

static int walk_fail(const struct paging *pg, uint64_t va, int level,
                     uint64_t entry, const char *why, struct bm_err *err)
{
    return bm_err_set(err, "virtual address 0x%016" PRIx64 " is not mapped: %s "
                      "0x%016" PRIx64 " %s (CR3 0x%" PRIx64 ", %s paging)",
                      va, level_name[level], entry, why, pg->cr3,
                      paging_mode_name(pg->mode));
}

static bool tlb_lookup(const struct paging *pg, uint64_t va, struct paging_xlat *out)
{
    for (unsigned i = 0; i < pg->tlb_used; i++) {
        const struct paging_tlb_entry *t = &pg->tlb[i];
        if ((va & ~(t->x.page_size - 1)) == t->va_base) {
            *out = t->x;
            out->pa = t->x.pa | (va & (t->x.page_size - 1));
            return true;
        }
    }
    return false;
}

static void tlb_fill(struct paging *pg, uint64_t va, const struct paging_xlat *x)
{
    struct paging_tlb_entry *t = &pg->tlb[pg->tlb_next];
    t->x = *x;
    t->x.pa &= ~(x->page_size - 1);
    t->va_base = va & ~(x->page_size - 1);
    pg->tlb_next = (pg->tlb_next + 1) % PAGING_TLB_SIZE;
    if (pg->tlb_used < PAGING_TLB_SIZE)
        pg->tlb_used++;
}

static unsigned level_shift(int level)
{
    return 12 + 9 * (unsigned)level;
}

/* The lowest table the cache knows for va: its level and contents. */
static int psc_lookup(const struct paging *pg, uint64_t va, int levels, uint64_t *table,
                      bool *rw, bool *us, bool *nx)
{
    for (int level = 1; level < levels; level++)
        for (unsigned i = 0; i < pg->psc_used; i++) {
            const struct paging_psc_entry *c = &pg->psc[i];
            if (c->level == level && c->key == va >> level_shift(level)) {
                *table = c->table;
                *rw = c->rw, *us = c->us, *nx = c->nx;
                return level;
            }
        }
    return levels;
}

static void psc_fill(struct paging *pg, int level, uint64_t va, uint64_t table, bool rw,
                     bool us, bool nx)
{
    for (unsigned i = 0; i < pg->psc_used; i++)
        if (pg->psc[i].level == level && pg->psc[i].key == va >> level_shift(level))
            return;
    pg->psc[pg->psc_next] = (struct paging_psc_entry){
        .level = level, .key = va >> level_shift(level), .table = table,
        .rw = rw, .us = us, .nx = nx,
    };
    pg->psc_next = (pg->psc_next + 1) % PAGING_PSC_SIZE;
    if (pg->psc_used < PAGING_PSC_SIZE)
        pg->psc_used++;
}

static int walk(struct paging *pg, uint64_t va, struct paging_xlat *out,
                struct bm_err *err)
{
    memset(out, 0, sizeof *out);
    if (pg->mode == PAGING_NONE) {
        out->pa = va;
        out->page_size = PAGE_4K;
        out->writable = out->user = true;
        return 0;
    }
    if (!paging_is_canonical(pg, va))
        return bm_err_set(err, "virtual address 0x%016" PRIx64 " is not canonical "
                          "for %s paging", va, paging_mode_name(pg->mode));

    const uint64_t mask = addr_mask(pg);
    const uint64_t reserved = high_reserved(pg);
    int levels = pg->mode == PAGING_IA32E_5 ? 5 : 4;
    uint64_t table = pg->cr3 & mask;
    bool rw = true, us = true, nx = false;
    int start = psc_lookup(pg, va, levels, &table, &rw, &us, &nx);

    /* One entry per level: the walk is bounded even if a table points at
     * itself (Windows' self-map does exactly that). */
    for (int level = start; level >= 1; level--) {
        unsigned shift = 12 + 9 * (unsigned)(level - 1);
        uint64_t entry_pa = table + ((va >> shift) & 0x1ff) * 8;
        uint64_t entry;
        if (pg->read_phys(pg->ctx, entry_pa, &entry, sizeof entry, err) < 0) {
            bm_err_prefix(err, "translating 0x%016" PRIx64 ": reading %s at "
                          "physical 0x%" PRIx64, va, level_name[level], entry_pa);
            return -1;
        }
        if (!(entry & PTE_P))
            return walk_fail(pg, va, level, entry, "not present", err);
        if (entry & reserved)
            return walk_fail(pg, va, level, entry, "has reserved address bits set",
                             err);
        rw = rw && (entry & PTE_RW);
        us = us && (entry & PTE_US);
        nx = nx || (entry & PTE_XD);

        uint64_t size = 0;
        if (level == 1)
            size = PAGE_4K;
        else if (entry & PTE_PS) {
            if (level == 3)
                size = PAGE_1G;
            else if (level == 2)
                size = PAGE_2M;
            else
                return walk_fail(pg, va, level, entry, "has the reserved PS bit set",
                                 err);
            /* Bit 12 is PAT; the bits between it and the frame are reserved. */
            uint64_t low_reserved = (size - 1) & ~((PAGE_4K << 1) - 1);
            if (entry & low_reserved)
                return walk_fail(pg, va, level, entry,
                                 "maps a large page with reserved bits set", err);
        }
        if (size != 0) {
            out->pa = (entry & mask & ~(size - 1)) | (va & (size - 1));
            out->page_size = size;
            out->writable = rw;
            out->user = us;
            out->nx = nx;
            return 0;
        }
        table = entry & mask;
        psc_fill(pg, level - 1, va, table, rw, us, nx);
    }
    /* Not reached: level 1 always returns. */
    return bm_err_set(err, "translating 0x%016" PRIx64 ": walk did not end", va);
}

int paging_translate(struct paging *pg, uint64_t va, struct paging_xlat *out,
                     struct bm_err *err)
{
    if (pg->mode != PAGING_NONE && paging_is_canonical(pg, va) &&
        tlb_lookup(pg, va, out))
        return 0;
    if (walk(pg, va, out, err) < 0)
        return -1;
    if (pg->mode != PAGING_NONE)
        tlb_fill(pg, va, out);
    return 0;
}

int paging_read_virt(struct paging *pg, uint64_t va, void *buf,
                     size_t len, struct bm_err *err)
{
    uint8_t *out = buf;
    struct paging_xlat x = { 0 };
    bool have = false;      /* `x` describes the page [page_va, +page_size) */
    uint64_t page_va = 0;

    while (len > 0) {
        if (!have || va - page_va >= x.page_size) {
            if (paging_translate(pg, va, &x, err) < 0)
                return -1;
            have = true;
            page_va = va & ~(x.page_size - 1);
        }
        uint64_t pa = (x.pa & ~(x.page_size - 1)) + (va - page_va);
        /* Read at most to the next 4 KiB boundary so a failing physical read
         * is reported at page granularity even inside a large page. */
        size_t chunk = (size_t)(PAGE_4K - (va & (PAGE_4K - 1)));
        if (chunk > len)
            chunk = len;
        if (pg->read_phys(pg->ctx, pa, out, chunk, err) < 0) {
            bm_err_prefix(err, "reading virtual 0x%016" PRIx64 " (physical 0x%"
                          PRIx64 ")", va, pa);
            return -1;
        }
        out += chunk;
        len -= chunk;
        if (len > 0 && va + chunk < va)
            return bm_err_set(err, "reading virtual memory: range runs past "
                              "0x%016" PRIx64, UINT64_MAX);
        va += chunk;
    }
    return 0;
}

int paging_read_virt_cb(void *ctx, uint64_t va, void *buf, size_t len,
                        struct bm_err *err)
{
    return paging_read_virt(ctx, va, buf, len, err);
}
