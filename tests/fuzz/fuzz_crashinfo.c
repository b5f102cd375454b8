/* fuzz_crashinfo.c - the Windows facts of a crash dump (win/kdbg.c,
 * win/crashinfo.c: KDBG decoding, KiProcessorBlock and KPRCB reading, the
 * CONTEXT placement, KUSER_SHARED_DATA) over fuzzed guest memory, and the
 * dump writer's check and application of the patches that come out.
 *
 * Input: 1 byte vCPU count (1..8) and crashing vCPU, 4 bytes hole mask
 * (bit i: page i unreadable and untranslatable), then the memory: the
 * kernel image from KBASE (identity-offset physical addresses). The
 * profile is that of a Windows 10 kernel, with its symbols moved into the
 * first pages so the fuzzer reaches them; the vCPUs' GS bases point into
 * the memory too. Oracles: never a crash or an unbounded loop; warnings a
 * NUL-terminated string; the patches sorted, disjoint, within a page and
 * inside the memory, accepted by dump_dmp_check and applied exactly; a KDBG
 * is reported only when the dump's copy holds it decoded ('KDBG', KernBase
 * = KBASE), whatever else the guest points at it.
 */
#include "fuzz.h"
#include "dump/dump.h"
#include "win/crashinfo.h"
#include "win/kdbg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define KBASE UINT64_C(0xfffff80312400000)
#define PAGE 4096u

/* As the page walker with RAM ranges does: the VA's whole page is memory. */
static int mem_phys(void *ctx, uint64_t va, uint64_t *pa, struct bm_err *err)
{
    struct fuzz_mem *m = ctx;
    static uint8_t page[PAGE];
    if (fuzz_mem_read(m, va & ~(uint64_t)(PAGE - 1), page, PAGE, err) < 0)
        return -1;
    *pa = va - m->base;
    return 0;
}

static struct win_profile prof;

static void set(struct win_off *o, uint64_t v)
{
    o->value = v;
    o->present = true;
}

static void profile_init(void)
{
    if (prof.KdDebuggerDataBlock.present)
        return;
    set(&prof.KdDebuggerDataBlock, 0x100);
    set(&prof.KdpDataBlockEncoded, 0x4f0);
    set(&prof.KiWaitNever, 0x4f8);
    set(&prof.KiWaitAlways, 0x500);
    set(&prof.KiProcessorBlock, 0x508);
    set(&prof.KiBugCheckData, 0x550);
    set(&prof.MmPfnDatabase, 0x580);
    set(&prof.PsInitialSystemProcess, 0x588);
    set(&prof.KdVersionBlock, 0x590);
    set(&prof.KeNumberProcessors, 0x5c0);
    set(&prof.PsActiveProcessHead, 0x5d0);
    set(&prof.PsLoadedModuleList, 0x5e0);
    set(&prof.kpcr_prcb, 0x180);
    set(&prof.kprcb_context, 0x300);
    set(&prof.kprcb_processor_state, 0x40);
    set(&prof.kprocessor_state_context_frame, 0xe0);
    set(&prof.eprocess_pcb, 0);
    set(&prof.kprocess_dtb, 0x28);
    set(&prof.kuser_system_time, 0x14);
    set(&prof.kuser_interrupt_time, 0x8);
    set(&prof.kuser_product_type, 0x264);
    set(&prof.kuser_suite_mask, 0x2d0);
    set(&prof.dbgkd_major_version, 0);
    set(&prof.dbgkd_minor_version, 2);
    set(&prof.dbgkd_kd_secondary_version, 5);
    /* The x64 CONTEXT. */
    static const uint16_t ctx[WCTX_N] = { 0x30, 0x34, 0x38, 0x3a, 0x3c, 0x3e, 0x40, 0x42, 0x44,
                                          0x78, 0x80, 0x88, 0x90, 0x98, 0xa0, 0xa8, 0xb0, 0xb8,
                                          0xc0, 0xc8, 0xd0, 0xd8, 0xe0, 0xe8, 0xf0, 0xf8, 0x100,
                                          0x18 };
    for (int i = 0; i < WCTX_N; i++)
        set(&prof.context[i], ctx[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5)
        return 0;
    profile_init();
    unsigned nvcpu = 1 + (data[0] & 7), crash = (data[0] >> 3) % nvcpu;
    struct fuzz_mem mem = { .data = data + 5, .size = size - 5, .base = KBASE,
                            .holes = fuzz_le32(data + 1) };
    struct win_mem m = { fuzz_mem_read, mem_phys, &mem };
    static struct win_vcpu v[8];
    memset(v, 0, sizeof v);
    for (unsigned i = 0; i < nvcpu; i++) {
        v[i].valid = i != 7;
        v[i].regs.rip = KBASE + 0x1000 + i;
        v[i].regs.rsp = KBASE + 0x2000 - 8 * i;
        v[i].regs.cs = 0x10;
        v[i].regs.cr3 = 0x1aa000;
        v[i].regs.gs_base = KBASE + 0x800 * i;
    }
    const uint64_t p[4] = { 1, 2, 3, 4 };
    static struct win_crashinfo ci;
    win_crashinfo_build(&m, &prof, KBASE, v, nvcpu, crash, 0x50, p, &ci);

    FUZZ_CHECK(strnlen(ci.warnings, sizeof ci.warnings) < sizeof ci.warnings);
    FUZZ_CHECK(mem.bytes < 64u << 20);                 /* bounded work per input */
    FUZZ_CHECK(ci.npatches <= WIN_CI_MAX_PATCHES && ci.nbytes <= sizeof ci.bytes);
    FUZZ_CHECK(ci.nprocs == nvcpu);
    for (size_t i = 0; i < ci.npatches; i++) {
        const struct win_patch *q = &ci.patch[i];
        FUZZ_CHECK(q->len > 0 && q->pa % PAGE + q->len <= PAGE);
        FUZZ_CHECK(q->pa + q->len <= mem.size);
        FUZZ_CHECK((uint64_t)q->at + q->len <= ci.nbytes);
        if (i > 0)
            FUZZ_CHECK(q->pa >= ci.patch[i - 1].pa + ci.patch[i - 1].len);
    }
    if (ci.kdbg != 0) {
        FUZZ_CHECK(ci.kdbg == KBASE + prof.KdDebuggerDataBlock.value);
        /* The block as the dump will hold it: decoded, tag and base right. */
        uint8_t head[0x20];
        struct bm_err e = BM_ERR_INIT;
        FUZZ_CHECK(fuzz_mem_read(&mem, ci.kdbg, head, sizeof head, &e) == 0);
        uint64_t pa = ci.kdbg - KBASE;
        for (size_t i = 0; i < ci.npatches; i++)
            for (uint64_t b = 0; b < sizeof head; b++)
                if (pa + b >= ci.patch[i].pa && pa + b < ci.patch[i].pa + ci.patch[i].len)
                    head[b] = ci.bytes[ci.patch[i].at + (pa + b - ci.patch[i].pa)];
        FUZZ_CHECK(memcmp(head + 0x10, "KDBG", 4) == 0);
        uint64_t base;
        memcpy(&base, head + 0x18, 8);
        FUZZ_CHECK(base == KBASE);
    }
    if (mem.size == 0 || ci.npatches == 0)
        return 0;

    /* The writer's side: the patches pass its check and land exactly. */
    struct dump_range r = { 0, mem.size - 1 };
    struct dump_source src = { &r, 1, NULL, NULL, NULL };
    static struct dump_patch dp[WIN_CI_MAX_PATCHES];
    for (size_t i = 0; i < ci.npatches; i++)
        dp[i] = (struct dump_patch){ ci.patch[i].pa, ci.patch[i].len, ci.bytes + ci.patch[i].at };
    static struct dump_dmp dd;
    dd.patches = dp;
    dd.npatches = ci.npatches;
    struct bm_err e = BM_ERR_INIT;
    FUZZ_CHECK(dump_dmp_check(&dd, &src, &e) == 0);
    uint64_t first = dp[0].pa & ~(uint64_t)(PAGE - 1);
    static uint8_t page[PAGE];
    size_t cur = 0;
    FUZZ_CHECK(dump_dmp_touches(&dd, &cur, first, PAGE) && cur == 0);
    memset(page, 0, sizeof page);
    dump_dmp_apply(&dd, cur, first, page, PAGE);
    FUZZ_CHECK(memcmp(page + (dp[0].pa - first), dp[0].bytes, dp[0].len) == 0);
    return 0;
}
