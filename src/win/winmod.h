/* winmod.h - the loaded kernel modules (PsLoadedModuleList), and which one
 * holds an address.
 *
 * The list is guest data and hostile: the walk stops at WINMOD_MAX entries,
 * at a Flink that returns to an entry already seen (a loop that does not
 * pass the head), at an unreadable or non-canonical entry, and drops an
 * entry whose [DllBase, DllBase + SizeOfImage) overlaps one kept before it
 * (which of the two holds an address would be a guess). Names are read only
 * for the module asked about, and cut at WINMOD_NAME_MAX bytes. Offsets come
 * from the profile only; without them the walk fails and the caller leaves
 * the module fields out.
 *
 * Memory is read through a pe_read_fn-shaped callback over guest virtual
 * addresses (paging_read_virt_cb in bsodmon; a buffer in the tests).
 */
#ifndef BM_WIN_WINMOD_H
#define BM_WIN_WINMOD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "win/pe.h"
#include "win/profile.h"

#define WINMOD_MAX        512       /* modules walked; Windows loads ~150-250 */
#define WINMOD_NAME_MAX   64        /* bytes of BaseDllName kept */
#define WINMOD_SIZE_MAX   (UINT32_C(1) << 30)   /* a SizeOfImage above is refused */

struct winmod_entry {
    uint64_t entry;                 /* VA of the loader entry */
    uint64_t base;                  /* DllBase */
    uint32_t size;                  /* SizeOfImage */
    uint16_t name_len;              /* BaseDllName.Length, bytes of UTF-16 */
    uint64_t name_buf;              /* BaseDllName.Buffer */
    unsigned pos;                   /* place in the list (0 ntoskrnl, 1 HAL) */
};

struct winmod_list {
    size_t n;
    struct winmod_entry m[WINMOD_MAX];
    /* How the walk ended, for diagnostics: each true flag means the list
     * was cut or an entry dropped, so the result is partial. */
    bool capped;                    /* WINMOD_MAX entries reached */
    bool looped;                    /* a Flink came back to a seen entry */
    bool broken;                    /* an entry could not be read */
    unsigned overlaps;              /* entries dropped for overlapping */
    unsigned bad_sizes;             /* entries dropped for a size of 0 or too big */
};

/* Walk the list whose head (a _LIST_ENTRY) is at `head` (kernel base +
 * PsLoadedModuleList). Fails only when the profile lacks the offsets or the
 * head cannot be read; a list cut short is a success with the flags set. */
int winmod_walk(pe_read_fn read, void *ctx, const struct win_profile *prof, uint64_t head,
                struct winmod_list *out, struct bm_err *err);

/* The index of the module holding `va`, or -1. */
int winmod_find(const struct winmod_list *l, uint64_t va);

/* The module's BaseDllName as bytes (UTF-16LE reduced to one byte a code
 * unit; a unit above 0x7F becomes '?'), NUL-terminated, at most
 * WINMOD_NAME_MAX bytes; *truncated says it was longer. 0, or -1 when
 * the name cannot be read or is empty. */
int winmod_name(pe_read_fn read, void *ctx, const struct winmod_entry *m,
                char out[WINMOD_NAME_MAX + 1], bool *truncated, struct bm_err *err);

/* The same for any UNICODE_STRING's text: `len` bytes of UTF-16LE at
 * `buf` (Length as the guest has it). */
int winmod_ustr(pe_read_fn read, void *ctx, uint16_t len, uint64_t buf,
                char out[WINMOD_NAME_MAX + 1], bool *truncated, struct bm_err *err);

/* TimeDateStamp from the PE header at the module's DllBase (the image's
 * build identity with SizeOfImage). 0, or -1 when the headers are absent. */
int winmod_timestamp(pe_read_fn read, void *ctx, const struct winmod_entry *m,
                     uint32_t *ts, struct bm_err *err);

#endif
