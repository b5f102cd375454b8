/* wintrap.h - the fault records a bug check parameter points to: a
 * _KTRAP_FRAME, an _EXCEPTION_RECORD or a _CONTEXT, read at the profile's
 * offsets (never assumed). Each reader fills only what it could read; a
 * field the profile lacks is absent. A pointer that is not a canonical
 * kernel address, or a record that cannot be read, fails with a message and
 * leaves everything absent.
 *
 * Memory is read through a pe_read_fn-shaped callback over guest virtual
 * addresses, as winmod.h.
 */
#ifndef BM_WIN_WINTRAP_H
#define BM_WIN_WINTRAP_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "win/pe.h"
#include "win/profile.h"

/* Instruction and stack pointer of a trap frame or a context record. */
struct wintrap_regs {
    bool has_rip, has_rsp;
    uint64_t rip, rsp;
};

struct wintrap_exrec {
    bool has_code, has_address;
    uint32_t code;              /* ExceptionCode (an NTSTATUS) */
    uint64_t address;           /* ExceptionAddress */
};

/* True for an address a kernel record can sit at: canonical, upper half. */
bool wintrap_kernel_pointer(uint64_t va);

int wintrap_read_trap_frame(pe_read_fn read, void *ctx, const struct win_profile *prof,
                            uint64_t va, struct wintrap_regs *out, struct bm_err *err);
int wintrap_read_context(pe_read_fn read, void *ctx, const struct win_profile *prof,
                         uint64_t va, struct wintrap_regs *out, struct bm_err *err);
int wintrap_read_exception_record(pe_read_fn read, void *ctx, const struct win_profile *prof,
                                  uint64_t va, struct wintrap_exrec *out, struct bm_err *err);

/* The ImageFileName (UCHAR[15]) of the _EPROCESS at `va`, up to its first
 * NUL: 1..15 bytes into out (not NUL-terminated), *len set. */
int wintrap_read_process_name(pe_read_fn read, void *ctx, const struct win_profile *prof,
                              uint64_t va, uint8_t out[15], size_t *len, struct bm_err *err);

#endif
