/* winbugcheck.c - see winbugcheck.h. */
#include "win/winbugcheck.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define KERNEL_MIN UINT64_C(0xffff800000000000)

static void driver_failed(struct winbc_final *out, const char *what, const struct bm_err *e)
{
    out->driver_failed = true;
    snprintf(out->driver_error, sizeof out->driver_error, "%s: %s", what, bm_err_msg(e));
}

int winbc_read(pe_read_fn read, void *ctx, const struct win_profile *prof, uint64_t kernel_base,
               struct winbc_final *out, struct bm_err *err)
{
    memset(out, 0, sizeof *out);
    if (!prof->KiBugCheckData.present)
        return bm_err_set(err, "the symbol profile lacks KiBugCheckData");
    if (read(ctx, kernel_base + prof->KiBugCheckData.value, out->data, sizeof out->data, err) < 0) {
        bm_err_prefix(err, "KiBugCheckData");
        return -1;
    }
    if (!prof->KiBugCheckDriver.present)
        return 0;
    struct bm_err e = BM_ERR_INIT;
    uint64_t us;
    if (read(ctx, kernel_base + prof->KiBugCheckDriver.value, &us, 8, &e) < 0) {
        driver_failed(out, "KiBugCheckDriver", &e);
        return 0;
    }
    if (us == 0)
        return 0;
    if (!prof->unicode_string_length.present || !prof->unicode_string_buffer.present ||
        prof->unicode_string_length.value > 16 || prof->unicode_string_buffer.value > 16) {
        bm_err_set(&e, "the symbol profile lacks _UNICODE_STRING's Length and Buffer");
        driver_failed(out, "KiBugCheckDriver", &e);
        return 0;
    }
    /* The UNICODE_STRING in one read: Length and Buffer. */
    size_t lo = (size_t)prof->unicode_string_length.value;
    size_t bo = (size_t)prof->unicode_string_buffer.value;
    size_t span = lo + 2 > bo + 8 ? lo + 2 : bo + 8;
    uint8_t u[32];
    if (us < KERNEL_MIN) {
        bm_err_set(&e, "it points to %#" PRIx64 ", not kernel memory", us);
        driver_failed(out, "KiBugCheckDriver", &e);
        return 0;
    }
    if (read(ctx, us, u, span, &e) < 0) {
        driver_failed(out, "KiBugCheckDriver's UNICODE_STRING", &e);
        return 0;
    }
    uint16_t len;
    uint64_t buf;
    memcpy(&len, u + lo, 2);
    memcpy(&buf, u + bo, 8);
    if (winmod_ustr(read, ctx, len, buf, out->driver, &out->driver_truncated, &e) < 0) {
        driver_failed(out, "KiBugCheckDriver's name", &e);
    } else if (out->driver_truncated) {
        bm_err_set(&e, "%u bytes, longer than %d", len, WINMOD_NAME_MAX);
        driver_failed(out, "KiBugCheckDriver's name", &e);
    } else {
        out->has_driver = true;
    }
    return 0;
}
