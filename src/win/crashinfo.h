/* crashinfo.h - what a Windows crash dump needs to know about the crashed
 * guest, and how Windows' own dump would differ from guest memory at the
 * moment of the trap (KeBugCheck2's entry).
 *
 * Header facts: the system DirectoryTableBase (the System process's), the
 * value of MmPfnDatabase, PsLoadedModuleList, PsActiveProcessHead,
 * KeNumberProcessors, KdDebuggerDataBlock, the version (KdVersionBlock),
 * the crashing vCPU's CONTEXT, an exception record, the time, product type
 * and suite from KUSER_SHARED_DATA. Patches of the dump's copy of memory
 * (what KeBugCheck2 and a debugger-less dump writer do before writing): the
 * KDBG decoded and KdpDataBlockEncoded cleared, KiBugCheckData filled with
 * the code and parameters, each vCPU's CONTEXT in its KPRCB (ProcessorState
 * .ContextFrame, unless KeBugCheckEx already captured one there on the
 * crashing vCPU, and *Context).
 *
 * Nothing here fails for a bad guest: what cannot be learned stays 0, and
 * `warnings` says which fields and why. Every pointer and count from the
 * guest is bounded; nothing from it sizes an allocation.
 */
#ifndef BM_WIN_CRASHINFO_H
#define BM_WIN_CRASHINFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "vmi/vmi.h"
#include "win/profile.h"
#include "win/wincore.h"

#define WIN_CONTEXT_SIZE 0x4d0u     /* sizeof(CONTEXT) on x64 */
#define WIN_CI_MAX_VCPUS 64u
#define WIN_CI_MAX_PATCHES 256u
#define WIN_CI_PATCH_BYTES (64u << 10)
#define WIN_CI_WARN_MAX 2048u

/* The members of _CONTEXT kept in win_profile.context[], by index. */
enum win_ctx_field {
    WCTX_FLAGS, WCTX_MXCSR, WCTX_SEG_CS, WCTX_SEG_DS, WCTX_SEG_ES, WCTX_SEG_FS, WCTX_SEG_GS,
    WCTX_SEG_SS, WCTX_EFLAGS, WCTX_RAX, WCTX_RCX, WCTX_RDX, WCTX_RBX, WCTX_RSP, WCTX_RBP,
    WCTX_RSI, WCTX_RDI, WCTX_R8, WCTX_R9, WCTX_R10, WCTX_R11, WCTX_R12, WCTX_R13, WCTX_R14,
    WCTX_R15, WCTX_RIP, WCTX_FLTSAVE, WCTX_FLTSAVE_MXCSR, WCTX_N
};

/* One vCPU at the trap. */
struct win_vcpu {
    bool valid;                     /* its registers could be read */
    struct vmi_regs regs;
};

/* How crashinfo sees the guest: virtual reads and translations in the
 * kernel's address space (a vmi/ page walker, or a test's buffer).
 * to_phys succeeds only for a VA whose whole page is guest RAM. */
struct win_mem {
    int (*read)(void *ctx, uint64_t va, void *buf, size_t len, struct bm_err *err);
    int (*to_phys)(void *ctx, uint64_t va, uint64_t *pa, struct bm_err *err);
    void *ctx;
};

struct win_patch {
    uint64_t pa;
    uint32_t len;                   /* within one page */
    uint32_t at;                    /* its bytes: win_crashinfo.bytes + at */
};

struct win_crashinfo {
    uint32_t major_version, minor_version;
    uint8_t kd_secondary_version;
    uint64_t dtb;                   /* page-aligned */
    uint64_t pfn_database;          /* the value of MmPfnDatabase */
    uint64_t ps_loaded_module_list, ps_active_process_head;
    uint64_t kdbg;                  /* VA of a KDBG that decodes; 0 if none does */
    uint32_t nprocs;
    uint64_t system_time, interrupt_time;
    uint32_t product_type, suite_mask;
    uint8_t context[WIN_CONTEXT_SIZE]; /* the crashing vCPU's, as the header's ContextRecord */
    uint32_t exception_code, exception_flags;
    uint64_t exception_address;
    /* What was done to the dump's copy of memory. */
    bool kdbg_was_encoded;
    bool bugcheck_data_filled;
    unsigned contexts_written;      /* CONTEXTs placed in KPRCBs */
    bool crash_frame_kept;          /* the crashing vCPU's ContextFrame held
                                       KeBugCheckEx's captured frame: kept */
    size_t npatches;                /* sorted by pa, disjoint */
    struct win_patch patch[WIN_CI_MAX_PATCHES];
    size_t nbytes;
    uint8_t bytes[WIN_CI_PATCH_BYTES];
    char warnings[WIN_CI_WARN_MAX]; /* "; "-separated; "" when everything was filled */
};

/* A CONTEXT (x64, at the profile's _CONTEXT offsets) from a vCPU's
 * registers. 0, or -1 when the profile lacks the _CONTEXT members. */
int win_context_build(const struct win_profile *prof, const struct vmi_regs *r,
                      uint8_t ctx[WIN_CONTEXT_SIZE]);

/* The core, over any memory: `vcpu[0..nvcpu)` the vCPUs' registers at the
 * trap (nvcpu <= WIN_CI_MAX_VCPUS), `crash` the one that trapped, code and
 * p[4] the bug check as trapped. Never fails; `ci->warnings` says what
 * could not be filled. */
void win_crashinfo_build(const struct win_mem *m, const struct win_profile *prof,
                         uint64_t kernel_base, const struct win_vcpu *vcpu, unsigned nvcpu,
                         unsigned crash, uint64_t code, const uint64_t p[4],
                         struct win_crashinfo *ci);

/* The same from a stopped guest: reads every vCPU's registers and walks
 * the kernel's address space from the crashing vCPU's CR3. -1 (err) only
 * when there is no profile or the crashing vCPU's registers cannot be had;
 * then nothing is known for a header. `crash_regs` (may be NULL) are the
 * crashing vCPU's registers at the trap when it has run on since. */
int win_crashinfo_collect(const struct vmi *v, const struct win_kernel *k, unsigned crash,
                          const struct vmi_regs *crash_regs, uint64_t code, const uint64_t p[4],
                          struct win_crashinfo *ci, struct bm_err *err);

#endif
