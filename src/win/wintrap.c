/* wintrap.c - see wintrap.h. */
#include "win/wintrap.h"

#include <inttypes.h>
#include <string.h>

/* Offsets above this are not what any x64 build has (_CONTEXT is 0x4d0
 * bytes, _EPROCESS under 0x1000): a profile saying otherwise is refused. */
#define WINTRAP_OFFSET_MAX 0x2000

bool wintrap_kernel_pointer(uint64_t va)
{
    return va >= UINT64_C(0xffff800000000000);
}

static int check_ptr(const char *what, uint64_t va, struct bm_err *err)
{
    if (!wintrap_kernel_pointer(va))
        return bm_err_set(err, "%s pointer %#" PRIx64 " is not a kernel address", what, va);
    return 0;
}

/* Read a `len`-byte field at va + off if the profile has it. 1 read, 0
 * absent, -1 unreadable. */
static int field(pe_read_fn read, void *ctx, const struct win_off *o, uint64_t va,
                 void *out, size_t len, const char *what, struct bm_err *err)
{
    if (!o->present)
        return 0;
    if (o->value > WINTRAP_OFFSET_MAX)
        return bm_err_set(err, "the symbol profile puts %s at %#" PRIx64 ", beyond any "
                          "Windows build", what, o->value);
    if (read(ctx, va + o->value, out, len, err) < 0)
        return -1;
    return 1;
}

static int regs(pe_read_fn read, void *ctx, const struct win_off *rip, const struct win_off *rsp,
                const char *what, uint64_t va, struct wintrap_regs *out, struct bm_err *err)
{
    memset(out, 0, sizeof *out);
    if (check_ptr(what, va, err) < 0)
        return -1;
    if (!rip->present && !rsp->present)
        return bm_err_set(err, "the symbol profile has neither %s.Rip nor .Rsp", what);
    int r = field(read, ctx, rip, va, &out->rip, 8, what, err);
    if (r < 0)
        return -1;
    out->has_rip = r == 1;
    r = field(read, ctx, rsp, va, &out->rsp, 8, what, err);
    if (r < 0) {
        out->has_rip = false;
        return -1;
    }
    out->has_rsp = r == 1;
    return 0;
}

int wintrap_read_trap_frame(pe_read_fn read, void *ctx, const struct win_profile *prof,
                            uint64_t va, struct wintrap_regs *out, struct bm_err *err)
{
    return regs(read, ctx, &prof->ktrap_frame_rip, &prof->ktrap_frame_rsp, "_KTRAP_FRAME",
                va, out, err);
}

int wintrap_read_context(pe_read_fn read, void *ctx, const struct win_profile *prof,
                         uint64_t va, struct wintrap_regs *out, struct bm_err *err)
{
    return regs(read, ctx, &prof->context_rip, &prof->context_rsp, "_CONTEXT", va, out, err);
}

int wintrap_read_exception_record(pe_read_fn read, void *ctx, const struct win_profile *prof,
                                  uint64_t va, struct wintrap_exrec *out, struct bm_err *err)
{
    memset(out, 0, sizeof *out);
    if (check_ptr("_EXCEPTION_RECORD", va, err) < 0)
        return -1;
    if (!prof->exception_record_code.present && !prof->exception_record_address.present)
        return bm_err_set(err, "the symbol profile has neither _EXCEPTION_RECORD.ExceptionCode "
                          "nor .ExceptionAddress");
    int r = field(read, ctx, &prof->exception_record_code, va, &out->code, 4,
                  "_EXCEPTION_RECORD.ExceptionCode", err);
    if (r < 0)
        return -1;
    out->has_code = r == 1;
    r = field(read, ctx, &prof->exception_record_address, va, &out->address, 8,
              "_EXCEPTION_RECORD.ExceptionAddress", err);
    if (r < 0) {
        out->has_code = false;
        return -1;
    }
    out->has_address = r == 1;
    return 0;
}

int wintrap_read_process_name(pe_read_fn read, void *ctx, const struct win_profile *prof,
                              uint64_t va, uint8_t out[15], size_t *len, struct bm_err *err)
{
    *len = 0;
    if (check_ptr("_EPROCESS", va, err) < 0)
        return -1;
    if (!prof->eprocess_image_file_name.present)
        return bm_err_set(err, "the symbol profile lacks _EPROCESS.ImageFileName");
    size_t n = prof->eprocess_image_file_name_len.present
                   ? (size_t)prof->eprocess_image_file_name_len.value : 15;
    if (n > 15 || n == 0)
        n = 15;
    int r = field(read, ctx, &prof->eprocess_image_file_name, va, out, n,
                  "_EPROCESS.ImageFileName", err);
    if (r < 0)
        return -1;
    *len = strnlen((const char *)out, n);
    if (*len == 0)
        return bm_err_set(err, "the process at %#" PRIx64 " has an empty ImageFileName", va);
    return 0;
}
