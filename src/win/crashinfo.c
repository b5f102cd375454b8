/* crashinfo.c - see crashinfo.h. */
#include "win/crashinfo.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "win/kdbg.h"

#define PAGE 4096u
#define KERNEL_MIN 0xffff800000000000ull
/* KI_USER_SHARED_DATA: where every x64 Windows maps KUSER_SHARED_DATA. */
#define KUSER_VA 0xfffff78000000000ull
/* CONTEXT_AMD64 | CONTEXT_CONTROL | CONTEXT_INTEGER | CONTEXT_SEGMENTS. */
#define CONTEXT_FLAGS 0x100007u
/* MXCSR as Windows initialises it (all exceptions masked); the vmi layer
 * does not read the vCPU's. */
#define MXCSR_DEFAULT 0x1f80u
/* x64 Windows' data selectors: KGDT64_R3_DATA | RPL 3 for DS, ES and GS,
 * KGDT64_R3_CMTEB | RPL 3 for FS, in every x64 build (the vmi layer gives
 * CS and SS only). */
#define SEL_DATA 0x2bu
#define SEL_TEB 0x53u
#define STATUS_BREAKPOINT 0x80000003u
#define EXCEPTION_NONCONTINUABLE 1u

struct ci {
    const struct win_mem *m;
    const struct win_profile *prof;
    uint64_t kbase;
    struct win_crashinfo *out;
    struct win_patch raw[WIN_CI_MAX_PATCHES]; /* in the order added */
    size_t nraw;
    uint64_t kdbg_va, kdbg_size;   /* the decoded KDBG: nothing else may land on it */
};

static void warn(struct win_crashinfo *ci, const char *fmt, ...)
{
    size_t n = strlen(ci->warnings);
    if (n + 8 >= sizeof ci->warnings)
        return;
    if (n > 0) {
        memcpy(ci->warnings + n, "; ", 3);
        n += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ci->warnings + n, sizeof ci->warnings - n, fmt, ap);
    va_end(ap);
}

static int rd(struct ci *c, uint64_t va, void *buf, size_t len)
{
    struct bm_err e = BM_ERR_INIT;
    return c->m->read(c->m->ctx, va, buf, len, &e);
}

static int rd64(struct ci *c, uint64_t va, uint64_t *v)
{
    *v = 0;
    return rd(c, va, v, 8);
}

static bool sym(struct ci *c, const struct win_off *o, uint64_t *va)
{
    *va = o->present ? c->kbase + o->value : 0;
    return o->present;
}

/* Queue len bytes for VA va in the dump's copy, one piece per page. A
 * guest may point a KPRCB's Context or KiBugCheckData at the KDBG: what
 * would overwrite the decoded block is refused. */
static int patch_virt(struct ci *c, uint64_t va, const void *bytes, size_t len)
{
    struct win_crashinfo *ci = c->out;
    if (c->kdbg_size != 0 && va < c->kdbg_va + c->kdbg_size && c->kdbg_va < va + len)
        return -1;
    const uint8_t *b = bytes;
    /* All pieces translate, or none is added. */
    size_t n0 = c->nraw, b0 = ci->nbytes;
    while (len > 0) {
        size_t piece = PAGE - (size_t)(va % PAGE);
        piece = piece < len ? piece : len;
        uint64_t pa;
        struct bm_err e = BM_ERR_INIT;
        if (c->nraw == WIN_CI_MAX_PATCHES || ci->nbytes + piece > sizeof ci->bytes ||
            c->m->to_phys(c->m->ctx, va, &pa, &e) < 0) {
            c->nraw = n0;
            ci->nbytes = b0;
            return -1;
        }
        memcpy(ci->bytes + ci->nbytes, b, piece);
        c->raw[c->nraw++] = (struct win_patch){ pa, (uint32_t)piece, (uint32_t)ci->nbytes };
        ci->nbytes += piece;
        va += piece;
        b += piece;
        len -= piece;
    }
    return 0;
}

static int by_pa(const void *a, const void *b)
{
    const struct win_patch *x = a, *y = b;
    if (x->pa != y->pa)
        return x->pa < y->pa ? -1 : 1;
    return x->at < y->at ? -1 : x->at > y->at; /* the order added */
}

/* Sorted and disjoint: overlapping patches become one, the later bytes
 * winning (two CONTEXTs at one address, say). */
static void finish_patches(struct ci *c)
{
    struct win_crashinfo *ci = c->out;
    struct win_patch *r = c->raw;
    size_t n = c->nraw;
    qsort(r, n, sizeof r[0], by_pa);
    uint8_t merged[WIN_CI_PATCH_BYTES]; /* 64 KiB of stack: no static, threads dump at once */
    size_t mbytes = 0;
    ci->npatches = 0;
    for (size_t i = 0; i < n;) {
        uint64_t start = r[i].pa, end = r[i].pa + r[i].len;
        size_t j = i + 1;
        for (; j < n && r[j].pa < end; j++)
            end = r[j].pa + r[j].len > end ? r[j].pa + r[j].len : end;
        /* r[i..j) overlap; apply them in the order they were added. */
        uint8_t *dst = merged + mbytes;
        for (uint32_t at = 0;; at++) {
            /* The lowest `at` not yet applied: a small n, a small loop. */
            size_t next = j;
            for (size_t k = i; k < j; k++)
                if (r[k].at >= at && (next == j || r[k].at < r[next].at))
                    next = k;
            if (next == j)
                break;
            memcpy(dst + (r[next].pa - start), ci->bytes + r[next].at, r[next].len);
            at = r[next].at;
        }
        ci->patch[ci->npatches++] = (struct win_patch){ start, (uint32_t)(end - start),
                                                        (uint32_t)mbytes };
        mbytes += end - start;
        i = j;
    }
    memcpy(ci->bytes, merged, mbytes);
    ci->nbytes = mbytes;
}

int win_context_build(const struct win_profile *prof, const struct vmi_regs *r,
                      uint8_t ctx[WIN_CONTEXT_SIZE])
{
    memset(ctx, 0, WIN_CONTEXT_SIZE);
    for (int i = 0; i < WCTX_N; i++)
        if (!prof->context[i].present || prof->context[i].value + 8 > WIN_CONTEXT_SIZE)
            return -1;
#define PUT(f, v, w)                                                   \
    do {                                                               \
        uint64_t v_ = (v);                                             \
        memcpy(ctx + prof->context[f].value, &v_, (w));                \
    } while (0)
    PUT(WCTX_FLAGS, CONTEXT_FLAGS, 4);
    PUT(WCTX_MXCSR, MXCSR_DEFAULT, 4);
    PUT(WCTX_SEG_CS, r->cs, 2);
    PUT(WCTX_SEG_SS, r->ss, 2);
    PUT(WCTX_SEG_DS, SEL_DATA, 2);
    PUT(WCTX_SEG_ES, SEL_DATA, 2);
    PUT(WCTX_SEG_GS, SEL_DATA, 2);
    PUT(WCTX_SEG_FS, SEL_TEB, 2);
    PUT(WCTX_EFLAGS, r->rflags, 4);
    PUT(WCTX_RAX, r->rax, 8);
    PUT(WCTX_RCX, r->rcx, 8);
    PUT(WCTX_RDX, r->rdx, 8);
    PUT(WCTX_RBX, r->rbx, 8);
    PUT(WCTX_RSP, r->rsp, 8);
    PUT(WCTX_RBP, r->rbp, 8);
    PUT(WCTX_RSI, r->rsi, 8);
    PUT(WCTX_RDI, r->rdi, 8);
    PUT(WCTX_R8, r->r8, 8);
    PUT(WCTX_R9, r->r9, 8);
    PUT(WCTX_R10, r->r10, 8);
    PUT(WCTX_R11, r->r11, 8);
    PUT(WCTX_R12, r->r12, 8);
    PUT(WCTX_R13, r->r13, 8);
    PUT(WCTX_R14, r->r14, 8);
    PUT(WCTX_R15, r->r15, 8);
    PUT(WCTX_RIP, r->rip, 8);
#undef PUT
    /* The second MxCsr, inside FltSave, must equal the first. */
    uint64_t at = prof->context[WCTX_FLTSAVE].value + prof->context[WCTX_FLTSAVE_MXCSR].value;
    if (at + 4 > WIN_CONTEXT_SIZE)
        return -1;
    uint32_t mx = MXCSR_DEFAULT;
    memcpy(ctx + at, &mx, 4);
    return 0;
}

/* The KDBG: found, decoded, and (when it was encoded) decoded in the dump. */
static void kdbg(struct ci *c, struct win_kdbg *kd, bool *ok)
{
    const struct win_profile *p = c->prof;
    struct win_crashinfo *ci = c->out;
    *ok = false;
    uint64_t va, flag_va = 0;
    if (!sym(c, &p->KdDebuggerDataBlock, &va)) {
        warn(ci, "KdDebuggerDataBlock: not in the profile (header field 0, KDBG not decoded)");
        return;
    }
    struct win_kdbg_key key, *kp = NULL;
    uint8_t flag = 0;
    if (sym(c, &p->KdpDataBlockEncoded, &flag_va) && rd(c, flag_va, &flag, 1) < 0)
        warn(ci, "KdpDataBlockEncoded at %#" PRIx64 " unreadable: KDBG taken as plain", flag_va);
    if (flag != 0) {
        uint64_t wn_va, wa_va;
        if (!sym(c, &p->KiWaitNever, &wn_va) || !sym(c, &p->KiWaitAlways, &wa_va) ||
            rd64(c, wn_va, &key.wait_never) < 0 || rd64(c, wa_va, &key.wait_always) < 0) {
            warn(ci, "KdDebuggerDataBlock: encoded, but KiWaitNever/KiWaitAlways cannot be read "
                 "(header field 0, KDBG not decoded)");
            return;
        }
        key.flag_va = flag_va;
        kp = &key;
    }
    struct bm_err e = BM_ERR_INIT;
    if (win_kdbg_read(c->m->read, c->m->ctx, va, kp, c->kbase, kd, &e) < 0) {
        warn(ci, "%s (header field KdDebuggerDataBlock 0, KDBG not decoded)", bm_err_msg(&e));
        return;
    }
    if (kp != NULL) {
        uint8_t zero = 0;
        size_t n0 = c->nraw, b0 = ci->nbytes;
        if (patch_virt(c, va, kd->bytes, kd->size) < 0 || patch_virt(c, flag_va, &zero, 1) < 0) {
            c->nraw = n0;
            ci->nbytes = b0;
            warn(ci, "KdDebuggerDataBlock: decoded, but its pages are not guest RAM: the dump "
                 "cannot hold it decoded (header field 0)");
            return;
        }
    }
    *ok = true;
    ci->kdbg = va;
    ci->kdbg_was_encoded = kp != NULL;
    c->kdbg_va = va;
    c->kdbg_size = kd->size;
}

/* A KPRCB of vCPU i: KiProcessorBlock[i], else its KPCR's Prcb. */
static uint64_t prcb_of(struct ci *c, const struct win_kdbg *kd, bool have_kd,
                        const struct win_vcpu *v, unsigned i)
{
    const struct win_profile *p = c->prof;
    uint64_t arr = 0, prcb = 0;
    if (!sym(c, &p->KiProcessorBlock, &arr) && have_kd)
        arr = kd->ki_processor_block;
    if (arr >= KERNEL_MIN && rd64(c, arr + 8ull * i, &prcb) == 0 && prcb >= KERNEL_MIN)
        return prcb;
    uint64_t kpcr = (v->regs.cs & 3) == 0 ? v->regs.gs_base : v->regs.kernel_gs_base;
    if (kpcr >= KERNEL_MIN && p->kpcr_prcb.present)
        return kpcr + p->kpcr_prcb.value;
    return 0;
}

/* Each vCPU's CONTEXT where Windows keeps it: in Prcb.ProcessorState
 * .ContextFrame (what KiFreezeTargetExecution saves for the other
 * processors) and at *Prcb.Context (what the debugger and QEMU's writer
 * use). The crashing vCPU's ContextFrame is left as it is when it already
 * holds a frame: KeBugCheckEx captured it there before calling KeBugCheck2,
 * and Windows' own dump has that. */
static void contexts(struct ci *c, const struct win_kdbg *kd, bool have_kd,
                     const struct win_vcpu *vcpu, unsigned nvcpu, unsigned crash)
{
    const struct win_profile *p = c->prof;
    struct win_crashinfo *ci = c->out;
    uint8_t ctx[WIN_CONTEXT_SIZE];
    for (unsigned i = 0; i < nvcpu; i++) {
        if (!vcpu[i].valid) {
            warn(ci, "vCPU %u: registers unreadable, no CONTEXT in its KPRCB", i);
            continue;
        }
        if (win_context_build(p, &vcpu[i].regs, ctx) < 0) {
            warn(ci, "the profile lacks _CONTEXT members: no CONTEXT in the KPRCBs");
            return;
        }
        uint64_t prcb = prcb_of(c, kd, have_kd, &vcpu[i], i);
        if (prcb == 0) {
            warn(ci, "vCPU %u: no KPRCB (KiProcessorBlock[%u] and its KPCR unusable)", i, i);
            continue;
        }
        unsigned put = 0;
        uint64_t frame = 0;
        if (p->kprcb_processor_state.present && p->kprocessor_state_context_frame.present) {
            frame = prcb + p->kprcb_processor_state.value + p->kprocessor_state_context_frame.value;
            uint64_t captured = 0;
            if (i == crash && rd64(c, frame + p->context[WCTX_RIP].value, &captured) == 0 &&
                captured != 0)
                ci->crash_frame_kept = true;
            else
                put += patch_virt(c, frame, ctx, sizeof ctx) == 0;
        }
        uint64_t ptr = 0;
        if (p->kprcb_context.present && rd64(c, prcb + p->kprcb_context.value, &ptr) == 0 &&
            ptr >= KERNEL_MIN && ptr != frame)
            put += patch_virt(c, ptr, ctx, sizeof ctx) == 0;
        if (put == 0 && !(i == crash && ci->crash_frame_kept))
            warn(ci, "vCPU %u: KPRCB at %#" PRIx64 ": neither ProcessorState.ContextFrame nor "
                 "*Context could be placed", i, prcb);
        ci->contexts_written += put;
    }
}

static void kuser(struct ci *c)
{
    const struct win_profile *p = c->prof;
    struct win_crashinfo *ci = c->out;
    if (!p->kuser_system_time.present || !p->kuser_interrupt_time.present ||
        !p->kuser_product_type.present || !p->kuser_suite_mask.present) {
        warn(ci, "the profile lacks _KUSER_SHARED_DATA members: SystemTime, SystemUpTime, "
             "ProductType, SuiteMask are 0");
        return;
    }
    /* KSYSTEM_TIME: LowPart, High1Time (then High2Time). */
    uint64_t st, it;
    uint32_t pt, sm;
    if (rd64(c, KUSER_VA + p->kuser_system_time.value, &st) < 0 ||
        rd64(c, KUSER_VA + p->kuser_interrupt_time.value, &it) < 0 ||
        rd(c, KUSER_VA + p->kuser_product_type.value, &pt, 4) < 0 ||
        rd(c, KUSER_VA + p->kuser_suite_mask.value, &sm, 4) < 0) {
        warn(ci, "KUSER_SHARED_DATA at %#llx unreadable: SystemTime, SystemUpTime, ProductType, "
             "SuiteMask are 0", KUSER_VA);
        return;
    }
    ci->system_time = st;
    ci->interrupt_time = it;
    ci->product_type = pt;
    ci->suite_mask = sm;
}

static void version(struct ci *c)
{
    const struct win_profile *p = c->prof;
    struct win_crashinfo *ci = c->out;
    uint64_t va;
    uint16_t major, minor;
    if (!sym(c, &p->KdVersionBlock, &va) || !p->dbgkd_major_version.present ||
        !p->dbgkd_minor_version.present ||
        rd(c, va + p->dbgkd_major_version.value, &major, 2) < 0 ||
        rd(c, va + p->dbgkd_minor_version.value, &minor, 2) < 0) {
        warn(ci, "KdVersionBlock unreadable or not in the profile: MajorVersion and MinorVersion "
             "are 0");
        return;
    }
    ci->major_version = major;
    ci->minor_version = minor;
    if (p->dbgkd_kd_secondary_version.present)
        rd(c, va + p->dbgkd_kd_secondary_version.value, &ci->kd_secondary_version, 1);
}

static void system_dtb(struct ci *c, const struct win_vcpu *crash)
{
    const struct win_profile *p = c->prof;
    struct win_crashinfo *ci = c->out;
    uint64_t va, proc, dtb = 0;
    if (sym(c, &p->PsInitialSystemProcess, &va) && p->kprocess_dtb.present &&
        rd64(c, va, &proc) == 0 && proc >= KERNEL_MIN &&
        rd64(c, proc + (p->eprocess_pcb.present ? p->eprocess_pcb.value : 0) +
                    p->kprocess_dtb.value, &dtb) == 0 &&
        (dtb & ~0xfffull) != 0 && dtb < (1ull << 52)) {
        ci->dtb = dtb & ~0xfffull;
        return;
    }
    ci->dtb = crash->regs.cr3 & 0x000ffffffffff000ull;
    warn(ci, "the System process's DirectoryTableBase unreadable: DirectoryTableBase is the "
         "crashing vCPU's CR3");
}

void win_crashinfo_build(const struct win_mem *m, const struct win_profile *prof,
                         uint64_t kernel_base, const struct win_vcpu *vcpu, unsigned nvcpu,
                         unsigned crash, uint64_t code, const uint64_t p[4],
                         struct win_crashinfo *ci)
{
    memset(ci, 0, sizeof *ci);
    struct ci c;
    memset(&c, 0, sizeof c);
    c.m = m;
    c.prof = prof;
    c.kbase = kernel_base;
    c.out = ci;
    if (nvcpu > WIN_CI_MAX_VCPUS) {
        warn(ci, "%u vCPUs: only the first %u get a CONTEXT", nvcpu, WIN_CI_MAX_VCPUS);
        nvcpu = WIN_CI_MAX_VCPUS;
    }
    const struct win_vcpu *cv = crash < nvcpu ? &vcpu[crash] : NULL;

    struct win_kdbg kd;
    memset(&kd, 0, sizeof kd);
    bool have_kd = false;
    kdbg(&c, &kd, &have_kd);

    uint64_t va;
    if (sym(&c, &prof->PsLoadedModuleList, &va) || (have_kd && (va = kd.ps_loaded_module_list)))
        ci->ps_loaded_module_list = va;
    else
        warn(ci, "PsLoadedModuleList: not in the profile, no KDBG: 0");
    if (sym(&c, &prof->PsActiveProcessHead, &va) || (have_kd && (va = kd.ps_active_process_head)))
        ci->ps_active_process_head = va;
    else
        warn(ci, "PsActiveProcessHead: not in the profile, no KDBG: 0");
    if (!sym(&c, &prof->MmPfnDatabase, &va) && have_kd)
        va = kd.mm_pfn_database;
    if (va == 0 || rd64(&c, va, &ci->pfn_database) < 0)
        warn(ci, "MmPfnDatabase unreadable: PfnDatabase is 0");

    uint32_t n = 0;
    if (sym(&c, &prof->KeNumberProcessors, &va) && rd(&c, va, &n, 4) == 0 && n == nvcpu) {
        ci->nprocs = n;
    } else {
        ci->nprocs = nvcpu;
        if (va == 0 || n == 0)
            warn(ci, "KeNumberProcessors unreadable: NumberProcessors is the vCPU count %u", nvcpu);
        else
            warn(ci, "KeNumberProcessors is %" PRIu32 " but the VM has %u vCPUs: "
                 "NumberProcessors is %u", n, nvcpu, nvcpu);
    }
    version(&c);
    kuser(&c);
    if (cv != NULL && cv->valid) {
        system_dtb(&c, cv);
        if (win_context_build(prof, &cv->regs, ci->context) < 0)
            warn(ci, "the profile lacks _CONTEXT members: ContextRecord is 0");
        ci->exception_code = STATUS_BREAKPOINT;
        ci->exception_flags = EXCEPTION_NONCONTINUABLE;
        ci->exception_address = cv->regs.rip;
    } else {
        warn(ci, "the crashing vCPU's registers are unknown: DirectoryTableBase, ContextRecord "
             "and the exception are 0");
    }

    /* KiBugCheckData as KeBugCheck2 fills it: the code (a ULONG: RCX's
     * upper half is not part of it), then P1..P4. */
    uint64_t bcd[5] = { (uint32_t)code, p[0], p[1], p[2], p[3] };
    if (!sym(&c, &prof->KiBugCheckData, &va) && have_kd)
        va = kd.ki_bugcheck_data;
    if (va >= KERNEL_MIN && patch_virt(&c, va, bcd, sizeof bcd) == 0)
        ci->bugcheck_data_filled = true;
    else
        warn(ci, "KiBugCheckData: %s: not filled in the dump",
             va == 0 ? "not in the profile, no KDBG" : "not guest RAM, or on the KDBG");

    contexts(&c, &kd, have_kd, vcpu, nvcpu, crash);
    finish_patches(&c);
}

/* ---- over a stopped guest ------------------------------------------------- */

struct guest_as {
    struct paging pg;
    const struct vmi *v;
};

static int pg_read(void *ctx, uint64_t va, void *buf, size_t len, struct bm_err *err)
{
    struct guest_as *g = ctx;
    return paging_read_virt(&g->pg, va, buf, len, err);
}

/* Only into RAM: a page table may point anywhere (device memory, past the
 * end), and the dump holds RAM alone. */
static int pg_phys(void *ctx, uint64_t va, uint64_t *pa, struct bm_err *err)
{
    struct guest_as *g = ctx;
    struct paging_xlat x;
    if (paging_translate(&g->pg, va, &x, err) < 0)
        return -1;
    const struct vmi_range *r;
    size_t n = vmi_ram_ranges(g->v, &r);
    uint64_t page = x.pa & ~(uint64_t)(PAGE - 1);
    for (size_t i = 0; i < n; i++)
        if (page >= r[i].start && r[i].end >= page && r[i].end - page >= PAGE - 1) {
            *pa = x.pa;
            return 0;
        }
    return bm_err_set(err, "VA %#" PRIx64 " maps to %#" PRIx64 ", not guest RAM", va, x.pa);
}

int win_crashinfo_collect(const struct vmi *v, const struct win_kernel *k, unsigned crash,
                          const struct vmi_regs *crash_regs, uint64_t code, const uint64_t p[4],
                          struct win_crashinfo *ci, struct bm_err *err)
{
    if (!k->has_profile)
        return bm_err_set(err, "no symbol profile: a Windows crash dump needs one (-r or "
                          "--symbols-dir)");
    unsigned n = vmi_vcpu_count(v);
    if (n == 0 || crash >= n)
        return bm_err_set(err, "vCPU %u of %u: no such vCPU", crash, n);
    struct win_vcpu vcpu[WIN_CI_MAX_VCPUS];
    memset(vcpu, 0, sizeof vcpu);
    unsigned nv = n < WIN_CI_MAX_VCPUS ? n : WIN_CI_MAX_VCPUS;
    if (crash >= nv)
        return bm_err_set(err, "vCPU %u: more than %u vCPUs", crash, WIN_CI_MAX_VCPUS);
    for (unsigned i = 0; i < nv; i++) {
        struct bm_err e = BM_ERR_INIT;
        if (i == crash && crash_regs != NULL) {
            vcpu[i].regs = *crash_regs;
            vcpu[i].valid = true;
            continue;
        }
        vcpu[i].valid = vmi_get_regs(v, i, &vcpu[i].regs, i == crash ? err : &e) == 0;
        if (i == crash && !vcpu[i].valid)
            return -1;
    }
    struct guest_as g;
    memset(&g, 0, sizeof g);
    g.v = v;
    if (vmi_paging(v, &vcpu[crash].regs, vcpu[crash].regs.cr3, &g.pg, err) < 0)
        return -1;
    struct win_mem m = { pg_read, pg_phys, &g };
    win_crashinfo_build(&m, &k->prof, k->base, vcpu, n, crash, code, p, ci);
    return 0;
}
