/* kmain.c - boot flow of the synthetic Windows-like guest: read the PVH
 * start_info (memory map, command line, the layout blob as module 0), build
 * the world, start the other vCPUs, report "ready" and the truth line on the
 * serial port, then bug-check as ordered. */
#include "guest.h"

#define START_INFO_MAGIC 0x336ec578u
#define HIGHRAM_STEP (16ull << 20)

struct start_info {
    u32 magic, version, flags, nr_modules;
    u64 modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
    u32 memmap_entries, reserved;
};
struct mod_entry { u64 paddr, size, cmdline_paddr, reserved; };
struct memmap_entry { u64 addr, size; u32 type, reserved; };

struct ram_range ram[MAX_RAM];
int n_ram;
static char cmdline[4096];
static u64 blob_pa, blob_size;
static u32 bugchecks_done;

extern char _end[];

static void read_start_info(u32 si_pa)
{
    const struct start_info *si = (const struct start_info *)(u64)si_pa;
    if (si->magic != START_INFO_MAGIC)
        panic("no PVH start_info (magic %x)", si->magic);
    const char *cl = (const char *)si->cmdline_paddr;
    size_t i = 0;
    if (cl)
        for (; i + 1 < sizeof cmdline && cl[i]; i++)
            cmdline[i] = cl[i];
    cmdline[i] = 0;
    const struct memmap_entry *mm = (const struct memmap_entry *)si->memmap_paddr;
    for (u32 k = 0; k < si->memmap_entries && n_ram < MAX_RAM; k++)
        if (mm[k].type == 1 && mm[k].size) {
            ram[n_ram].start = mm[k].addr;
            ram[n_ram].end = mm[k].addr + mm[k].size - 1;
            n_ram++;
        }
    if (si->nr_modules >= 1) {
        const struct mod_entry *m = (const struct mod_entry *)si->modlist_paddr;
        blob_pa = m[0].paddr;
        blob_size = m[0].size;
    }
}

/* ---- orders ---------------------------------------------------------------- */

static bool word_is(const char *w, size_t len, const char *key, const char **val, size_t *vlen)
{
    size_t k = strlen(key);
    if (len < k || strncmp(w, key, k) != 0)
        return false;
    if (len == k) {
        *val = w + k;
        *vlen = 0;
        return true;
    }
    if (w[k] != '=')
        return false;
    *val = w + k + 1;
    *vlen = len - k - 1;
    return true;
}

static u64 need_u64(const char *v, size_t n, const char *what)
{
    u64 x;
    if (!parse_u64(v, n, &x))
        panic("bad %s on the command line", what);
    return x;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void parse_orders(void)
{
    ord.code = 0xe2;
    ord.vcpus = 1;
    ord.count = 1;
    ord.trigger = true;
    memcpy(ord.pname, "crashme.exe", 11);
    ord.pname_len = 11;
    const char *s = cmdline;
    while (*s) {
        while (*s == ' ')
            s++;
        const char *w = s;
        while (*s && *s != ' ')
            s++;
        size_t len = (size_t)(s - w), n;
        const char *v;
        if (len == 0)
            break;
        if (word_is(w, len, "bugcheck", &v, &n)) {
            for (int i = 0; i < 5; i++) {
                size_t j = 0;
                while (j < n && v[j] != ',')
                    j++;
                u64 x = need_u64(v, j, "bugcheck");
                if (i == 0)
                    ord.code = x;
                else
                    ord.p[i - 1] = x;
                if (j >= n && i < 4)
                    panic("bugcheck= needs CODE,P1,P2,P3,P4");
                v += j + 1;
                n = j < n ? n - j - 1 : 0;
            }
        } else if (word_is(w, len, "entry", &v, &n)) {
            ord.direct = n == 6 && strncmp(v, "direct", 6) == 0;
            if (!ord.direct && !(n == 2 && strncmp(v, "ex", 2) == 0))
                panic("entry= must be ex or direct");
        } else if (word_is(w, len, "vcpus", &v, &n)) {
            ord.vcpus = (u32)need_u64(v, n, "vcpus");
        } else if (word_is(w, len, "on", &v, &n)) {
            ord.on = (u32)need_u64(v, n, "on");
        } else if (word_is(w, len, "delay", &v, &n)) {
            ord.delay_ms = need_u64(v, n, "delay");
            ord.trigger = false;
        } else if (word_is(w, len, "trigger", &v, &n)) {
            ord.trigger = true;
        } else if (word_is(w, len, "count", &v, &n)) {
            ord.count = (u32)need_u64(v, n, "count");
        } else if (word_is(w, len, "seed", &v, &n)) {
            ord.seed = need_u64(v, n, "seed");
        } else if (word_is(w, len, "pname", &v, &n)) {
            if (n % 2 || n / 2 > 15)
                panic("pname= takes at most 15 bytes in hex");
            ord.pname_len = (u32)(n / 2);
            for (u32 i = 0; i < ord.pname_len; i++) {
                int hi = hexval(v[2 * i]), lo = hexval(v[2 * i + 1]);
                if (hi < 0 || lo < 0)
                    panic("pname= is not hex");
                ord.pname[i] = (u8)(hi << 4 | lo);
            }
        } else if (word_is(w, len, "nosetup", &v, &n)) {
            ord.nosetup = true;
        } else if (word_is(w, len, "hvcrash", &v, &n)) {
            ord.hvcrash = true;
        } else if (word_is(w, len, "work", &v, &n)) {
            ord.work = need_u64(v, n, "work") != 0;
        } else if (word_is(w, len, "scenario", &v, &n)) {
            ord.scenario = v;
            ord.scenario_len = n;
        } else if (word_is(w, len, "lie", &v, &n)) {
            if (n == 6 && strncmp(v, "ptloop", 6) == 0)
                ord.lie_ptloop = true;
            else if (n == 6 && strncmp(v, "thread", 6) == 0)
                ord.lie_thread = true;
            else
                panic("lie= must be ptloop or thread");
        }
    }
    if (ord.vcpus < 1 || ord.vcpus > MAX_CPUS || ord.on >= ord.vcpus)
        panic("vcpus=%u on=%u: need 1..%u vCPUs and on < vcpus", ord.vcpus, ord.on, MAX_CPUS);
    if (ord.count < 1)
        ord.count = 1;
}

/* ---- high RAM pattern -------------------------------------------------------- */

/* Above 4 GiB, every 16 MiB and at the last 32 bytes of each RAM range:
 * "BSODMON-HIGHRAM!", the physical address, and its complement. */
static void mark(u64 pa)
{
    memcpy((void *)pa, "BSODMON-HIGHRAM!", 16);
    *(volatile u64 *)(pa + 16) = pa;
    *(volatile u64 *)(pa + 24) = ~pa;
}

static void write_highram_pattern(void)
{
    for (int i = 0; i < n_ram; i++) {
        if (ram[i].start < (4ull << 30))
            continue;
        u64 a = (ram[i].start + HIGHRAM_STEP - 1) & ~(HIGHRAM_STEP - 1);
        for (; a + 32 <= ram[i].end + 1; a += HIGHRAM_STEP)
            mark(a);
        mark((ram[i].end + 1 - 32) & ~31ull);
    }
}

/* ---- truth -------------------------------------------------------------------- */

static void print_json_bytes(const u8 *s, u32 n)
{
    serial_putc('"');
    for (u32 i = 0; i < n && s[i]; i++) {
        u8 c = s[i];
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
            kprintf("\\u%04x", c);
        else
            serial_putc((char)c);
    }
    serial_putc('"');
}

static void print_sym(const char *json, const char *key)
{
    u64 rva = layout_get(&W.lay, key);
    if (rva == LAYOUT_ABSENT)
        kprintf(", \"%s\": null", json);
    else
        kprintf(", \"%s\": \"0x%lx\"", json, W.base + rva);
}

/* The fields an analysis tool or a dump writer/reader checks (boot's
 * docstring describes them). */
static void print_truth_windows(void)
{
    kprintf(", \"NtMajorVersion\": %lu, \"NtMinorVersion\": %lu, \"NtBuildNumber\": %lu",
            layout_need(&W.lay, "ver:major"), layout_need(&W.lay, "ver:minor"),
            layout_need(&W.lay, "ver:build"));
    kprintf(", \"KernelDTB\": \"0x%lx\", \"SelfRefIndex\": %u", W.sys_pml4, W.selfref);
    print_sym("KdDebuggerDataBlock", "sym:KdDebuggerDataBlock");
    kprintf(", \"KdDebuggerDataSize\": %lu, \"KdDebuggerDataEncoded\": %s",
            layout_need(&W.lay, "kdbg:size"), W.kdbg_encoded ? "true" : "false");
    print_sym("KdVersionBlock", "sym:KdVersionBlock");
    print_sym("PsActiveProcessHead", "sym:PsActiveProcessHead");
    print_sym("PsLoadedModuleList", "sym:PsLoadedModuleList");
    print_sym("KiProcessorBlock", "sym:KiProcessorBlock");
    print_sym("KiBugCheckData", "sym:KiBugCheckData");
    print_sym("KeNumberProcessors", "sym:KeNumberProcessors");
    kprintf(", \"PfnDatabase\": \"0x%lx\", \"SystemTime\": %lu, \"BootTime\": %lu",
            W.pfn_db, W.system_time, W.boot_time);
    kprintf(", \"Prcbs\": [");
    for (unsigned i = 0; i < ord.vcpus; i++)
        kprintf("%s{\"Prcb\": \"0x%lx\", \"Context\": \"0x%lx\", \"ContextFrame\": \"0x%lx\"}",
                i ? ", " : "", W.cpu[i].prcb, W.cpu[i].context,
                W.cpu[i].prcb + layout_need(&W.lay, "off:_KPRCB.ProcessorState.ContextFrame"));
    kprintf("], \"Processes\": [");
    for (unsigned i = 0; i < W.n_procs; i++) {
        const struct process *p = W.procs[i];
        kprintf("%s{\"PID\": %lu, \"PPID\": %lu, \"Name\": ", i ? ", " : "", p->pid, p->ppid);
        print_json_bytes(p->name, p->name_len);
        kprintf(", \"DirectoryTableBase\": \"0x%lx\", \"CreateTime\": %lu, \"Peb\": \"0x%lx\", "
                "\"EProcess\": \"0x%lx\", \"SessionId\": ", p->dtb, p->create_time, p->peb, p->eprocess);
        if (p->has_session)
            kprintf("%lu}", p->session);
        else
            kprintf("null}");
    }
    kprintf("], \"Modules\": [");
    for (unsigned i = 0; i < W.n_mods; i++) {
        const struct module *m = &W.mods[i];
        kprintf("%s{\"Name\": \"%s\", \"Base\": \"0x%lx\", \"Size\": %u, \"TimeDateStamp\": %u}",
                i ? ", " : "", m->name, m->base, m->size, m->timestamp);
    }
    kprintf("]");
}

/* What the kernel stores by the time it reaches its follow points, for
 * these orders (both entries pass a NULL sixth argument). */
static void print_truth_final(void)
{
    if (layout_get(&W.lay, "sym:KiBugCheckData") == LAYOUT_ABSENT)
        return;
    u64 fin[5], driver;
    bugcheck_final(ord.code, ord.p, 0, fin, &driver);
    kprintf(", \"Final\": {\"BugCheckCode\": \"0x%lx\", \"BugCheckParameters\": [\"0x%lx\", "
            "\"0x%lx\", \"0x%lx\", \"0x%lx\"], \"FollowPoints\": [", fin[0], fin[1], fin[2], fin[3],
            fin[4]);
    const char *sep = "";
    static const char *const pts[] = { "sym:HvlLogGuestCrashInformation", "sym:KiDisplayBlueScreen" };
    for (unsigned i = 0; i < 2; i++) {
        u64 rva = layout_get(&W.lay, pts[i]);
        if (rva != LAYOUT_ABSENT) {
            kprintf("%s\"0x%lx\"", sep, W.base + rva);
            sep = ", ";
        }
    }
    kprintf("], \"Driver\": ");
    int m = -1;
    for (unsigned i = 0; i < W.n_mods && driver; i++)
        if (driver == W.mods[i].ldr + off("off:ldr.BaseDllName"))
            m = (int)i;
    if (m >= 0)
        kprintf("\"%s\"}", W.mods[m].name);
    else
        kprintf("null}");
}

static void print_truth(void)
{
    kprintf("{\"KernelBase\": \"0x%lx\", \"PdbName\": \"%s\", \"PdbGuid\": \"%s\", ",
            W.base, W.lay.pdb_name, W.lay.guid_age);
    kprintf("\"KeBugCheckEx\": \"0x%lx\", \"KeBugCheck2\": \"0x%lx\", \"VCPUs\": [",
            W.base + layout_need(&W.lay, "sym:KeBugCheckEx"),
            W.base + layout_need(&W.lay, "sym:KeBugCheck2"));
    for (unsigned i = 0; i < ord.vcpus; i++)
        kprintf("%s{\"CR3\": \"0x%lx\", \"GsBase\": \"0x%lx\", \"KernelGsBase\": \"0x%lx\"}",
                i ? ", " : "", W.cpu[i].cr3, W.cpu[i].kpcr, W.cpu[i].teb);
    kprintf("], \"PID\": %lu, \"PPID\": %lu, \"TID\": %lu, \"SessionId\": %lu, \"ProcessName\": ",
            W.victim.pid, W.victim.ppid, W.victim_tid, W.victim.session);
    print_json_bytes(ord.pname, ord.pname_len);
    kprintf(", \"Peb\": \"0x%lx\", \"OnVcpu\": %u, \"Entry\": \"%s\", \"BugCheckCode\": \"0x%lx\", "
            "\"BugCheckParameters\": [\"0x%lx\", \"0x%lx\", \"0x%lx\", \"0x%lx\"], \"Count\": %u, "
            "\"Seed\": %lu, \"Ram\": [",
            W.victim.peb, ord.on, ord.direct ? "direct" : "ex", ord.code, ord.p[0], ord.p[1],
            ord.p[2], ord.p[3], ord.count, ord.seed);
    for (int i = 0; i < n_ram; i++)
        kprintf("%s[\"0x%lx\", \"0x%lx\"]", i ? ", " : "", ram[i].start, ram[i].end);
    kprintf("]");
    print_truth_windows();
    print_truth_final();
    scenario_print_truth();
    kprintf("}\n");
}

/* ---- bug checks ------------------------------------------------------------------ */

static void wait_order(void)
{
    if (ord.trigger)
        wait_trigger();
    else
        wait_ms(ord.delay_ms);
}

static void bugcheck_now(void)
{
    u64 target = W.base + layout_need(&W.lay, ord.direct ? "sym:KeBugCheck2" : "sym:KeBugCheckEx");
    serial_puts("bugcheck now\n");
    call_ms_abi(target, ord.code, ord.p[0], ord.p[1], ord.p[2], ord.p[3]);
    panic("KeBugCheck returned");
}

/* Where the bug-checking vCPU's stack starts again for the next bug check. */
static u64 again_rsp;

static void __attribute__((noreturn)) bugcheck_again(void)
{
    wait_order();
    bugcheck_now();
    __builtin_unreachable();
}

/* A function of the image KeBugCheck2 calls once the final code is stored
 * (a `ret` at its ISF RVA), when the table has it. */
static void call_image(const char *sym)
{
    u64 rva = layout_get(&W.lay, sym);
    if (rva != LAYOUT_ABSENT)
        ((void (*)(void))(W.base + rva))();
}

/* Spin about `cycles` TSC cycles (interrupts are off in KeBugCheck2). */
static void spin_tsc(u64 cycles)
{
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    u64 t0 = (u64)hi << 32 | lo, t;
    do {
        __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
        t = (u64)hi << 32 | lo;
    } while (t - t0 < cycles);
}

/* Reached through the image's KeBugCheck2. Paints the screen, tells pvpanic,
 * and either halts this vCPU for good or, when more bug checks were ordered,
 * bug-checks again once told to, from the stack run() started with (not
 * nested in this one's frames: thousands in a row must not overflow it). */
void bugcheck2_handler(u64 code, u64 p1, u64 p2, u64 p3, u64 p4, u64 trap_frame)
{
    u64 p[4] = { p1, p2, p3, p4 };
    /* As Windows' KeBugCheck2: the entry code into KiBugCheckData first,
     * then the code-specific rewrites, then the Hyper-V crash report and
     * the blue screen, which bsodmon follows the bug check to. */
    kibugcheckdata_fill(code, p);
    u64 fin[5], driver;
    bugcheck_final(code, p, trap_frame, fin, &driver);
    kibugcheckdata_fill(fin[0], fin + 1);
    kibugcheckdriver_set(driver);
    if (scenario_nofollow())
        spin_tsc(2000ull * 1000 * 1000);  /* ~0.8 s at 2.6 GHz: far past bsodmon's bound */
    call_image("sym:HvlLogGuestCrashInformation");
    call_image("sym:KiDisplayBlueScreen");
    bluescreen(code, p);
    kprintf("bluescreen 0x%lx 0x%lx 0x%lx 0x%lx 0x%lx\n", code, p1, p2, p3, p4);
    if (ord.hvcrash) {
        if (hv_crash_available()) {
            serial_puts("hv-crash report\n"); /* before: the hypervisor may stop us */
            hv_crash_report(code, p);
        } else {
            serial_puts("hv-crash unavailable\n");
        }
    }
    pvpanic_signal();
    if (++bugchecks_done < ord.count)
        run_on_stack(again_rsp, bugcheck_again);
    halt_forever();
}

static void run(unsigned i)
{
    if (i != ord.on)
        halt_forever(); /* idle: QEMU still reports the vCPU as running */
    while (!world_ready)
        cpu_relax();
    /* run() never returns: its frame and what is below it are free again
     * once the first bug check has started. */
    again_rsp = (u64)__builtin_frame_address(0) - 64;
    lapic_timer_start();
    wait_order();
    bugcheck_now();
}

void ap_main(void)
{
    unsigned i = ap_booting;
    cpu_setup(i);
    W.cpu[i].up = true;
    run(i);
}

void kmain(u32 start_info)
{
    read_start_info(start_info);
    parse_orders();
    rng_seed(ord.seed);
    if (ord.nosetup) {
        serial_puts("ready\n{\"NoKernel\": true}\n");
        halt_forever();
    }
    if (!blob_pa)
        panic("no layout blob: pass it with -initrd");
    layout_open(&W.lay, (const void *)blob_pa, blob_size);
    u64 low_end = 0;
    for (int i = 0; i < n_ram; i++)
        if (ram[i].start <= (u64)_end && ram[i].end >= (u64)_end)
            low_end = ram[i].end + 1;
    palloc_init(((u64)_end + 0xfffff) & ~0xfffffull, low_end, blob_pa, blob_pa + blob_size);
    world_build(); /* maps all RAM: the boot tables cover only 4 GiB */
    if (ord.scenario)
        scenario_apply(ord.scenario, ord.scenario_len);
    write_highram_pattern();
    cpu_setup(0);
    W.cpu[0].up = true;
    smp_start_aps();
    serial_puts("ready\n");
    print_truth();
    world_ready = true;
    run(0);
}
