/* callscan.h - find KeBugCheck2 from the machine code of KeBugCheckEx.
 *
 * Without a symbol profile only exported names are known, and KeBugCheck2
 * is not exported. Every x64 Windows 10/11 KeBugCheckEx has the same shape:
 * it spills RCX/RDX/R8/R9 to the home area, pushfq, sub rsp, cli, calls
 * RtlCaptureContext and KiSaveProcessorControlState, sets up the bug check
 * arguments and calls KeBugCheck2 (sometimes from two paths, for the
 * KeBugCheck and KeBugCheckEx entries), followed by int3 or nop/ret: it
 * never returns. So the rule is: decode linearly (capstone) from the entry
 * until the first function end (ret, int3, hlt, ud2, jmp-to-self), and
 * take the target of the LAST direct `call rel32` before it. The helper
 * calls come first and so are never chosen.
 */
#ifndef BM_WIN_CALLSCAN_H
#define BM_WIN_CALLSCAN_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

/* KeBugCheckEx is ~0x120 bytes on Windows 10/11; never decode more. */
#define CALLSCAN_MAX_BYTES 512

struct callscan_result {
    uint64_t target;        /* the KeBugCheck2 candidate */
    uint64_t call_va;       /* address of the chosen call instruction */
    uint64_t end_va;        /* address of the instruction that ended the scan */
    unsigned ncalls;        /* direct calls seen before the end */
    unsigned target_calls;  /* how many of them go to `target` */
};

/* `code` holds `len` bytes of KeBugCheckEx starting at virtual address
 * `va` (at most CALLSCAN_MAX_BYTES are decoded). Fails if the bytes end
 * inside an instruction, hold an undecodable instruction, contain no end
 * within the bound, or hold no direct call. The caller should still check
 * that the target lies in an executable section of the kernel image. */
int callscan_find_bugcheck2(const uint8_t *code, size_t len, uint64_t va,
                            struct callscan_result *out, struct bm_err *err);

#endif
