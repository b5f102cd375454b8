/* Unit tests of win/kdbg and win/crashinfo over an in-memory kernel laid
 * out from each shared ISF (the profile bsodmon loads; the expected values
 * are written down here independently: the x64 CONTEXT layout of winnt.h,
 * the KDDEBUGGER_DATA64 offsets, the encoding of Windows 8+):
 *  - the KDBG encoding round-trips and decodes a block encoded here;
 *  - a complete guest gives every header fact with no warning, and patches
 *    that decode the KDBG in place, clear KdpDataBlockEncoded, fill
 *    KiBugCheckData and put each vCPU's CONTEXT in its KPRCB (both places);
 *  - a guest without a KDBG (all zero), with a garbage KDBG, with
 *    KernBase lying, with unreadable pages: zeros and warnings, no failure;
 *    nothing from the guest sizes anything. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "win/crashinfo.h"
#include "win/kdbg.h"
#include "win/profile.h"

#define KBASE 0xfffff80312400000ull
#define KSIZE (16u << 20)
#define KPA 0x1000000ull            /* the kernel region's physical address */
#define KUSER 0xfffff78000000000ull
#define KUSER_PA 0x3000ull
#define PRCB0 (KBASE + 0xe00000)    /* vCPU i's KPRCB: PRCB0 + i * 0x20000 */
#define CTXP0 (KBASE + 0xf00000)    /* vCPU i's *Prcb->Context */
#define EPROC (KBASE + 0xf80000)

static const char *const guids[] = {
    "22597D0B40394E23936F6A24C6C52D5B", "339E74133576439CBCDF7E0229DA3773",
    "8B11040A5928757B11390AC78F6B6925", "FC57F1C841C2C3F793D57AC134DC0EFA",
    "32C1A669D5FFEFD41091F636CFDB6E99",
};

struct guest {
    uint8_t *k;                     /* KSIZE bytes at KBASE */
    uint8_t kuser[4096];
    bool kuser_mapped;
    uint64_t hole;                  /* a VA page that does not translate, or 0 */
};

static int g_read(void *ctx, uint64_t va, void *buf, size_t len, struct bm_err *err)
{
    struct guest *g = ctx;
    for (uint64_t p = va & ~0xfffull; p < va + len; p += 4096)
        if (g->hole && p == g->hole)
            return bm_err_set(err, "hole at %#llx", (unsigned long long)va);
    if (va >= KBASE && va - KBASE <= KSIZE && len <= KSIZE - (va - KBASE)) {
        memcpy(buf, g->k + (va - KBASE), len);
        return 0;
    }
    if (g->kuser_mapped && va >= KUSER && va - KUSER + len <= 4096) {
        memcpy(buf, g->kuser + (va - KUSER), len);
        return 0;
    }
    return bm_err_set(err, "not mapped: %#llx", (unsigned long long)va);
}

static int g_phys(void *ctx, uint64_t va, uint64_t *pa, struct bm_err *err)
{
    struct guest *g = ctx;
    if (g->hole && (va & ~0xfffull) == g->hole)
        return bm_err_set(err, "hole");
    if (va >= KBASE && va - KBASE < KSIZE) {
        *pa = KPA + (va - KBASE);
        return 0;
    }
    if (g->kuser_mapped && va >= KUSER && va - KUSER < 4096) {
        *pa = KUSER_PA + (va - KUSER);
        return 0;
    }
    return bm_err_set(err, "not mapped");
}

static void put(struct guest *g, uint64_t va, uint64_t v, int n)
{
    memcpy(g->k + (va - KBASE), &v, (size_t)n);
}

static uint64_t get(const uint8_t *p, int n)
{
    uint64_t v = 0;
    memcpy(&v, p, (size_t)n);
    return v;
}

static void load(const char *guid, struct win_profile *prof)
{
    char path[600];
    snprintf(path, sizeof path, "%s/symbols/windows/ntkrnlmp.pdb/%s-1.json.xz",
             getenv("SHARED_DIR"), guid);
    struct bm_err err = BM_ERR_INIT;
    if (profile_load(path, prof, &err) < 0)
        fail_msg("%s", bm_err_msg(&err));
}

#define SYM(n) (KBASE + prof->n.value)

static const struct win_kdbg_key key = { 0x9c3f5e1d2b4a6078ull, 0x1122334455667788ull, 0 };

/* A complete guest: every structure crashinfo reads, the KDBG encoded (or
 * plain), two vCPUs. Returns the plain KDBG it stored. */
static void build(struct guest *g, const struct win_profile *prof, bool encoded,
                  uint8_t kdbg[0x368])
{
    memset(g->k, 0, KSIZE);
    memset(g->kuser, 0, sizeof g->kuser);
    g->kuser_mapped = true;
    g->hole = 0;
    memset(kdbg, 0, 0x368);
    uint32_t tag = WIN_KDBG_TAG, size = 0x368;
    memcpy(kdbg + 0x10, &tag, 4);
    memcpy(kdbg + 0x14, &size, 4);
    uint64_t v[][2] = { { 0x18, KBASE }, { 0x48, SYM(PsLoadedModuleList) },
                        { 0x50, SYM(PsActiveProcessHead) }, { 0x88, SYM(KiBugCheckData) },
                        { 0xc0, SYM(MmPfnDatabase) }, { 0x218, SYM(KiProcessorBlock) } };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        memcpy(kdbg + v[i][0], &v[i][1], 8);
    uint16_t ctxoff = (uint16_t)prof->kprcb_context.value;
    memcpy(kdbg + 0x338, &ctxoff, 2);
    struct win_kdbg_key k = key;
    k.flag_va = SYM(KdpDataBlockEncoded);
    for (unsigned off = 0; off < 0x368; off += 8) {
        uint64_t q = get(kdbg + off, 8);
        put(g, SYM(KdDebuggerDataBlock) + off, encoded ? win_kdbg_encode_qword(&k, q) : q, 8);
    }
    put(g, SYM(KdpDataBlockEncoded), encoded, 1);
    put(g, SYM(KiWaitNever), key.wait_never, 8);
    put(g, SYM(KiWaitAlways), key.wait_always, 8);
    for (unsigned i = 0; i < 2; i++) {
        put(g, SYM(KiProcessorBlock) + 8 * i, PRCB0 + i * 0x20000ull, 8);
        put(g, PRCB0 + i * 0x20000ull + prof->kprcb_context.value, CTXP0 + i * 0x1000ull, 8);
    }
    put(g, SYM(KeNumberProcessors), 2, 4);
    put(g, SYM(MmPfnDatabase), 0xffffe70000000000ull, 8);
    put(g, SYM(PsInitialSystemProcess), EPROC, 8);
    put(g, EPROC + prof->eprocess_pcb.value + prof->kprocess_dtb.value, 0x1ad002, 8);
    put(g, SYM(KdVersionBlock), 0xf, 2);
    put(g, SYM(KdVersionBlock) + 2, 19041, 2);
    uint64_t st = 0x01d9a1b2c3d4e5f6ull, it = 0x123456789ull;
    memcpy(g->kuser + prof->kuser_system_time.value, &st, 8);
    memcpy(g->kuser + prof->kuser_interrupt_time.value, &it, 8);
    uint32_t pt = 1, sm = 0x110;
    memcpy(g->kuser + prof->kuser_product_type.value, &pt, 4);
    memcpy(g->kuser + prof->kuser_suite_mask.value, &sm, 4);
}

static void vcpus(struct win_vcpu v[2])
{
    memset(v, 0, 2 * sizeof v[0]);
    for (unsigned i = 0; i < 2; i++) {
        v[i].valid = true;
        struct vmi_regs *r = &v[i].regs;
        r->rip = KBASE + 0x5118b0 + i;
        r->rsp = 0xfffff88012345670ull - 0x100 * i;
        r->rax = 0x1111 + i;
        r->rcx = 0x50;
        r->r15 = 0xf15f15 + i;
        r->rflags = 0x246;
        r->cs = 0x10;
        r->ss = 0x18;
        r->cr3 = 0x1ad000 + 0x1000 * i;
        r->gs_base = PRCB0 + i * 0x20000ull - 0x180;
    }
}

/* The bytes a patch list gives to VA va (from its physical address). */
static bool patched(const struct win_crashinfo *ci, uint64_t pa, uint8_t *out, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        bool found = false;
        for (size_t j = 0; j < ci->npatches && !found; j++)
            if (pa + i >= ci->patch[j].pa && pa + i < ci->patch[j].pa + ci->patch[j].len) {
                out[i] = ci->bytes[ci->patch[j].at + (pa + i - ci->patch[j].pa)];
                found = true;
            }
        if (!found)
            return false;
    }
    return true;
}

/* The x64 CONTEXT of winnt.h at fixed offsets. */
static void check_context(const uint8_t *c, const struct vmi_regs *r)
{
    assert_int_equal(get(c + 0x30, 4), 0x100007);
    assert_int_equal(get(c + 0x34, 4), get(c + 0x100 + 0x18, 4)); /* MxCsr == FltSave.MxCsr */
    assert_int_equal(get(c + 0x34, 4), 0x1f80);
    assert_int_equal(get(c + 0x38, 2), r->cs);
    assert_int_equal(get(c + 0x42, 2), r->ss);
    assert_int_equal(get(c + 0x3a, 2), 0x2b);
    assert_int_equal(get(c + 0x44, 4), r->rflags);
    assert_int_equal(get(c + 0x78, 8), r->rax);
    assert_int_equal(get(c + 0x80, 8), r->rcx);
    assert_int_equal(get(c + 0x98, 8), r->rsp);
    assert_int_equal(get(c + 0xf0, 8), r->r15);
    assert_int_equal(get(c + 0xf8, 8), r->rip);
}

static void test_encoding(void **state)
{
    (void)state;
    struct win_kdbg_key k = key;
    k.flag_va = 0xfffff80312a3d7f8ull;
    uint64_t x = 0x123456789abcdef0ull;
    for (int i = 0; i < 10000; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        k.wait_never = x ^ (x >> 7);
        assert_int_equal(win_kdbg_decode_qword(&k, win_kdbg_encode_qword(&k, x)), x);
    }
    /* A known value: the decode of the note (elf2dmp's order of steps). */
    k.wait_never = 0x10;
    k.wait_always = 0;
    k.flag_va = 0;
    uint64_t stored = win_kdbg_encode_qword(&k, 0x4742444b00000368ull);
    uint64_t v = stored ^ 0x10;
    v = (v << 16) | (v >> 48);
    assert_int_equal(__builtin_bswap64(v), 0x4742444b00000368ull);
}

static void test_complete(void **state)
{
    (void)state;
    struct guest g = { .k = malloc(KSIZE) };
    struct win_mem m = { g_read, g_phys, &g };
    static struct win_profile prof_;
    struct win_profile *prof = &prof_;
    static struct win_crashinfo ci;
    for (size_t n = 0; n < sizeof guids / sizeof guids[0]; n++)
        for (int enc = 0; enc < 2; enc++) {
            load(guids[n], prof);
            uint8_t kdbg[0x368];
            build(&g, prof, enc, kdbg);
            struct win_vcpu v[2];
            vcpus(v);
            const uint64_t p[4] = { 0xfffff80012345678ull, 0, 0xfffff80087654321ull, 2 };
            win_crashinfo_build(&m, prof, KBASE, v, 2, 1, 0xdead000000000050ull, p, &ci);
            if (ci.warnings[0] != '\0')
                fail_msg("%s: %s", guids[n], ci.warnings);
            assert_int_equal(ci.kdbg, SYM(KdDebuggerDataBlock));
            assert_int_equal(ci.kdbg_was_encoded, enc);
            assert_int_equal(ci.dtb, 0x1ad000);
            assert_int_equal(ci.pfn_database, 0xffffe70000000000ull);
            assert_int_equal(ci.ps_loaded_module_list, SYM(PsLoadedModuleList));
            assert_int_equal(ci.ps_active_process_head, SYM(PsActiveProcessHead));
            assert_int_equal(ci.nprocs, 2);
            assert_int_equal(ci.major_version, 0xf);
            assert_int_equal(ci.minor_version, 19041);
            assert_int_equal(ci.system_time, 0x01d9a1b2c3d4e5f6ull);
            assert_int_equal(ci.interrupt_time, 0x123456789ull);
            assert_int_equal(ci.product_type, 1);
            assert_int_equal(ci.suite_mask, 0x110);
            assert_int_equal(ci.exception_code, 0x80000003u);
            assert_int_equal(ci.exception_address, v[1].regs.rip);
            check_context(ci.context, &v[1].regs);
            /* The patches, sorted and disjoint, each in one page. */
            for (size_t i = 0; i < ci.npatches; i++) {
                assert_true(ci.patch[i].len > 0 && ci.patch[i].pa % 4096 + ci.patch[i].len <= 4096);
                if (i > 0)
                    assert_true(ci.patch[i].pa >= ci.patch[i - 1].pa + ci.patch[i - 1].len);
            }
            uint8_t buf[0x4d0];
            /* KDBG decoded in place, the flag cleared (only when encoded). */
            uint64_t kpa = KPA + prof->KdDebuggerDataBlock.value;
            if (enc) {
                assert_true(patched(&ci, kpa, buf, 0x368));
                assert_memory_equal(buf, kdbg, 0x368);
                assert_true(patched(&ci, KPA + prof->KdpDataBlockEncoded.value, buf, 1));
                assert_int_equal(buf[0], 0);
            } else {
                assert_false(patched(&ci, kpa + 0x10, buf, 4));
            }
            /* KiBugCheckData: code, P1..P4. */
            assert_true(patched(&ci, KPA + prof->KiBugCheckData.value, buf, 40));
            assert_int_equal(get(buf, 8), 0x50);
            assert_int_equal(get(buf + 8, 8), p[0]);
            assert_int_equal(get(buf + 32, 8), p[3]);
            assert_true(ci.bugcheck_data_filled);
            /* Each vCPU's CONTEXT, in ProcessorState.ContextFrame and *Context. */
            assert_int_equal(ci.contexts_written, 4);
            for (unsigned i = 0; i < 2; i++) {
                uint64_t prcb = PRCB0 + i * 0x20000ull;
                uint64_t frame = prcb + prof->kprcb_processor_state.value +
                                 prof->kprocessor_state_context_frame.value;
                assert_true(patched(&ci, KPA + (frame - KBASE), buf, 0x4d0));
                check_context(buf, &v[i].regs);
                assert_true(patched(&ci, KPA + (CTXP0 + i * 0x1000ull - KBASE), buf, 0x4d0));
                check_context(buf, &v[i].regs);
            }
        }
    free(g.k);
}

static bool has(const struct win_crashinfo *ci, const char *what)
{
    return strstr(ci->warnings, what) != NULL;
}

static void test_broken(void **state)
{
    (void)state;
    struct guest g = { .k = malloc(KSIZE) };
    struct win_mem m = { g_read, g_phys, &g };
    static struct win_profile prof_;
    struct win_profile *prof = &prof_;
    static struct win_crashinfo ci;
    load(guids[3], prof);
    struct win_vcpu v[2];
    vcpus(v);
    const uint64_t p[4] = { 1, 2, 3, 4 };
    uint8_t kdbg[0x368];

    /* Nothing there (today's synthetic guest has no KDBG): a dump still. */
    memset(g.k, 0, KSIZE);
    g.kuser_mapped = false;
    g.hole = 0;
    win_crashinfo_build(&m, prof, KBASE, v, 2, 0, 0xe2, p, &ci);
    assert_int_equal(ci.kdbg, 0);
    assert_true(has(&ci, "KdDebuggerDataBlock"));
    assert_true(has(&ci, "KUSER_SHARED_DATA"));
    assert_true(has(&ci, "DirectoryTableBase"));
    assert_int_equal(ci.dtb, v[0].regs.cr3);
    assert_int_equal(ci.ps_active_process_head, SYM(PsActiveProcessHead)); /* the profile's */
    assert_int_equal(ci.nprocs, 2);
    assert_true(ci.bugcheck_data_filled);
    /* The KPRCBs from the KPCRs (GS base): the context frames still placed. */
    assert_int_equal(ci.contexts_written, 2);
    check_context(ci.context, &v[0].regs);

    /* Encoded with other keys: garbage once decoded. */
    build(&g, prof, true, kdbg);
    put(&g, SYM(KiWaitAlways), 0xdead, 8);
    win_crashinfo_build(&m, prof, KBASE, v, 2, 1, 0x50, p, &ci);
    assert_int_equal(ci.kdbg, 0);
    assert_true(has(&ci, "not 'KDBG'"));
    assert_false(patched(&ci, KPA + prof->KdpDataBlockEncoded.value, kdbg, 1));

    /* A plain KDBG claiming a huge size, or lying about KernBase. */
    build(&g, prof, false, kdbg);
    put(&g, SYM(KdDebuggerDataBlock) + 0x14, 0x7fffffff, 4);
    win_crashinfo_build(&m, prof, KBASE, v, 2, 1, 0x50, p, &ci);
    assert_int_equal(ci.kdbg, 0);
    assert_true(has(&ci, "size"));
    build(&g, prof, false, kdbg);
    put(&g, SYM(KdDebuggerDataBlock) + 0x18, KBASE + 0x200000, 8);
    win_crashinfo_build(&m, prof, KBASE, v, 2, 1, 0x50, p, &ci);
    assert_int_equal(ci.kdbg, 0);
    assert_true(has(&ci, "KernBase"));

    /* KeNumberProcessors disagreeing, KiBugCheckData's page not mapped, a
     * KiProcessorBlock entry pointing to user space, a vCPU unreadable. */
    build(&g, prof, true, kdbg);
    put(&g, SYM(KeNumberProcessors), 1000000, 4);
    put(&g, SYM(KiProcessorBlock), 0x1000, 8);
    g.hole = SYM(KiBugCheckData) & ~0xfffull;
    v[0].valid = false;
    win_crashinfo_build(&m, prof, KBASE, v, 2, 1, 0x50, p, &ci);
    assert_int_equal(ci.nprocs, 2);
    assert_true(has(&ci, "KeNumberProcessors is 1000000"));
    assert_true(has(&ci, "KiBugCheckData"));
    assert_false(ci.bugcheck_data_filled);
    assert_true(has(&ci, "vCPU 0: registers unreadable"));
    assert_int_equal(ci.contexts_written, 2);
    assert_true(strlen(ci.warnings) < sizeof ci.warnings);

    /* KeBugCheckEx's frame, captured in the crashing vCPU's ContextFrame,
     * stays as Windows left it; *Context gets the trap's. */
    build(&g, prof, true, kdbg);
    vcpus(v);
    uint64_t frame1 = PRCB0 + 0x20000ull + prof->kprcb_processor_state.value +
                      prof->kprocessor_state_context_frame.value;
    put(&g, frame1 + 0xf8, KBASE + 0x3f6c20, 8);
    win_crashinfo_build(&m, prof, KBASE, v, 2, 1, 0x50, p, &ci);
    assert_true(ci.crash_frame_kept);
    assert_int_equal(ci.contexts_written, 3);
    assert_false(patched(&ci, KPA + (frame1 - KBASE) + 0xf8, kdbg, 8));
    assert_true(patched(&ci, KPA + (CTXP0 + 0x1000 - KBASE), kdbg, 0x100));
    assert_int_equal(get(kdbg + 0xf8, 8), v[1].regs.rip);
    assert_string_equal(ci.warnings, "");

    /* No profile members for _CONTEXT: no context anywhere, said so. */
    for (int i = 0; i < WCTX_N; i++)
        prof->context[i].present = false;
    g.hole = 0;
    vcpus(v);
    win_crashinfo_build(&m, prof, KBASE, v, 2, 1, 0x50, p, &ci);
    assert_true(has(&ci, "_CONTEXT"));
    assert_int_equal(ci.contexts_written, 0);
    free(g.k);
}

int main(void)
{
    if (getenv("SHARED_DIR") == NULL) {
        fprintf(stderr, "SHARED_DIR is not set (run through meson test)\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encoding),
        cmocka_unit_test(test_complete),
        cmocka_unit_test(test_broken),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
