/* triage.c - see triage.h. */
#include "plugins/bsodmon/triage.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "plugins/bsodmon/bugcheck_params.h"
#include "win/wintrap.h"

static void failed(struct triage *t, const char *what, const struct bm_err *e)
{
    if (t->failed_reads++ == 0)
        snprintf(t->first_error, sizeof t->first_error, "%s: %s", what, bm_err_msg(e));
}

/* The parameter of a kind (first one), or -1. */
static int param_of(const struct bcp_code *c, enum bcp_kind k)
{
    if (c == NULL)
        return -1;
    for (int i = 0; i < 4; i++)
        if (c->p[i].kind == k)
            return i;
    return -1;
}

static bool is_exception_code(uint32_t code)
{
    switch (code) {
    case 0x1E: case 0x3B: case 0x7E: case 0x8E: case 0x1000007E: case 0x1000008E:
        return true;
    default:
        return false;
    }
}

static void reported(const struct triage_input *in, const struct bcp_code *c,
                     const struct winmod_list *mods, bool mods_ok, int ip_mod,
                     struct triage *t)
{
    uint32_t code = (uint32_t)in->code;
    if (code == 0x4C) {
        t->has_reported = true;
        t->reported = (uint32_t)in->p[0];
        /* KiBugCheckData[1..4] := the four hard-error parameters at P2. */
        uint64_t hp[4];
        struct bm_err e = BM_ERR_INIT;
        if (in->prof == NULL)
            return;                 /* no profile: nothing read */
        if (in->read(in->ctx, in->p[1], hp, sizeof hp, &e) < 0) {
            failed(t, "hard-error parameters", &e);
            bm_err_clear(&e);
            return;
        }
        t->hard_error_params_read = true;
        for (int i = 0; i < 4; i++) {
            t->reported_params[i] = hp[i];
            if (hp[i] != in->p[i])
                t->has_reported_params = true;
        }
        return;
    }
    if (code == 0x0A) {
        if (!t->has_ip || !mods_ok)
            return;
        /* ntoskrnl and HAL are the first two entries: both must have been
         * kept for "in neither" to be known. */
        bool first_two = mods->n >= 2 && mods->m[0].pos == 0 && mods->m[1].pos == 1;
        if (ip_mod >= 0 ? mods->m[ip_mod].pos >= 2 && first_two : first_two) {
            t->has_reported = true;
            t->reported = 0xD1;
        }
        return;
    }
    if (code == 0x50 || c == NULL)
        return;
    t->has_reported = true;
    t->reported = code;
}

static void bucket(const struct triage_input *in, const struct bcp_code *c, struct triage *t)
{
    t->has_bucket = false;
    if (!t->has_reported)
        return;
    char sub[24] = "";
    if (c != NULL && c->subcode_param >= 0)
        snprintf(sub, sizeof sub, "_0x%" PRIx64, in->p[c->subcode_param]);
    bool wants_ip = param_of(c, BCP_IP) >= 0 || param_of(c, BCP_TRAP) >= 0 ||
                    param_of(c, BCP_CONTEXT) >= 0 || param_of(c, BCP_EXREC) >= 0;
    if (!wants_ip) {
        snprintf(t->bucket, sizeof t->bucket, "0x%" PRIx32 "%s", t->reported, sub);
        t->has_bucket = true;
        return;
    }
    /* A code that names a faulting IP buckets on its module: without it
     * the bucket would differ from the same crash's where the read worked. */
    if (!t->has_module)
        return;
    snprintf(t->bucket, sizeof t->bucket, "0x%" PRIx32 "%s_%s+0x%" PRIx64, t->reported, sub,
             t->module, t->module_offset);
    t->has_bucket = true;
}

void triage_analyse(const struct triage_input *in, struct triage *t)
{
    memset(t, 0, sizeof *t);
    const struct bcp_code *c = bcp_find(in->code);
    const struct win_profile *prof = in->prof;
    struct bm_err e = BM_ERR_INIT;

    if (c != NULL && c->subcode_param >= 0) {
        t->has_subcode = true;
        t->subcode = in->p[c->subcode_param];
        t->subcode_name = bcp_subcode_name(in->code, t->subcode);
    }

    /* Faulting IP: an IP parameter, else a trap frame's Rip, else a
     * context record's, else the exception record's address. */
    int ip = param_of(c, BCP_IP);
    if (ip >= 0) {
        t->has_ip = true;
        t->ip = in->p[ip];
    }
    if (prof != NULL) {
        int tf = param_of(c, BCP_TRAP);
        if (tf >= 0 && !t->has_ip) {
            struct wintrap_regs r;
            if (wintrap_read_trap_frame(in->read, in->ctx, prof, in->p[tf], &r, &e) < 0)
                failed(t, "trap frame", &e);
            else if (r.has_rip) {
                t->has_ip = true;
                t->ip = r.rip;
            }
            bm_err_clear(&e);
        }
        int cx = param_of(c, BCP_CONTEXT);
        if (cx >= 0 && !t->has_ip) {
            struct wintrap_regs r;
            if (wintrap_read_context(in->read, in->ctx, prof, in->p[cx], &r, &e) < 0)
                failed(t, "context record", &e);
            else if (r.has_rip) {
                t->has_ip = true;
                t->ip = r.rip;
            }
            bm_err_clear(&e);
        }
        int er = param_of(c, BCP_EXREC);
        if (er >= 0) {
            struct wintrap_exrec x;
            if (wintrap_read_exception_record(in->read, in->ctx, prof, in->p[er], &x, &e) < 0) {
                failed(t, "exception record", &e);
            } else {
                if (x.has_code) {
                    t->has_exception = true;
                    t->exception_code = x.code;
                }
                if (x.has_address && !t->has_ip) {
                    t->has_ip = true;
                    t->ip = x.address;
                }
            }
            bm_err_clear(&e);
        }
    }
    int st = param_of(c, BCP_STATUS);
    if (!t->has_exception && st >= 0 && is_exception_code((uint32_t)in->code)) {
        t->has_exception = true;
        t->exception_code = (uint32_t)in->p[st];
    }
    if (t->has_exception)
        t->exception_name = bcp_ntstatus_name(t->exception_code);

    /* The module holding the IP. */
    bool mods_ok = false;
    int ip_mod = -1;
    if (t->has_ip && prof != NULL && in->modules != NULL) {
        if (!prof->PsLoadedModuleList.present) {
            bm_err_set(&e, "the symbol profile lacks PsLoadedModuleList");
            failed(t, "loaded modules", &e);
        } else if (winmod_walk(in->read, in->ctx, prof,
                               in->kernel_base + prof->PsLoadedModuleList.value, in->modules,
                               &e) < 0) {
            failed(t, "loaded modules", &e);
        } else {
            mods_ok = true;
            ip_mod = winmod_find(in->modules, t->ip);
            if (ip_mod < 0 && (in->modules->broken || in->modules->capped ||
                               in->modules->looped || in->modules->overlaps > 0))
                mods_ok = false;    /* it may sit in an entry not kept */
        }
        bm_err_clear(&e);
        if (ip_mod >= 0) {
            const struct winmod_entry *m = &in->modules->m[ip_mod];
            if (winmod_name(in->read, in->ctx, m, t->module, &t->module_truncated, &e) < 0) {
                failed(t, "module name", &e);
            } else if (t->module_truncated) {
                /* A cut name is not the module's: leave the module out. */
                bm_err_set(&e, "the name of the module at %#" PRIx64 " is longer than %d "
                           "bytes", m->base, WINMOD_NAME_MAX);
                failed(t, "module name", &e);
            } else {
                t->has_module = true;
                t->module_offset = t->ip - m->base;
                t->module_size = m->size;
                bm_err_clear(&e);
                if (winmod_timestamp(in->read, in->ctx, m, &t->module_timestamp, &e) < 0)
                    failed(t, "module PE header", &e);
                else
                    t->has_module_timestamp = true;
            }
            bm_err_clear(&e);
        }
    }

    /* The process that died (0xEF P1; 0xF4 P2 when P1 says process). */
    int pr = param_of(c, BCP_PROCESS);
    if (pr >= 0 && prof != NULL && ((uint32_t)in->code != 0xF4 || in->p[0] == 3)) {
        if (wintrap_read_process_name(in->read, in->ctx, prof, in->p[pr], t->process,
                                      &t->process_len, &e) < 0)
            failed(t, "process", &e);
        else
            t->has_process = true;
        bm_err_clear(&e);
    }

    reported(in, c, in->modules, mods_ok, ip_mod, t);
    bucket(in, c, t);
}

bool triage_wants_stored(const struct triage_input *in, const struct triage *t)
{
    if (!t->has_reported)
        return true;                /* 0x50, 0xA with the IP in the kernel, unknown codes */
    switch ((uint32_t)in->code) {
    case 0x4C:
        return !t->hard_error_params_read;
    case 0xBE: case 0xCB: case 0xD8: case 0xEA: case 0xFC:
        return true;                /* KeBugCheck2 names the driver (KiBugCheckDriver) */
    default:
        return false;
    }
}

void triage_final(const struct triage_input *in, const struct winbc_final *f, struct triage *t)
{
    if (f->driver_failed) {
        struct bm_err e = BM_ERR_INIT;
        bm_err_set(&e, "%s", f->driver_error);
        failed(t, "the driver KeBugCheck2 names", &e);
    }
    if (f->has_driver) {
        t->has_driver = true;
        memcpy(t->driver, f->driver, sizeof t->driver);
    }
    if ((uint32_t)f->data[0] == 0)
        return;
    t->has_reported = true;
    t->reported = (uint32_t)f->data[0];
    t->reported_stored = true;
    t->has_reported_params = false;
    for (int i = 0; i < 4; i++) {
        t->reported_params[i] = f->data[i + 1];
        if (f->data[i + 1] != in->p[i])
            t->has_reported_params = true;
    }
    bucket(in, bcp_find(in->code), t);
}
