/* kernel.h - find the running Windows kernel (ntoskrnl) in guest memory.
 *
 * Starting from any pointer into the kernel image (an IDT handler, LSTAR,
 * a KPCR field), scan backwards page by page for the MZ/PE image that
 * contains it and looks like ntoskrnl, then read its CodeView record: the
 * PDB name, GUID and age select the symbol profile. Without a profile,
 * winkernel_find_bugcheck2 derives KeBugCheck2 from the exported
 * KeBugCheckEx (see callscan.h).
 */
#ifndef BM_WIN_KERNEL_H
#define BM_WIN_KERNEL_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "win/callscan.h"
#include "win/pe.h"

/* Default scan bound. ntoskrnl images are 8-16 MiB and a handler sits at
 * most that far above the base. */
#define WINKERNEL_SCAN_MAX (32u << 20)
#define WINKERNEL_LARGE_PAGE (UINT64_C(2) << 20)

struct winkernel {
    uint64_t base;                      /* VA of the MZ header */
    uint32_t size;                      /* SizeOfImage */
    struct pe_image img;                /* parsed headers (reads via callback) */
    char name[PE_MAX_NAME_LEN + 1];     /* export DLL name, may be "" */
    bool has_rsds;
    struct pe_rsds rsds;                /* valid if has_rsds */
    char rsds_error[BM_ERR_MSG_MAX];    /* why not, if !has_rsds */
    unsigned pages_scanned;
    unsigned pages_unreadable;          /* skipped holes during the scan */
};

/* Scan down from the page holding `ptr` at most `max_scan` bytes (0 =
 * WINKERNEL_SCAN_MAX; 2 MiB boundaries first, then the other pages; each
 * page read once), skipping unreadable pages, for a page-aligned
 * PE32+ image whose SizeOfImage covers `ptr` and whose export directory is
 * named like ntoskrnl (ntoskrnl.exe, ntkrnlmp.exe, ...) or which exports
 * KeBugCheckEx. A missing or damaged RSDS record does not fail the search
 * (has_rsds says so). */
int winkernel_find(pe_read_fn read, void *ctx, uint64_t ptr, uint64_t max_scan,
                   struct winkernel *out, struct bm_err *err);

struct winkernel_bugcheck {
    uint64_t kebugcheckex;              /* VA, from the export table */
    uint64_t kebugcheck2;               /* VA, call target in KeBugCheckEx */
    struct callscan_result scan;
};

/* What decoding KeBugCheckEx needs, read from the guest at discovery: its
 * VA (from the export table), its first bytes and the image's section
 * table. Decoding (capstone, loaded only then) waits until it is known that
 * no profile names KeBugCheck2. */
struct winkernel_bugcheckex {
    uint64_t kebugcheckex;              /* VA, from the export table */
    uint64_t base;                      /* the image's base and SizeOfImage */
    uint32_t size;
    size_t len;                         /* bytes of code read */
    uint8_t code[CALLSCAN_MAX_BYTES];
    uint16_t nsections;
    struct { uint32_t rva, vsize; bool exec; } sections[PE_MAX_SECTIONS];
};

/* Locate KeBugCheckEx by export and read what decoding it needs. */
int winkernel_read_bugcheckex(const struct winkernel *k, struct winkernel_bugcheckex *out,
                              struct bm_err *err);

/* KeBugCheck2 as the call target inside KeBugCheckEx (callscan.h); the
 * target must lie in an executable section of the kernel image. */
int winkernel_scan_bugcheck2(const struct winkernel_bugcheckex *in,
                             struct winkernel_bugcheck *out, struct bm_err *err);

/* Both in one. */
int winkernel_find_bugcheck2(const struct winkernel *k,
                             struct winkernel_bugcheck *out, struct bm_err *err);

#endif
