/* wincore.h - the running Windows kernel as bsodmon needs it: where it is,
 * which PDB it was built with, which symbols apply, where KeBugCheck2 is,
 * and who runs on a vCPU. Built on vmi/ (guest access), pe/kernel (image),
 * profile (symbols) and callscan (no-profile KeBugCheck2). */
#ifndef BM_WIN_WINCORE_H
#define BM_WIN_WINCORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "vmi/vmi.h"
#include "win/kernel.h"
#include "win/profile.h"

struct win_kernel {
    uint64_t base;              /* ntoskrnl's image base (VA) */
    uint32_t size;              /* SizeOfImage */
    char pdb_name[64];          /* from the CodeView record, e.g. ntkrnlmp.pdb */
    char guid[33];
    uint32_t age;
    char pdb_guid[48];          /* "GUID-AGE" (age in decimal), as Volatility names files */
    bool has_profile;
    struct win_profile prof;    /* valid when has_profile */
    uint64_t kebugcheck2;       /* VA of the trap target */
    uint64_t kebugcheckex;      /* VA, 0 when unknown */
    const char *kebugcheck2_from; /* "profile" or "KeBugCheckEx call" */
    char no_call_why[BM_ERR_MSG_MAX]; /* why KeBugCheckEx gave no KeBugCheck2 */
    bool has_bcx;               /* KeBugCheckEx read at discovery, decoded only */
    struct winkernel_bugcheckex bcx; /* when no profile names KeBugCheck2 */
    struct vmi_regs regs;       /* the discovering vCPU's, then (paging mode, CR3, KPCR) */
};

/* Find ntoskrnl from the kernel pointers vCPU `vcpu` holds (IDT entries,
 * then RIP) and read its CodeView record. The guest must be stopped. */
int win_kernel_discover(const struct vmi *v, unsigned vcpu, struct win_kernel *k,
                        struct bm_err *err);

/* Pick symbols: `profile` (-r FILE) or the file for this kernel's GUID in
 * `symbols_dir` (--symbols-dir), or neither. A profile for another kernel
 * is refused. Then locate KeBugCheck2 (profile RVA, else the call inside
 * the exported KeBugCheckEx). */
int win_kernel_symbols(const struct vmi *v, struct win_kernel *k, const char *profile,
                       const char *symbols_dir, struct bm_err *err);

/* Who runs on a vCPU, read through its KPCR at the profile's offsets. Each
 * field has a presence flag: a field the guest does not let us read (or the
 * profile lacks) is absent, never made up. */
struct win_current {
    bool has_pid, has_ppid, has_tid, has_session, has_name;
    uint64_t pid, ppid, tid;
    uint32_t session;
    uint8_t name[16];
    size_t name_len;
    uint64_t eprocess, ethread;
};

int win_current(const struct vmi *v, const struct vmi_regs *regs, const struct win_kernel *k,
                struct win_current *cur, struct bm_err *err);

#endif
