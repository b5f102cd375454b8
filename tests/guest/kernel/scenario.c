/* scenario.c - bug checks that crash the way Windows does, for bsodmon's
 * analysis (issue 15): scenario=NAME replaces the bugcheck= order with a
 * code and parameters that point at records built here, in the world
 * world_build made (its loaded modules and processes), and the truth line
 * gains "Analysis": what a correct analysis reports, from what was built.
 *
 *   irql       0xA at entry, IP inside a loaded driver (Windows reports 0xD1)
 *   kmode      0x1E, STATUS_ACCESS_VIOLATION at an IP in a driver
 *   thread     0x7E with an EXCEPTION_RECORD and a CONTEXT
 *   pagefault  0x50 with its KTRAP_FRAME (P3)
 *   fastfail   0x139 CORRUPT_LIST_ENTRY with a trap frame and exception record
 *   critical   0xEF, P1 an EPROCESS of the process list (csrss.exe)
 *   region     0x109, region type 0x1
 *   harderror  0x4C carrying STATUS_SYSTEM_PROCESS_TERMINATED
 *   nonpaged   0xA with the IP in ntoskrnl and P1 in a driver: Windows
 *              reports 0xD3 and names the driver (KiBugCheckDriver); the
 *              entry state cannot tell
 *   specialpool 0x50 from a driver on freed special pool: 0xD5, P3 the IP
 * Every scenario's reported code and parameters come from what the guest's
 * KeBugCheck2 stores (bugcheck_final, windata.c), which bsodmon reads after
 * following the bug check; the S.* flags below are what the entry state's
 * rules give, the truth when the follow cannot get there (nofollow).
 * Hostile (a partial analysis is right):
 *   tfunmapped 0x50 whose trap frame pointer is unmapped
 *   modloop    0xA, the module list loops before the driver holding the IP
 *   longname   0xA, that driver's BaseDllName.Length is 0xFFFE
 *   overlap    0xA, that driver's DllBase overlaps the module before it
 *   drvunmapped nonpaged, KiBugCheckDriver pointing to unmapped memory
 *   drvlong    nonpaged, KiBugCheckDriver's Length 0xFFFE
 *   nofollow   pagefault, but KeBugCheck2 takes ~0.8 s to get to its follow
 *              points: the event comes within bsodmon's bound, with the
 *              entry state's analysis
 */
#include "guest.h"

#include "lib.h"

#define SC_SUB_NONE (~0ull)

static struct {
    bool on;
    bool nofollow;
    int lie_driver;             /* 1: KiBugCheckDriver unmapped, 2: its Length 0xFFFE */
    u64 lie_ustr;
    bool has_reported, has_ip, has_mod, has_exc, has_proc, has_bucket;
    u64 reported, ip, sub, exc;
    const struct module *mod;
    const struct process *proc;
} S = { .sub = SC_SUB_NONE };

static bool is(const char *v, size_t n, const char *name)
{
    return strlen(name) == n && strncmp(v, name, n) == 0;
}

bool scenario_nofollow(void) { return S.nofollow; }

void scenario_lie_driver(u64 *driver)
{
    if (S.lie_driver)
        *driver = S.lie_ustr;
}

/* The loader entry of module i (walking the list the guest built). */
static u64 ldr_entry(unsigned i)
{
    u64 head = W.base + off("sym:PsLoadedModuleList");
    u64 links = off("off:ldr.InLoadOrderLinks");
    u64 l = *(volatile u64 *)head;
    for (unsigned k = 0; k < i; k++)
        l = *(volatile u64 *)l;
    return l - links;
}

static u64 drv_ip(unsigned i, u64 o)
{
    S.mod = &W.mods[i];
    S.has_mod = true;
    S.has_ip = true;
    S.ip = W.mods[i].base + o;
    return S.ip;
}

/* A kernel address nothing maps: under a PML4 entry of System that is empty
 * (not the self-map, whose index Windows 10+ randomises). */
static u64 unmapped_kernel_va(void)
{
    const volatile u64 *pml4 = (const volatile u64 *)W.sys_pml4;
    for (u64 i = 0x1f0; i > 0x100; i--)
        if (pml4[i] == 0 && i != W.selfref)
            return 0xffff000000000000ull | i << 39;
    panic("scenario: no empty kernel PML4 entry");
}

static u64 record(u64 size)
{
    u64 r = pool_alloc(size, 16);
    memset((void *)r, 0, size);
    return r;
}

void scenario_apply(const char *v, size_t n)
{
    if (n == 0)
        return;
    S.on = true;
    unsigned d = 3, last = W.n_mods - 1;   /* ACPI.sys; the last driver */
    if (W.n_mods < 5)
        panic("scenario: only %u modules", W.n_mods);
    u64 tf_rip = off("off:_KTRAP_FRAME.Rip"), er_addr = off("off:_EXCEPTION_RECORD.ExceptionAddress");
    u64 *p = ord.p;
    S.has_reported = true;
    if (is(v, n, "irql")) {
        ord.code = 0xA;
        p[0] = 0x10; p[1] = 2; p[2] = 1; p[3] = drv_ip(d, 0x1a2b);
        S.reported = 0xD1;
        S.has_bucket = true;
    } else if (is(v, n, "kmode")) {
        ord.code = 0x1E;
        p[0] = 0xffffffffc0000005ull; p[1] = drv_ip(d, 0x1b00); p[2] = 1; p[3] = 0x28;
        S.reported = 0x1E;
        S.has_exc = true; S.exc = 0xC0000005;
        S.has_bucket = true;
    } else if (is(v, n, "thread")) {
        ord.code = 0x7E;
        u64 er = record(off("size:_EXCEPTION_RECORD")), cx = record(off("size:_CONTEXT"));
        u64 ip = drv_ip(d, 0x1c10);
        put32(er, off("off:_EXCEPTION_RECORD.ExceptionCode"), 0xC0000094);
        put64(er, er_addr, ip);
        put64(cx, off("off:_CONTEXT.Rip"), ip);
        put64(cx, off("off:_CONTEXT.Rsp"), W.pool_va + 0x8000);
        p[0] = 0xC0000094; p[1] = ip; p[2] = er; p[3] = cx;
        S.reported = 0x7E;
        S.has_exc = true; S.exc = 0xC0000094;
        S.has_bucket = true;
    } else if (is(v, n, "pagefault") || is(v, n, "tfunmapped") || is(v, n, "nofollow")) {
        ord.code = 0x50;
        u64 tf = record(off("size:_KTRAP_FRAME"));
        put64(tf, tf_rip, drv_ip(d, 0x1d20));
        p[0] = 0xffffa00012340000ull; p[1] = 2; p[2] = tf; p[3] = 2;
        if (is(v, n, "tfunmapped")) {
            p[2] = unmapped_kernel_va();
            S.has_ip = S.has_mod = false;
        }
        S.nofollow = is(v, n, "nofollow");
        S.has_reported = false;     /* may become 0xCC..0xD6: left out */
        S.has_bucket = true;        /* with the stored code */
        S.sub = 2;
    } else if (is(v, n, "specialpool")) {
        ord.code = 0x50;
        u64 tf = record(off("size:_KTRAP_FRAME"));
        put64(tf, tf_rip, drv_ip(d, 0x1d24));
        W.special_pool = unmapped_kernel_va();
        p[0] = W.special_pool + SPECIAL_POOL_SIZE / 2 + 0x2ff8; p[1] = 0; p[2] = tf; p[3] = 0;
        S.has_reported = false;
        S.has_bucket = true;
        S.sub = 0;
    } else if (is(v, n, "nonpaged") || is(v, n, "drvunmapped") || is(v, n, "drvlong")) {
        ord.code = 0xA;
        p[0] = W.mods[4].base + 0x2340; p[1] = 2; p[2] = 0; p[3] = drv_ip(0, 0x1234);
        S.has_reported = false;     /* the IP in ntoskrnl: 0xA, 0xC5, 0xD3 or 0xD4 */
        S.has_bucket = true;
        if (is(v, n, "drvunmapped")) {
            S.lie_driver = 1;
            S.lie_ustr = unmapped_kernel_va() + 0x40;
        } else if (is(v, n, "drvlong")) {
            S.lie_driver = 2;
            S.lie_ustr = record(16);
            u64 buf = record(0x200);
            for (u64 i = 0; i < 0x100; i++)
                put16(buf, 2 * i, 'A');
            put16(S.lie_ustr, 0, 0xFFFE);
            put16(S.lie_ustr, 2, 0xFFFE);
            put64(S.lie_ustr, 8, buf);
        }
    } else if (is(v, n, "fastfail")) {
        ord.code = 0x139;
        u64 tf = record(off("size:_KTRAP_FRAME")), er = record(off("size:_EXCEPTION_RECORD"));
        u64 ip = drv_ip(d, 0x1e30);
        put64(tf, tf_rip, ip);
        put32(er, off("off:_EXCEPTION_RECORD.ExceptionCode"), 0xC0000409);
        put64(er, er_addr, ip);
        p[0] = 3; p[1] = tf; p[2] = er; p[3] = 0;
        S.reported = 0x139;
        S.sub = 3;
        S.has_exc = true; S.exc = 0xC0000409;
        S.has_bucket = true;
    } else if (is(v, n, "critical")) {
        ord.code = 0xEF;
        S.proc = &W.extra[1];       /* csrss.exe */
        S.has_proc = true;
        p[0] = S.proc->eprocess; p[1] = 0; p[2] = 0; p[3] = 0;
        S.reported = 0xEF;
        S.sub = 0;
        S.has_bucket = true;
    } else if (is(v, n, "region")) {
        ord.code = 0x109;
        p[0] = 0xa3a01f5891c5a5e1ull; p[1] = 0xb3b72bdee4440b6bull; p[2] = W.base + 0x1000; p[3] = 1;
        S.reported = 0x109;
        S.sub = 1;
        S.has_bucket = true;
    } else if (is(v, n, "harderror")) {
        ord.code = 0x4C;
        u64 hp = record(32);
        put64(hp, 0, W.pool_va + 0x100);    /* the hard error's own parameters */
        put64(hp, 8, 0xC0000005);
        p[0] = 0xC000021A; p[1] = hp; p[2] = 0; p[3] = 0;
        S.reported = 0xC000021A;
        S.has_bucket = true;
    } else if (is(v, n, "modloop") || is(v, n, "longname") || is(v, n, "overlap")) {
        ord.code = 0xA;
        p[0] = 0x10; p[1] = 2; p[2] = 0; p[3] = drv_ip(last, 0x1f40);
        S.has_mod = false;
        S.has_reported = false;
        u64 e = ldr_entry(last);
        if (is(v, n, "modloop")) {
            /* The driver before the last loops back to hal.dll. */
            u64 links = off("off:ldr.InLoadOrderLinks");
            *(volatile u64 *)(ldr_entry(last - 1) + links) = ldr_entry(1) + links;
        } else if (is(v, n, "longname")) {
            /* The module is found but its name is cut: reported, no module. */
            put16(e + off("off:ldr.BaseDllName"), 0, 0xFFFE);
            S.has_reported = true;
            S.reported = 0xD1;
        } else {
            put64(e + off("off:ldr.DllBase"), 0, W.mods[last - 1].base + 0x100);
        }
    } else {
        panic("scenario= must be irql, kmode, thread, pagefault, fastfail, critical, region, "
              "harderror, nonpaged, specialpool, tfunmapped, modloop, longname, overlap, "
              "drvunmapped, drvlong or nofollow");
    }
}

void scenario_print_truth(void)
{
    if (!S.on)
        return;
    /* What the kernel stores (bsodmon reads it after following the bug
     * check), unless it never gets there in time: then the entry rules. */
    u64 fin[5], driver;
    bugcheck_final(ord.code, ord.p, 0, fin, &driver);
    bool has_reported = S.nofollow ? S.has_reported : true;
    u64 reported = S.nofollow ? S.reported : fin[0];
    bool params = !S.nofollow && (fin[1] != ord.p[0] || fin[2] != ord.p[1] ||
                                  fin[3] != ord.p[2] || fin[4] != ord.p[3]);
    int drv = -1;
    for (unsigned i = 0; i < W.n_mods && driver && !S.nofollow; i++)
        if (driver == W.mods[i].ldr + off("off:ldr.BaseDllName"))
            drv = (int)i;
    kprintf(", \"Analysis\": {");
    const char *sep = "";
    if (has_reported) {
        kprintf("%s\"ReportedBugCheckCode\": \"0x%lx\"", sep, reported);
        sep = ", ";
    }
    if (params) {
        for (int i = 0; i < 4; i++)
            kprintf("%s\"ReportedBugCheckParameter%d\": \"0x%lx\"", sep, i + 1, fin[i + 1]);
        sep = ", ";
    }
    if (drv >= 0) {
        kprintf("%s\"FailingDriver\": \"%s\"", sep, W.mods[drv].name);
        sep = ", ";
    }
    if (S.sub != SC_SUB_NONE) {
        kprintf("%s\"BugCheckSubcode\": \"0x%lx\"", sep, S.sub);
        sep = ", ";
    }
    if (S.has_ip) {
        kprintf("%s\"FaultingIP\": \"0x%lx\"", sep, S.ip);
        sep = ", ";
    }
    if (S.has_mod) {
        kprintf("%s\"FaultingModule\": \"%s+0x%lx\", \"FaultingModuleSize\": \"0x%x\", "
                "\"FaultingModuleTimeDateStamp\": \"0x%x\"", sep, S.mod->name, S.ip - S.mod->base,
                S.mod->size, S.mod->timestamp);
        sep = ", ";
    }
    if (S.has_exc) {
        kprintf("%s\"ExceptionCode\": \"0x%lx\"", sep, S.exc);
        sep = ", ";
    }
    if (S.has_proc) {
        kprintf("%s\"CriticalProcess\": \"", sep);
        for (u32 i = 0; i < S.proc->name_len; i++)
            kprintf("%c", S.proc->name[i]);
        kprintf("\"");
        sep = ", ";
    }
    /* The bucket: the reported code; a code that names an IP needs its module. */
    u32 c = (u32)ord.code;
    bool names_ip = c == 0xA || c == 0x1E || c == 0x7E || c == 0x50 || c == 0x139;
    if (S.has_bucket && has_reported && (S.has_mod || !names_ip)) {
        kprintf("%s\"Bucket\": \"0x%lx", sep, reported);
        if (S.sub != SC_SUB_NONE)
            kprintf("_0x%lx", S.sub);
        if (S.has_mod)
            kprintf("_%s+0x%lx", S.mod->name, S.ip - S.mod->base);
        kprintf("\"");
    }
    kprintf("}");
}
