/* kdbg.h - the kernel debugger's data block (KDDEBUGGER_DATA64, "KDBG"):
 * found at the profile's KdDebuggerDataBlock, decoded as Windows 8 and later
 * encode it when booted without a debugger (KdpDataBlockEncoded != 0: each
 * qword v is stored as KiWaitNever ^ ROR64(&KdpDataBlockEncoded ^
 * BSWAP64(KiWaitAlways ^ v), KiWaitNever & 63)), plain on Windows 7.
 *
 * The block's layout is the debugger's public interface (wdbgexts.h), the
 * same in every x64 build; only its size grows (0x340 on Windows 7 ...
 * 0x3a0 on Windows 11). Every byte is guest data: the header's Size is
 * bounded, the tag checked, KernBase compared with the kernel we found.
 */
#ifndef BM_WIN_KDBG_H
#define BM_WIN_KDBG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "vmi/paging.h"

#define WIN_KDBG_TAG 0x4742444bu    /* "KDBG" */
#define WIN_KDBG_MIN_SIZE 0x340u    /* Windows 7: up to OffsetPrcbContext */
#define WIN_KDBG_MAX_SIZE 0x1000u   /* far above any build's (0x3a0 today) */

/* KDDEBUGGER_DATA64 members used here (byte offsets). */
#define WIN_KDBG_OWNER_TAG 0x10
#define WIN_KDBG_SIZE 0x14
#define WIN_KDBG_KERN_BASE 0x18
#define WIN_KDBG_PS_LOADED_MODULE_LIST 0x48
#define WIN_KDBG_PS_ACTIVE_PROCESS_HEAD 0x50
#define WIN_KDBG_KI_BUGCHECK_DATA 0x88
#define WIN_KDBG_MM_PFN_DATABASE 0xc0
#define WIN_KDBG_KI_PROCESSOR_BLOCK 0x218
#define WIN_KDBG_OFFSET_PRCB_PROC_STATE_CONTEXT 0x2bc
#define WIN_KDBG_OFFSET_PRCB_CONTEXT 0x338

/* The three values of the encoding. */
struct win_kdbg_key {
    uint64_t wait_never, wait_always;
    uint64_t flag_va;               /* the address of KdpDataBlockEncoded */
};

uint64_t win_kdbg_decode_qword(const struct win_kdbg_key *k, uint64_t stored);
uint64_t win_kdbg_encode_qword(const struct win_kdbg_key *k, uint64_t plain);

struct win_kdbg {
    uint64_t va;                    /* where it lives in the guest */
    uint32_t size;                  /* Header.Size, as decoded */
    bool was_encoded;
    uint8_t bytes[WIN_KDBG_MAX_SIZE]; /* decoded, size bytes */
    uint64_t kern_base;
    uint64_t ps_loaded_module_list, ps_active_process_head;
    uint64_t ki_bugcheck_data, mm_pfn_database, ki_processor_block;
    uint16_t offset_prcb_context, offset_prcb_proc_state_context;
};

/* Read and decode the block at `va` through `read` (virtual reads).
 * `key` NULL: the block is stored plain. Fails (with what was wrong) when
 * it cannot be read, its tag is not "KDBG", its Size is out of bounds, or
 * its KernBase is not `kernel_base`. */
int win_kdbg_read(paging_read_fn read, void *ctx, uint64_t va, const struct win_kdbg_key *key,
                  uint64_t kernel_base, struct win_kdbg *out, struct bm_err *err);

#endif
