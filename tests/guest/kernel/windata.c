/* windata.c - the parts of a Windows kernel that analysis tools (WinDbg,
 * Volatility, crash-dump writers) read besides processes and threads:
 * KUSER_SHARED_DATA with the version fields, PsLoadedModuleList with PE
 * images at each DllBase, KiProcessorBlock, KeNumberProcessors,
 * MmPfnDatabase, MmPhysicalMemoryBlock, and the KDDEBUGGER_DATA64, encoded
 * last as Windows 8 and later do when booted without a debugger. The block's
 * plain contents and KdVersionBlock come from the layout blob (relocated in
 * world.c); offsets from the ISF, never from a particular build. */
#include "guest.h"

static u64 opt(const char *key) { return layout_get(&W.lay, key); }

static void put_ksystem_time(u64 va, u64 o, u64 t)
{
    put32(va, o, (u32)t);            /* LowPart */
    put32(va, o + 4, (u32)(t >> 32)); /* High1Time */
    put32(va, o + 8, (u32)(t >> 32)); /* High2Time */
}

void kuser_build(u64 kuser_pa)
{
    u64 k = kuser_pa;
    put32(k, off("off:_KUSER_SHARED_DATA.NtMajorVersion"), (u32)off("ver:major"));
    put32(k, off("off:_KUSER_SHARED_DATA.NtMinorVersion"), (u32)off("ver:minor"));
    u64 o = opt("off:_KUSER_SHARED_DATA.NtBuildNumber");
    if (o != LAYOUT_ABSENT)
        put32(k, o, (u32)off("ver:build"));
    put32(k, off("off:_KUSER_SHARED_DATA.NtProductType"), 1); /* NtProductWinNt */
    if ((o = opt("off:_KUSER_SHARED_DATA.ProductTypeIsValid")) != LAYOUT_ABSENT)
        *(volatile u8 *)(k + o) = 1;
    if ((o = opt("off:_KUSER_SHARED_DATA.NativeProcessorArchitecture")) != LAYOUT_ABSENT)
        put16(k, o, 9); /* PROCESSOR_ARCHITECTURE_AMD64 */
    if ((o = opt("off:_KUSER_SHARED_DATA.SuiteMask")) != LAYOUT_ABSENT)
        put32(k, o, 0x110); /* SingleUserTS | TerminalServer */
    if ((o = opt("off:_KUSER_SHARED_DATA.ActiveProcessorCount")) != LAYOUT_ABSENT)
        put32(k, o, ord.vcpus);
    u64 pages = 0;
    for (int i = 0; i < n_ram; i++)
        pages += (ram[i].end + 1 - ram[i].start) / 4096;
    if ((o = opt("off:_KUSER_SHARED_DATA.NumberOfPhysicalPages")) != LAYOUT_ABSENT)
        put32(k, o, (u32)pages);
    put_ksystem_time(k, off("off:_KUSER_SHARED_DATA.SystemTime"), W.system_time);
    put_ksystem_time(k, off("off:_KUSER_SHARED_DATA.InterruptTime"), W.system_time - W.boot_time);
    const char *root = "C:\\Windows";
    u64 r = off("off:_KUSER_SHARED_DATA.NtSystemRoot");
    for (u32 i = 0; root[i]; i++)
        put16(k, r + 2 * i, (u16)root[i]);
}

/* ---- loaded modules ------------------------------------------------------- */

static const struct { const char *name, *path; } MODULES[] = {
    { "ntoskrnl.exe", "\\SystemRoot\\system32\\ntoskrnl.exe" },
    { "hal.dll", "\\SystemRoot\\system32\\hal.dll" },
    { "kdcom.dll", "\\SystemRoot\\system32\\kdcom.dll" },
    { "ACPI.sys", "\\SystemRoot\\System32\\drivers\\ACPI.sys" },
    { "disk.sys", "\\SystemRoot\\System32\\drivers\\disk.sys" },
    { "Ntfs.sys", "\\SystemRoot\\System32\\drivers\\Ntfs.sys" },
    { "tcpip.sys", "\\SystemRoot\\System32\\drivers\\tcpip.sys" },
};

/* A PE32+ header for a driver image: DOS stub, NT headers, one section. */
static void pe_header(u64 pa, u64 base, u32 size, u32 ts)
{
    u8 *h = (u8 *)pa;
    h[0] = 'M';
    h[1] = 'Z';
    put32(pa, 0x3c, 0x80);
    u64 nt = pa + 0x80;
    memcpy((void *)nt, "PE\0\0", 4);
    put16(nt, 4, 0x8664);   /* Machine */
    put16(nt, 6, 1);        /* NumberOfSections */
    put32(nt, 8, ts);       /* TimeDateStamp */
    put16(nt, 20, 0xf0);    /* SizeOfOptionalHeader */
    put16(nt, 22, 0x22);    /* executable, large-address aware */
    u64 oh = nt + 24;
    put16(oh, 0, 0x20b);    /* PE32+ */
    put32(oh, 4, size - 0x1000); /* SizeOfCode */
    put32(oh, 16, 0x1000);  /* AddressOfEntryPoint */
    put32(oh, 20, 0x1000);  /* BaseOfCode */
    put64(oh, 24, base);    /* ImageBase */
    put32(oh, 32, 0x1000);  /* SectionAlignment */
    put32(oh, 36, 0x200);   /* FileAlignment */
    put16(oh, 40, (u16)off("ver:major")); /* OperatingSystemVersion */
    put16(oh, 42, (u16)off("ver:minor"));
    put16(oh, 48, (u16)off("ver:major")); /* SubsystemVersion */
    put16(oh, 50, (u16)off("ver:minor"));
    put32(oh, 56, size);    /* SizeOfImage */
    put32(oh, 60, 0x400);   /* SizeOfHeaders */
    put16(oh, 68, 1);       /* Subsystem: native */
    put32(oh, 108, 16);     /* NumberOfRvaAndSizes */
    u64 sec = oh + 0xf0;
    memcpy((void *)sec, ".text\0\0\0", 8);
    put32(sec, 8, size - 0x1000);
    put32(sec, 12, 0x1000);
    put32(sec, 16, size - 0x1000);
    put32(sec, 20, 0x400);
    put32(sec, 36, 0x68000020);
}

static u64 unicode_string(u64 us, const char *s)
{
    u32 n = (u32)strlen(s);
    u64 buf = pool_alloc(2 * n + 2, 8);
    for (u32 i = 0; i < n; i++)
        put16(buf, 2 * i, (u16)s[i]);
    put16(buf, 2 * n, 0);
    put16(us, 0, (u16)(2 * n));
    put16(us, 2, (u16)(2 * n + 2));
    put64(us, 8, buf);
    return buf;
}

/* ntoskrnl.exe (the image), then hal.dll and the drivers mapped above it,
 * each an InLoadOrderLinks entry on PsLoadedModuleList. */
void modules_build(void)
{
    u64 head = opt("sym:PsLoadedModuleList");
    if (head == LAYOUT_ABSENT)
        return;
    head += W.base;
    u64 head_pa = head; /* runs on the System PML4: the image is mapped */
    put64(head_pa, 0, head);
    put64(head_pa, 8, head);
    u64 image_end = W.base + (((u64)W.lay.image_size + (2ull << 20) - 1) & ~((2ull << 20) - 1));
    u64 va = image_end + (2ull << 20) + (rng_next() % 64) * 4096;
    u64 ent_size = off("size:ldr");
    for (unsigned i = 0; i < sizeof MODULES / sizeof MODULES[0] && W.n_mods < MAX_MODS; i++) {
        struct module *m = &W.mods[W.n_mods++];
        m->name = MODULES[i].name;
        m->path = MODULES[i].path;
        if (i == 0) {
            m->base = W.base;
            m->size = W.lay.image_size;
            m->timestamp = (u32)off("img:timestamp");
        } else {
            m->size = (u32)(0x4000 + (rng_next() % 28) * 0x1000);
            m->timestamp = (u32)(0x50000000 + rng_next() % 0x20000000);
            m->base = va;
            u64 pa = palloc(m->size, 4096);
            memset((void *)pa, 0, 4096);
            for (u64 o = 0; o < m->size; o += 4096)
                map(W.sys_pml4, va + o, pa + o, false, 0);
            pe_header(pa, m->base, m->size, m->timestamp);
            va += m->size + 4096 * (1 + rng_next() % 16);
        }
        u64 e = pool_alloc(ent_size, 16);
        m->ldr = e;
        put64(e + off("off:ldr.DllBase"), 0, m->base);
        put64(e + off("off:ldr.EntryPoint"), 0, m->base + 0x1000);
        put32(e, off("off:ldr.SizeOfImage"), m->size);
        u64 o = opt("off:ldr.TimeDateStamp");
        if (o != LAYOUT_ABSENT)
            put32(e, o, m->timestamp);
        if ((o = opt("off:ldr.LoadCount")) != LAYOUT_ABSENT)
            put16(e, o, 1);
        unicode_string(e + off("off:ldr.FullDllName"), m->path);
        unicode_string(e + off("off:ldr.BaseDllName"), m->name);
        list_insert_tail(head, e + off("off:ldr.InLoadOrderLinks"));
    }
}

/* ---- kernel variables and the KDBG --------------------------------------- */

static u64 image_var(const char *sym)
{
    u64 rva = opt(sym);
    return rva == LAYOUT_ABSENT ? 0 : W.image_pa + rva;
}

static u64 ror64(u64 v, unsigned n) { n &= 63; return n ? (v >> n) | (v << (64 - n)) : v; }

void kdata_finish(void)
{
    u64 p;
    if ((p = image_var("sym:KeNumberProcessors")))
        put32(p, 0, ord.vcpus);
    if ((p = image_var("sym:KiProcessorBlock")))
        for (unsigned i = 0; i < ord.vcpus; i++)
            put64(p, 8 * i, W.cpu[i].prcb);
    if ((p = image_var("sym:MmPfnDatabase")))
        put64(p, 0, W.pfn_db);
    if ((p = image_var("sym:MmPhysicalMemoryBlock"))) {
        /* PHYSICAL_MEMORY_DESCRIPTOR: NumberOfRuns, NumberOfPages, runs. */
        u64 d = pool_alloc(16 + 16 * (u64)n_ram, 16), pages = 0;
        for (int i = 0; i < n_ram; i++) {
            u64 first = (ram[i].start + 4095) / 4096, end = (ram[i].end + 1) / 4096;
            put64(d, 16 + 16 * i, first);
            put64(d, 24 + 16 * i, end - first);
            pages += end - first;
        }
        put32(d, 0, (u32)n_ram);
        put64(d, 8, pages);
        put64(p, 0, d);
    }
    u64 kd = image_var("sym:KdDebuggerDataBlock");
    u64 size = off("kdbg:size");
    u64 o = opt("kdbg:ptebase");
    if (o != LAYOUT_ABSENT)
        put64(kd, o, 0xffff000000000000ull | ((u64)W.selfref << 39));
    u64 flag = image_var("sym:KdpDataBlockEncoded");
    if (!off("kdbg:encode")) {
        if (flag)
            *(volatile u8 *)flag = 0;
        return;
    }
    /* KdEncodeDataBlock: KiWaitNever and KiWaitAlways are random at boot;
     * each qword v becomes Never ^ ror(&KdpDataBlockEncoded ^ bswap(Always ^ v), Never). */
    u64 pn = image_var("sym:KiWaitNever"), pa = image_var("sym:KiWaitAlways");
    if (!pn || !pa || !flag)
        panic("Windows 8+ table without KiWaitNever/KiWaitAlways/KdpDataBlockEncoded");
    u64 never = rng_next(), always = rng_next();
    put64(pn, 0, never);
    put64(pa, 0, always);
    u64 flag_va = W.base + off("sym:KdpDataBlockEncoded");
    for (u64 i = 0; i < size / 8; i++) {
        u64 v = *(volatile u64 *)(kd + 8 * i);
        v = never ^ ror64(flag_va ^ __builtin_bswap64(always ^ v), (unsigned)(never & 63));
        *(volatile u64 *)(kd + 8 * i) = v;
    }
    *(volatile u8 *)flag = 1;
    W.kdbg_encoded = true;
}

/* What KeBugCheck2 does first: KiBugCheckData[0..4] = code, P1..P4 (the
 * code a ULONG in a ULONG_PTR slot). */
void kibugcheckdata_fill(u64 code, const u64 p[4])
{
    u64 rva = opt("sym:KiBugCheckData");
    if (rva == LAYOUT_ABSENT)
        return;
    u64 va = W.base + rva;
    put64(va, 0, (u32)code);
    for (int i = 0; i < 4; i++)
        put64(va, 8 * (i + 1), p[i]);
}

void kibugcheckdriver_set(u64 ustr)
{
    u64 rva = opt("sym:KiBugCheckDriver");
    if (rva != LAYOUT_ABSENT)
        put64(W.base + rva, 0, ustr);
}

/* Whether the kernel half of the page tables maps va (System's PML4). */
bool kva_mapped(u64 va)
{
    const volatile u64 *t = (const volatile u64 *)W.sys_pml4;
    for (int level = 3; level >= 0; level--) {
        u64 e = t[(va >> (12 + 9 * level)) & 511];
        if (!(e & 1))
            return false;
        if (level > 0 && level < 3 && (e & 0x80))
            return true;
        t = (const volatile u64 *)(e & 0x000ffffffffff000ull);
    }
    return true;
}

/* The module of W.mods holding va (the guest's own record, whatever its
 * list now says), or -1. */
int module_of(u64 va)
{
    for (unsigned i = 0; i < W.n_mods; i++)
        if (va >= W.mods[i].base && va - W.mods[i].base < W.mods[i].size)
            return (int)i;
    return -1;
}

/* The code-specific rewrites of KeBugCheck2 (../shared/notes/
 * bugcheck-parameters.md 2.3) that this guest can meet: what it stores in
 * KiBugCheckData[0..4] and KiBugCheckDriver (0: left NULL) for a bug check
 * entered with code, p and the sixth argument. "In the kernel" is the first
 * two loaded modules, ntoskrnl and HAL. */
void bugcheck_final(u64 code, const u64 p[4], u64 trap_frame, u64 out[5], u64 *driver)
{
    out[0] = (u32)code;
    for (int i = 0; i < 4; i++)
        out[i + 1] = p[i];
    *driver = 0;
    u32 c = (u32)code;
    if (c == 0x0A) {
        int pc = module_of(p[3]);
        if (pc < 0 || pc >= 2) {
            out[0] = 0xD1;
        } else {
            int m = module_of(p[0]);
            if (m >= 2) {
                out[0] = 0xD3;
                *driver = W.mods[m].ldr + off("off:ldr.BaseDllName");
            }
        }
    } else if (c == 0x50) {
        u64 rip = off("off:_KTRAP_FRAME.Rip");
        if (trap_frame == 0 && p[2] >= 0xffff800000000000ull && (p[2] & 3) == 0 &&
            kva_mapped(p[2] + rip) && kva_mapped(p[2] + rip + 7))
            out[3] = *(volatile u64 *)(p[2] + rip);
        if (W.special_pool && p[0] - W.special_pool < SPECIAL_POOL_SIZE) {
            int m = module_of(out[3]);
            bool sys = m == 0 || m == 1;
            bool freed = p[0] - W.special_pool >= SPECIAL_POOL_SIZE / 2;
            out[0] = freed ? (sys ? 0xCC : 0xD5) : (sys ? 0xCD : 0xD6);
        }
    } else if (c == 0x4C) {
        out[0] = (u32)p[0];
        /* the hard error's four parameters, P2 pointing to them */
        if (p[1] >= 0xffff800000000000ull && kva_mapped(p[1]) && kva_mapped(p[1] + 31))
            for (int i = 0; i < 4; i++)
                out[i + 1] = *(volatile u64 *)(p[1] + 8 * i);
    }
    if (*driver)
        scenario_lie_driver(driver);
}

/* KiSaveProcessorControlState: the control registers, descriptor tables and
 * selectors into ProcessorState.SpecialRegisters (offsets from the ISF). */
void save_control_state(u64 state)
{
    u64 sr = state + off("off:_KPROCESSOR_STATE.SpecialRegisters"), o, v;
#define SAVE_CR(n)                                                  \
    if ((o = opt("off:_KSPECIAL_REGISTERS.Cr" #n)) != LAYOUT_ABSENT) { \
        __asm__ volatile("mov %%cr" #n ", %0" : "=r"(v));           \
        put64(sr, o, v);                                            \
    }
    SAVE_CR(0)
    SAVE_CR(2)
    SAVE_CR(3)
    SAVE_CR(4)
    SAVE_CR(8)
#undef SAVE_CR
    struct __attribute__((packed)) { u16 limit; u64 base; } d;
    u64 lim = off("off:_KDESCRIPTOR.Limit"), base = off("off:_KDESCRIPTOR.Base");
    if ((o = opt("off:_KSPECIAL_REGISTERS.Gdtr")) != LAYOUT_ABSENT) {
        __asm__ volatile("sgdt %0" : "=m"(d));
        put16(sr, o + lim, d.limit);
        put64(sr, o + base, d.base);
    }
    if ((o = opt("off:_KSPECIAL_REGISTERS.Idtr")) != LAYOUT_ABSENT) {
        __asm__ volatile("sidt %0" : "=m"(d));
        put16(sr, o + lim, d.limit);
        put64(sr, o + base, d.base);
    }
    u16 sel;
    if ((o = opt("off:_KSPECIAL_REGISTERS.Tr")) != LAYOUT_ABSENT) {
        __asm__ volatile("str %0" : "=r"(sel));
        put16(sr, o, sel);
    }
    if ((o = opt("off:_KSPECIAL_REGISTERS.Ldtr")) != LAYOUT_ABSENT) {
        __asm__ volatile("sldt %0" : "=r"(sel));
        put16(sr, o, sel);
    }
    if ((o = opt("off:_KSPECIAL_REGISTERS.MxCsr")) != LAYOUT_ABSENT)
        put32(sr, o, 0x1f80);
}
