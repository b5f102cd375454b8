/* world.c - builds what a monitor sees of a Windows kernel: page tables as
 * that Windows version sets them up (the System PML4 at its usual physical
 * page, one self-referencing PML4 entry at the version's index), the
 * ntoskrnl image placed as that version places it, a process tree on
 * PsActiveProcessHead, and per vCPU a KPCR/KPRCB whose current thread leads
 * to an EPROCESS with a PEB, all at the ISF's offsets (from the layout blob).
 * Low memory stays identity-mapped in every address space (PML4[0], 2 MiB
 * pages, which no DTB scan can take for a self-reference) so this kernel's
 * own code and data keep working. */
#include "guest.h"

#define PTE_P 0x1ull
#define PTE_W 0x2ull
#define PTE_U 0x4ull
#define PTE_PS 0x80ull
#define PTE_ADDR 0x000ffffffffff000ull
#define POOL_SIZE (4ull << 20)

struct orders ord;
struct world W;

/* ---- physical pages --------------------------------------------------- */

static u64 alloc_next, alloc_end, avoid_lo, avoid_hi;
extern char _end[];

void palloc_init(u64 start, u64 end, u64 avoid_start, u64 avoid_end)
{
    alloc_next = start;
    alloc_end = end;
    avoid_lo = avoid_start;
    avoid_hi = avoid_end;
}

/* Identity-mapped physical memory, never the initrd's pages. Small blocks
 * (tables, objects) are zeroed; large ones are fresh RAM, which QEMU hands
 * over zeroed, and clearing megabytes would take tens of seconds under a
 * slow KVM (instructions run ~2000x slower than TCG on some hosts). */
u64 palloc(u64 size, u64 align)
{
    u64 p = (alloc_next + align - 1) & ~(align - 1);
    if (p < avoid_hi && p + size > avoid_lo)
        p = (avoid_hi + align - 1) & ~(align - 1);
    if (p + size > alloc_end)
        panic("out of guest memory allocating %lu bytes", size);
    alloc_next = p + size;
    if (size <= (64u << 10))
        memset((void *)p, 0, size);
    return p;
}

/* ---- page tables -------------------------------------------------------- */

static u64 *next_table(u64 *table, unsigned idx, u64 flags)
{
    if (!(table[idx] & PTE_P))
        table[idx] = palloc(4096, 4096) | PTE_P | PTE_W | flags;
    else
        table[idx] |= flags;
    return (u64 *)(table[idx] & PTE_ADDR);
}

void map(u64 pml4, u64 va, u64 pa, bool large, u64 flags)
{
    u64 *t = (u64 *)pml4;
    u64 up = flags & PTE_U;
    t = next_table(t, (va >> 39) & 511, up);
    t = next_table(t, (va >> 30) & 511, up);
    if (large) {
        t[(va >> 21) & 511] = pa | PTE_P | PTE_W | PTE_PS | flags;
        return;
    }
    t = next_table(t, (va >> 21) & 511, up);
    t[(va >> 12) & 511] = pa | PTE_P | PTE_W | flags;
}

static u64 ram_top(void)
{
    u64 top = 4ull << 30;
    for (int i = 0; i < n_ram; i++)
        if (ram[i].end + 1 > top)
            top = ram[i].end + 1;
    return (top + (1ull << 30) - 1) & ~((1ull << 30) - 1);
}

/* ---- pool: kernel objects, physically contiguous ------------------------ */

u64 pool_alloc(u64 size, u64 align)
{
    u64 off = (W.pool_used + align - 1) & ~(align - 1);
    if (off + size > W.pool_size)
        panic("guest pool exhausted");
    W.pool_used = off + size;
    return W.pool_va + off;
}

void put64(u64 va, u64 o, u64 v) { *(volatile u64 *)(va + o) = v; }
void put32(u64 va, u64 o, u32 v) { *(volatile u32 *)(va + o) = v; }
void put16(u64 va, u64 o, u16 v) { *(volatile u16 *)(va + o) = v; }

u64 off(const char *key) { return layout_need(&W.lay, key); }

/* A PML4 slot of Windows' dynamic kernel space (0x110-0x1df), clear of the
 * image (0x1f0), KUSER_SHARED_DATA (0x1ef) and the self-reference. */
static u64 rand_kernel_slot(u64 avoid)
{
    u64 slot;
    do
        slot = 0x110 + rng_next() % 0xd0;
    while (slot == W.selfref || slot == avoid);
    return slot;
}

static u64 rand_kernel_va(u64 slot)
{
    return 0xffff000000000000ull | (slot << 39) | ((rng_next() & 0x3fffull) << 25);
}

/* ---- the image ---------------------------------------------------------- */

static void patch_one(u32 rva, u32 kind, void *ctx)
{
    (void)ctx;
    if (kind == PATCH_RELOC) {
        u64 v;
        memcpy(&v, (void *)(W.image_pa + rva), 8);
        v += W.base;
        memcpy((void *)(W.image_pa + rva), &v, 8);
        return;
    }
    u64 target = kind == PATCH_BUGCHECK2 ? (u64)kebugcheck2_entry
               : kind == PATCH_ISR ? (u64)isr_common
               : kind == PATCH_CAPTURE ? (u64)rtl_capture_context
               : kind == PATCH_SAVECTL ? (u64)ki_save_control_state : 0;
    if (!target)
        panic("layout blob: unknown patch kind %u", kind);
    memcpy((void *)(W.image_pa + rva), &target, 8);
}

#define KERNEL_SPACE 0xfffff80000000000ull
#define MB2 (2ull << 20)

/* ver:place 2 (Windows 10 on): a random 2 MiB-aligned base in
 * 0xfffff800`00000000-0xfffff80f`ffffffff, mapped with large pages.
 * 1 (Windows 8.x): a random page-aligned base there, 4 KiB pages.
 * 0 (Windows 7): page-aligned, at 0xfffff800`00000000 + its physical
 * address. Never 2 MiB-aligned in the last two. */
static void build_image(void)
{
    u64 place = off("ver:place");
    if (place == 2) {
        u64 size = ((u64)W.lay.image_size + MB2 - 1) & ~(MB2 - 1);
        u64 slots = (16ull << 30) / MB2 - size / MB2;
        W.base = KERNEL_SPACE + (rng_next() % slots) * MB2;
        W.image_pa = palloc(size, MB2);
        layout_copy_image(&W.lay, (u8 *)W.image_pa);
        layout_patches(&W.lay, patch_one, 0);
        for (u64 o = 0; o < size; o += MB2)
            map(W.sys_pml4, W.base + o, W.image_pa + o, true, 0);
        return;
    }
    u64 size = ((u64)W.lay.image_size + 4095) & ~4095ull;
    palloc((1 + rng_next() % 255) * 4096, 4096); /* a random physical start */
    W.image_pa = palloc(size, 4096);
    if (W.image_pa % MB2 == 0) {
        palloc(4096, 4096);
        W.image_pa = palloc(size, 4096);
    }
    if (place == 0) {
        W.base = KERNEL_SPACE + W.image_pa;
    } else {
        u64 pages = (16ull << 30) / 4096 - size / 4096;
        do
            W.base = KERNEL_SPACE + (rng_next() % pages) * 4096;
        while (W.base % MB2 == 0);
    }
    layout_copy_image(&W.lay, (u8 *)W.image_pa);
    layout_patches(&W.lay, patch_one, 0);
    for (u64 o = 0; o < size; o += 4096)
        map(W.sys_pml4, W.base + o, W.image_pa + o, false, 0);
}

/* ---- processes and threads ------------------------------------------------ */

void list_insert_tail(u64 head, u64 entry)
{
    u64 last = *(u64 *)(head + 8);
    put64(entry, 0, head);
    put64(entry, 8, last);
    put64(last, 0, entry);
    put64(head, 8, entry);
}

static u64 create_clock;

static void make_process(struct process *p, const u8 *name, u32 name_len, bool user)
{
    p->name = name;
    p->name_len = name_len;
    /* Created in this order, 0.1-20 s apart after boot (FILETIME, 100 ns). */
    create_clock += 1000000 + rng_next() % 200000000;
    p->create_time = p->pid == 0 ? 0 : W.boot_time + create_clock;
    p->eprocess = pool_alloc(layout_need(&W.lay, "size:_EPROCESS"), 64);
    u64 e = p->eprocess;
    put64(e, off("off:_EPROCESS.UniqueProcessId"), p->pid);
    put64(e, off("off:_EPROCESS.InheritedFromUniqueProcessId"), p->ppid);
    u8 *img = (u8 *)(e + off("off:_EPROCESS.ImageFileName"));
    for (u32 i = 0; i < 15; i++)
        img[i] = i < name_len ? name[i] : 0;
    p->dtb = W.sys_pml4;
    if (user) {
        /* Own address space: the kernel half and PML4[0] shared, a PEB and a
         * TEB in the user half at a random PML4 slot of 1-254. */
        p->dtb = palloc(4096, 4096);
        u64 *src = (u64 *)W.sys_pml4, *dst = (u64 *)p->dtb;
        dst[0] = src[0];
        for (int i = 256; i < 512; i++)
            dst[i] = src[i];
        dst[W.selfref] = p->dtb | 0x63; /* each PML4 refers to itself */
        p->peb = ((1 + rng_next() % 254) << 39) | (rng_next() & 0x7fffff0000ull);
        p->teb = p->peb + 0x2000;
        u64 peb_pa = palloc(2 * 4096, 4096), teb_pa = palloc(4 * 4096, 4096);
        map(p->dtb, p->peb, peb_pa, false, PTE_U);
        map(p->dtb, p->peb + 0x1000, peb_pa + 0x1000, false, PTE_U);
        for (u64 i = 0; i < 4; i++)
            map(p->dtb, p->teb + i * 0x1000, teb_pa + i * 0x1000, false, PTE_U);
        put32(peb_pa, off("off:_PEB.SessionId"), (u32)p->session);
        u64 teb_peb = layout_get(&W.lay, "off:_TEB.ProcessEnvironmentBlock");
        if (teb_peb != LAYOUT_ABSENT)
            put64(teb_pa, teb_peb, p->peb);
    }
    put64(e, off("off:_EPROCESS.Peb"), p->peb);
    put64(e, off("off:_EPROCESS.Pcb.DirectoryTableBase"), p->dtb);
    put64(e, off("off:_EPROCESS.CreateTime"), p->create_time);
    u64 o = layout_get(&W.lay, "off:_EPROCESS.ActiveThreads");
    if (o != LAYOUT_ABSENT)
        put32(e, o, 1);
    /* Session: none for System and smss, else the session's MM_SESSION_SPACE. */
    o = layout_get(&W.lay, "off:_EPROCESS.Session");
    u64 sid_off = layout_get(&W.lay, "off:_MM_SESSION_SPACE.SessionId");
    u64 ss_size = layout_get(&W.lay, "size:_MM_SESSION_SPACE");
    p->has_session = user && p->pid != W.extra[0].pid && o != LAYOUT_ABSENT &&
                     sid_off != LAYOUT_ABSENT && ss_size != LAYOUT_ABSENT && ss_size <= 0x8000 &&
                     p->session < MAX_SESSIONS;
    if (p->has_session) {
        if (!W.session_space[p->session]) {
            W.session_space[p->session] = pool_alloc(ss_size, 64);
            put32(W.session_space[p->session], sid_off, (u32)p->session);
        }
        put64(e, o, W.session_space[p->session]);
    }
    u64 links = layout_get(&W.lay, "off:_EPROCESS.ActiveProcessLinks");
    u64 head = layout_get(&W.lay, "sym:PsActiveProcessHead");
    if (links != LAYOUT_ABSENT && head != LAYOUT_ABSENT && p->pid != 0) {
        list_insert_tail(W.base + head, e + links);
        if (W.n_procs < MAX_PROCS)
            W.procs[W.n_procs++] = p;
    }
}

static u64 make_thread(const struct process *p, u64 tid, u64 teb)
{
    u64 t = pool_alloc(layout_need(&W.lay, "size:_ETHREAD"), 64);
    put64(t, off("off:_KTHREAD.ApcState.Process"), p->eprocess);
    u64 kp = layout_get(&W.lay, "off:_KTHREAD.Process");
    if (kp != LAYOUT_ABSENT)
        put64(t, kp, p->eprocess);
    u64 kteb = layout_get(&W.lay, "off:_KTHREAD.Teb");
    if (kteb != LAYOUT_ABSENT)
        put64(t, kteb, teb);
    put64(t, off("off:_ETHREAD.Cid.UniqueProcess"), p->pid);
    put64(t, off("off:_ETHREAD.Cid.UniqueThread"), tid);
    return t;
}

/* Windows IDs are multiples of 4. */
static u64 rand_id(void) { return 4 * (0x40 + rng_next() % 0x1fc0); }

/* ---- per-vCPU structures ---------------------------------------------------- */

static void make_cpu(unsigned i)
{
    struct cpu *c = &W.cpu[i];
    u64 o;
    c->kpcr = pool_alloc(layout_need(&W.lay, "size:_KPCR"), 4096);
    c->gdt = pool_alloc(16 * 8, 16);
    c->idt = pool_alloc(256 * 16, 4096);
    u64 *gdt = (u64 *)c->gdt;
    gdt[2] = 0x00209b0000000000ull; /* 0x10: ring-0 code64, as KGDT64_R0_CODE */
    gdt[3] = 0x00cf93000000ffffull; /* 0x18: ring-0 data */
    for (unsigned v = 0; v < 256; v++) {
        char key[16];
        ksnprintf(key, sizeof key, "idt:%u", v);
        u64 h = W.base + off(key);
        u64 *g = (u64 *)(c->idt + v * 16);
        g[0] = (h & 0xffff) | (0x10ull << 16) | (0x8eull << 40) | (((h >> 16) & 0xffff) << 48);
        g[1] = h >> 32;
    }
    put64(c->kpcr, off("off:_KPCR.Self"), c->kpcr);
    c->prcb = c->kpcr + off("off:_KPCR.Prcb");
    put64(c->kpcr, off("off:_KPCR.CurrentPrcb"), c->prcb);
    put16(c->prcb, off("off:_KPRCB.Number"), (u16)i);
    /* Prcb->Context: the CONTEXT the debugger (and a dump writer) fills for
     * this processor; 16-byte aligned, as CONTEXT must be. */
    c->context = pool_alloc(0x500, 64);
    put64(c->prcb, off("off:_KPRCB.Context"), c->context);
    o = layout_get(&W.lay, "off:_KPRCB.KernelDirectoryTableBase");
    if (o != LAYOUT_ABSENT)
        put64(c->prcb, o, W.sys_pml4);
    o = layout_get(&W.lay, "off:_KPCR.IdtBase");
    if (o != LAYOUT_ABSENT)
        put64(c->kpcr, o, c->idt);
    o = layout_get(&W.lay, "off:_KPCR.GdtBase");
    if (o != LAYOUT_ABSENT)
        put64(c->kpcr, o, c->gdt);
    if (i == ord.on) {
        c->thread = make_thread(&W.victim, W.victim_tid, W.victim.teb);
        c->cr3 = W.victim.dtb;
        c->teb = W.victim.teb;
    } else {
        c->thread = make_thread(&W.idle, 0, 0);
        c->cr3 = W.sys_pml4;
        c->teb = 0;
    }
    put64(c->kpcr, off("off:_KPCR.Prcb.CurrentThread"), c->thread);
    if (i == ord.on && ord.lie_thread) /* canonical, kernel half, never mapped */
        put64(c->kpcr, off("off:_KPCR.Prcb.CurrentThread"), 0xffffdead00000000ull);
}

/* 2024-06-01 00:00:00 UTC as a FILETIME, plus up to a year. */
#define FILETIME_2024_06_01 133616736000000000ull
#define FILETIME_SECOND 10000000ull

static bool id_taken(u64 id)
{
    if (id == W.parent.pid || id == W.victim.pid)
        return true;
    for (unsigned i = 0; i < sizeof W.extra / sizeof W.extra[0]; i++)
        if (W.extra[i].pid == id)
            return true;
    return false;
}

static void make_user(struct process *p, u64 ppid, u64 sess, const char *name)
{
    u64 id;
    do
        id = rand_id();
    while (id_taken(id));
    p->pid = id;
    p->ppid = ppid;
    p->session = sess;
    make_process(p, (const u8 *)name, (u32)strlen(name), true);
}

void world_build(void)
{
    /* The System PML4 at the physical page that Windows version uses; it
     * lies between this kernel's end and the first page palloc hands out. */
    W.sys_pml4 = off("ver:dtb_pa");
    if (W.sys_pml4 < (u64)_end || W.sys_pml4 + 4096 > alloc_next)
        panic("the System PML4 page %lx collides with the guest kernel", W.sys_pml4);
    memset((void *)W.sys_pml4, 0, 4096);
    W.selfref = (u32)off("ver:selfref");
    while (W.selfref == 0 || W.selfref == 0x1ef || W.selfref == 0x1f0)
        W.selfref = 0x100 + rng_next() % 0xff; /* Windows 10 on: 0x100-0x1fe */
    ((u64 *)W.sys_pml4)[W.selfref] = W.sys_pml4 | 0x63;
    W.boot_time = FILETIME_2024_06_01 + (rng_next() % (365 * 86400ull)) * FILETIME_SECOND;

    u64 top = ram_top();
    for (u64 a = 0; a < top; a += 2u << 20)
        map(W.sys_pml4, a, a, true, 0);
    build_image();

    W.pool_size = POOL_SIZE;
    W.pool_pa = palloc(POOL_SIZE, 4096);
    W.pool_slot = rand_kernel_slot(0);
    W.pool_va = rand_kernel_va(W.pool_slot);
    for (u64 o = 0; o < POOL_SIZE; o += 4096)
        map(W.sys_pml4, W.pool_va + o, W.pool_pa + o, false, 0);
    W.pfn_db = 0xffff000000000000ull | (rand_kernel_slot(W.pool_slot) << 39);

    u64 kuser_pa = palloc(4096, 4096);
    map(W.sys_pml4, KUSER_SHARED_DATA, kuser_pa, false, 0);
    write_cr3(W.sys_pml4);
    modules_build();
    /* Every mapping of the kernel half exists now: processes copy it. */
    u64 head = layout_get(&W.lay, "sym:PsActiveProcessHead");
    if (head != LAYOUT_ABSENT) {
        put64(W.base + head, 0, W.base + head);
        put64(W.base + head, 8, W.base + head);
    }
    W.idle.pid = 0;
    make_process(&W.idle, (const u8 *)"Idle", 4, false);
    W.system.pid = 4;
    make_process(&W.system, (const u8 *)"System", 6, false);
    u64 sess = 1 + rng_next() % 3;
    W.parent.pid = rand_id();
    do
        W.victim.pid = rand_id();
    while (W.victim.pid == W.parent.pid);
    /* The boot chain: smss (from System) starts csrss and wininit (session
     * 0); wininit starts services and lsass. explorer's parent (userinit)
     * has exited, as on a real desktop. */
    struct process *smss = &W.extra[0], *csrss = &W.extra[1], *wininit = &W.extra[2],
                   *services = &W.extra[3], *lsass = &W.extra[4];
    make_user(smss, 4, 0, "smss.exe");
    make_user(csrss, smss->pid, 0, "csrss.exe");
    make_user(wininit, smss->pid, 0, "wininit.exe");
    make_user(services, wininit->pid, 0, "services.exe");
    make_user(lsass, wininit->pid, 0, "lsass.exe");
    u64 id;
    do
        id = rand_id();
    while (id_taken(id));
    W.parent.ppid = id;
    W.parent.session = sess;
    make_process(&W.parent, (const u8 *)"explorer.exe", 12, true);
    W.victim.ppid = W.parent.pid;
    W.victim.session = sess;
    make_process(&W.victim, ord.pname, ord.pname_len, true);
    W.victim_tid = rand_id();
    W.system_time = W.boot_time + create_clock + 60 * FILETIME_SECOND;
    kuser_build(kuser_pa);
    if (ord.lie_ptloop) {
        /* PML4[slot of the PEB] points back at the PML4 itself, and so does
         * every entry of the tables below it: a walker that follows entries
         * without a level bound never ends. */
        u64 *pml4 = (u64 *)W.victim.dtb;
        pml4[(W.victim.peb >> 39) & 511] = W.victim.dtb | 0x7;
    }
    u64 sysproc = layout_get(&W.lay, "sym:PsInitialSystemProcess");
    if (sysproc != LAYOUT_ABSENT)
        put64(W.base + sysproc, 0, W.system.eprocess);
    for (unsigned i = 0; i < ord.vcpus; i++)
        make_cpu(i);
    kdata_finish();
}

void cpu_setup(unsigned i)
{
    struct cpu *c = &W.cpu[i];
    struct __attribute__((packed)) { u16 limit; u64 base; } gdtr = { 16 * 8 - 1, c->gdt },
        idtr = { 256 * 16 - 1, c->idt };
    write_cr3(W.sys_pml4);
    __asm__ volatile("lgdt %0" :: "m"(gdtr));
    reload_segments();
    __asm__ volatile("lidt %0" :: "m"(idtr));
    wrmsr(MSR_GS_BASE, c->kpcr);
    wrmsr(MSR_KERNEL_GS_BASE, c->teb);
    wrmsr(MSR_LSTAR, W.base + off("sym:KiSystemCall64"));
    wrmsr(MSR_STAR, (0x23ull << 48) | (0x10ull << 32));
    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | 1); /* SCE */
    write_cr3(c->cr3);
}
