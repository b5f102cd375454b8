/* hw.c - the devices the guest touches: local APIC (timer, IPIs to start the
 * other vCPUs), VGA text memory (the blue screen), pvpanic, and the interrupt
 * dispatcher behind the image's IDT thunks. */
#include "guest.h"

#define LAPIC 0xfee00000ull
#define LAPIC_ID 0x20
#define LAPIC_EOI 0xb0
#define LAPIC_SVR 0xf0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_DIV 0x3e0
#define CLOCK_VECTOR 0xd1 /* Windows' clock interrupt vector */
#define SPURIOUS_VECTOR 0xff
#define PVPANIC_PORT 0x505

volatile bool world_ready;
static volatile u64 ticks;

static u32 lapic_read(u32 reg) { return *(volatile u32 *)(LAPIC + reg); }
static void lapic_write(u32 reg, u32 v) { *(volatile u32 *)(LAPIC + reg) = v; }

/* A 1 ms periodic timer on this vCPU: QEMU's (and KVM's) local APIC counts
 * at 1 GHz, so with divide-by-1 one million counts is a millisecond. It lets
 * a waiting vCPU sleep in hlt instead of spinning a host core. */
void lapic_timer_start(void)
{
    outb(0x21, 0xff); /* mask the 8259s: their vectors would clash */
    outb(0xa1, 0xff);
    lapic_write(LAPIC_SVR, 0x100 | SPURIOUS_VECTOR);
    lapic_write(LAPIC_TIMER_DIV, 0xb);
    lapic_write(LAPIC_LVT_TIMER, (1u << 17) | CLOCK_VECTOR);
    lapic_write(LAPIC_TIMER_INIT, 1000000);
}

/* work=1 (benchmarks): instead of sleeping, the waiting vCPU runs a fixed
 * compute loop and prints "rate N" (iterations per second, timed with the
 * 1 ms LAPIC ticks) about every 200 ms. */
#define WORK_CHUNK 16384
#define WORK_WINDOW_MS 200
static u64 work_x = 0x9e3779b97f4a7c15ull, work_iters, work_t0;
static bool work_started;

static void work_chunk(void)
{
    u64 x = work_x;
    __asm__ volatile("sti" ::: "memory");
    for (u32 i = 0; i < WORK_CHUNK; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    __asm__ volatile("cli" ::: "memory");
    work_x = x;
    u64 now = ticks;
    if (!work_started) {
        work_started = true;
        work_t0 = now;
        return;
    }
    work_iters += WORK_CHUNK;
    if (now - work_t0 >= WORK_WINDOW_MS) {
        kprintf("rate %lu\n", work_iters * 1000 / (now - work_t0));
        work_t0 = now;
        work_iters = 0;
    }
}

static void sleep_tick(void)
{
    if (ord.work) {
        work_chunk();
        return;
    }
    __asm__ volatile("sti; hlt; cli" ::: "memory");
}

void wait_ms(u64 ms)
{
    u64 start = ticks;
    while (ticks - start < ms)
        sleep_tick();
}

void wait_trigger(void)
{
    while (serial_getc() < 0)
        sleep_tick();
}

void isr_dispatch(u64 vector, u64 *frame)
{
    if (vector == CLOCK_VECTOR) {
        ticks++;
        lapic_write(LAPIC_EOI, 0);
        return;
    }
    if (vector == SPURIOUS_VECTOR)
        return;
    /* frame: 10 saved registers, the vector, then (error code,) RIP. */
    bool errcode = vector == 8 || (vector >= 10 && vector <= 14) || vector == 17 ||
                   vector == 21 || vector == 29 || vector == 30;
    u64 rip = frame[11 + (errcode ? 1 : 0)];
    u64 cr2;
    __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
    panic("exception %lu at rip %lx (cr2 %lx, lapic id %u)", vector, rip, cr2,
          lapic_read(LAPIC_ID) >> 24);
}

/* ---- other vCPUs ---------------------------------------------------------- */

static u8 ap_stacks[MAX_CPUS][16384] __attribute__((aligned(16)));
volatile unsigned ap_booting;

static void spin(u64 n)
{
    for (volatile u64 i = 0; i < n; i++)
        cpu_relax();
}

static void ipi(unsigned apic, u32 lo)
{
    lapic_write(LAPIC_ICR_HI, apic << 24);
    lapic_write(LAPIC_ICR_LO, lo);
    while (lapic_read(LAPIC_ICR_LO) & (1u << 12))
        cpu_relax();
}

/* INIT-SIPI-SIPI, one AP at a time, through the trampoline at 0x8000. */
void smp_start_aps(void)
{
    u64 len = (u64)(ap_tramp_end - ap_tramp_start);
    memcpy((void *)0x8000, ap_tramp_start, len);
    u64 *cr3 = (u64 *)(0x8000 + (ap_tramp_cr3 - ap_tramp_start));
    u64 *stack = (u64 *)(0x8000 + (ap_tramp_stack - ap_tramp_start));
    u64 *entry = (u64 *)(0x8000 + (ap_tramp_entry - ap_tramp_start));
    *cr3 = W.sys_pml4;
    *entry = (u64)ap_main;
    for (unsigned i = 1; i < ord.vcpus; i++) {
        ap_booting = i;
        *stack = (u64)&ap_stacks[i][sizeof ap_stacks[i]];
        ipi(i, 0x4500);
        spin(10000);
        ipi(i, 0x4608);
        for (int tries = 0; !W.cpu[i].up; tries++) {
            spin(100000);
            if (tries == 100)
                ipi(i, 0x4608);
            if (tries > 1000000)
                panic("vCPU %u did not start", i);
        }
    }
}

/* ---- the blue screen --------------------------------------------------------- */

static void vga_line(int row, const char *s)
{
    volatile u16 *v = (volatile u16 *)0xb8000ull + row * 80;
    for (int c = 0; c < 80 && *s; c++)
        v[c] = (u16)(0x1f00 | (u8)*s++);
}

void bluescreen(u64 code, const u64 p[4])
{
    volatile u16 *v = (volatile u16 *)0xb8000ull;
    for (int i = 0; i < 80 * 25; i++)
        v[i] = 0x1f20;
    char buf[96];
    vga_line(2, "  :(");
    vga_line(4, "  Your PC ran into a problem and needs to restart.");
    ksnprintf(buf, sizeof buf, "  *** STOP: 0x%08lx", code);
    for (char *c = buf; *c; c++)
        if (*c >= 'a' && *c <= 'f')
            *c -= 32;
    vga_line(6, buf);
    for (int i = 0; i < 4; i++) {
        ksnprintf(buf, sizeof buf, "  Parameter %d: 0x%016lx", i + 1, p[i]);
        vga_line(8 + i, buf);
    }
}

void pvpanic_signal(void)
{
    /* The port reads 0xff without the device; bit 0 = "panicked" supported. */
    u8 caps = inb(PVPANIC_PORT);
    if (caps != 0xff && (caps & 1))
        outb(PVPANIC_PORT, 1);
}

/* What Windows does when the hypervisor offers crash MSRs (Hyper-V's
 * HV_X64_MSR_CRASH_P0..P4, then CRASH_CTL with CrashNotify): KVM hands it
 * to QEMU, which sends GUEST_PANICKED with the five values. Only under KVM
 * with hv-crash: anywhere else the MSRs do not exist (#GP). */
#define HV_MSR_CRASH_P0 0x40000100u
#define HV_MSR_CRASH_CTL 0x40000105u
#define HV_CPUID_INTERFACE 0x40000001u
#define HV_CPUID_FEATURES 0x40000003u
#define HV_SIGNATURE_EAX 0x31237648u          /* "Hv#1" */
#define HV_GUEST_CRASH_MSR_AVAILABLE (1u << 10) /* CPUID 0x40000003 EDX */

/* Windows looks before it writes: the Hyper-V interface signature, then the
 * "guest crash MSRs available" feature bit. A KVM built without Hyper-V
 * emulation (CONFIG_KVM_HYPERV=n) offers neither, whatever -cpu says. */
bool hv_crash_available(void)
{
    u32 r[4];
    cpuid(0x40000000u, r);
    if (r[0] < HV_CPUID_FEATURES)
        return false;
    cpuid(HV_CPUID_INTERFACE, r);
    if (r[0] != HV_SIGNATURE_EAX)
        return false;
    cpuid(HV_CPUID_FEATURES, r);
    return (r[3] & HV_GUEST_CRASH_MSR_AVAILABLE) != 0;
}

void hv_crash_report(u64 code, const u64 p[4])
{
    wrmsr(HV_MSR_CRASH_P0, code);
    for (u32 i = 0; i < 4; i++)
        wrmsr(HV_MSR_CRASH_P0 + 1 + i, p[i]);
    wrmsr(HV_MSR_CRASH_CTL, 1ull << 63);
}
