/* paging.h - x86 page-table walker over a caller's physical-memory reader.
 *
 * The walker knows nothing about where physical memory comes from: the
 * backend (QEMU RAM reader, GDB stub, a dump file, a unit test's buffer)
 * supplies one read callback. Every page-table entry is guest data and is
 * treated as hostile: the walk is bounded by the number of levels, reserved
 * bits are refused, and non-canonical addresses never reach memory.
 *
 * Supported today: IA-32e 4-level and 5-level (LA57) paging with 4 KiB,
 * 2 MiB and 1 GiB pages. The mode enum already names 32-bit and PAE paging
 * so they can be added later without changing callers.
 */
#ifndef BM_VMI_PAGING_H
#define BM_VMI_PAGING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

/* Read `len` bytes of guest physical memory at `pa` into `buf`.
 * Returns 0, or -1 with `err` set. The same shape reads virtual memory in
 * the layers above (see paging_read_virt_cb). */
typedef int (*paging_read_fn)(void *ctx, uint64_t pa, void *buf, size_t len,
                              struct bm_err *err);

enum paging_mode {
    PAGING_NONE = 0,    /* CR0.PG clear: virtual == physical */
    PAGING_32BIT,       /* legacy 2-level (not implemented yet) */
    PAGING_PAE,         /* 3-level PAE (not implemented yet) */
    PAGING_IA32E_4,     /* long mode, 4-level, 48-bit canonical */
    PAGING_IA32E_5,     /* long mode, 5-level (CR4.LA57), 57-bit canonical */
};

/* Architectural physical-address width when the caller does not know the
 * guest's CPUID.80000008h:EAX[7:0]. */
#define PAGING_MAXPHYADDR_DEFAULT 52

/* Result of one translation. */
struct paging_xlat {
    uint64_t pa;            /* physical address of the byte at va */
    uint64_t page_size;     /* 4096, 2 MiB or 1 GiB (for PAGING_NONE: 4096) */
    bool writable;          /* R/W set at every level */
    bool user;              /* U/S set at every level */
    bool nx;                /* XD set at any level */
};

/* A walker remembers its last PAGING_TLB_SIZE successful translations, as
 * a CPU's TLB does, so reading several fields of one structure walks its
 * page once (4-5 physical reads saved per hit; when memory is read
 * through QEMU's debug server, each is a round trip). A walker therefore belongs to one stop of the guest:
 * build a new one (paging_init) whenever the vCPUs may have run. Failed
 * walks are not remembered. It also remembers, as a CPU's paging-structure
 * caches do, the tables its last PAGING_PSC_SIZE walks went through, so a
 * new page beside one already walked costs one read (its PTE), not four:
 * a module list or a process list spread over many pages of one region. */
#define PAGING_TLB_SIZE 8
#define PAGING_PSC_SIZE 16

struct paging_tlb_entry {
    uint64_t va_base;       /* va of the page's first byte */
    struct paging_xlat x;   /* x.pa: physical address of that byte */
};

/* A table a walk went through: the one at `level` (1: a page table,
 * 2: a page directory, ...) for the virtual range key << (12 + 9 * level),
 * with the access rights of the entries above it. */
struct paging_psc_entry {
    int level;
    uint64_t key;
    uint64_t table;
    bool rw, us, nx;
};

struct paging {
    enum paging_mode mode;
    uint64_t cr3;           /* as read from the vCPU; low flag bits ignored */
    unsigned maxphyaddr;    /* 32..52; bits at and above it are reserved */
    paging_read_fn read_phys;
    void *ctx;              /* passed to read_phys */
    unsigned tlb_used, tlb_next;
    struct paging_tlb_entry tlb[PAGING_TLB_SIZE];
    unsigned psc_used, psc_next;
    struct paging_psc_entry psc[PAGING_PSC_SIZE];
};

/* The mode a vCPU is in, from CR0, CR4 and EFER (IA32_EFER MSR). */
enum paging_mode paging_mode_from_regs(uint64_t cr0, uint64_t cr4, uint64_t efer);

/* Human name of a mode, e.g. "4-level"; never NULL. */
const char *paging_mode_name(enum paging_mode mode);

/* Fill `pg`. `maxphyaddr` 0 means PAGING_MAXPHYADDR_DEFAULT. Fails for a
 * mode that is not implemented or a NULL reader. */
int paging_init(struct paging *pg, enum paging_mode mode, uint64_t cr3,
                unsigned maxphyaddr, paging_read_fn read_phys, void *ctx,
                struct bm_err *err);

/* True if `va` is canonical for the mode (always true without long mode). */
bool paging_is_canonical(const struct paging *pg, uint64_t va);

/* Translate one virtual address. Fails (naming the address and the level)
 * for a non-canonical address, a not-present entry, a reserved bit, or a
 * failed physical read. */
int paging_translate(struct paging *pg, uint64_t va,
                     struct paging_xlat *out, struct bm_err *err);

/* Read `len` virtual bytes at `va`, across as many pages as needed. On
 * failure the message names the first virtual address that could not be
 * read; `buf` may be partly written. */
int paging_read_virt(struct paging *pg, uint64_t va, void *buf,
                     size_t len, struct bm_err *err);

/* paging_read_virt with `ctx` = `struct paging *`, so a walker can be
 * handed directly to readers of virtual memory (pe_open, winkernel_find). */
int paging_read_virt_cb(void *ctx, uint64_t va, void *buf, size_t len,
                        struct bm_err *err);

#endif
