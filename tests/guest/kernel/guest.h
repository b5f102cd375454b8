/* guest.h - state shared by the guest kernel's parts. */
#ifndef GUEST_GUEST_H
#define GUEST_GUEST_H

#include "layout.h"
#include "lib.h"

#define MAX_CPUS 4
#define MAX_RAM 16
#define MAX_PROCS 10
#define MAX_MODS 8
#define MAX_SESSIONS 4
#define KUSER_SHARED_DATA 0xfffff78000000000ull
#define SPECIAL_POOL_SIZE (32ull << 20)   /* the guest's special pool; its upper half is "freed" */

struct ram_range {
    u64 start, end; /* inclusive end */
};

/* What the host ordered on the kernel command line. */
struct orders {
    u64 code, p[4];
    bool direct;          /* entry=direct: straight into KeBugCheck2 */
    u32 vcpus, on;        /* vCPUs, and the one that bug-checks */
    u64 delay_ms;         /* 0 with trigger */
    bool trigger;         /* wait for a byte on the serial port */
    u32 count;            /* bug checks in a row on the same vCPU */
    u64 seed;
    u8 pname[16];
    u32 pname_len;
    bool nosetup;         /* stop before building anything Windows-like */
    bool hvcrash;         /* KeBugCheck2 also writes the Hyper-V crash MSRs (KVM, hv-crash) */
    bool work;            /* work=1: compute while waiting, print "rate N" */
    bool lie_ptloop;      /* the victim's page tables loop under its PEB */
    bool lie_thread;      /* the bug-check vCPU's CurrentThread points nowhere */
    const char *scenario; /* scenario=NAME (kernel/scenario.c), or NULL */
    size_t scenario_len;
};

struct cpu {
    u64 kpcr, idt, gdt, cr3, teb, thread;
    u64 prcb, context;    /* KPRCB, and the CONTEXT its Context points to */
    volatile bool up;
};

struct process {
    u64 eprocess, dtb, peb, teb;
    u64 pid, ppid, session;
    u64 create_time;      /* FILETIME */
    bool has_session;     /* EPROCESS.Session set (not System, not smss) */
    const u8 *name;
    u32 name_len;
};

struct module {
    const char *name, *path;
    u64 base;
    u64 ldr;              /* its loader entry (VA) */
    u32 size, timestamp;
};

struct world {
    struct layout lay;
    u64 base;             /* ntoskrnl base (VA) */
    u64 image_pa;
    u64 sys_pml4;         /* System's DirectoryTableBase */
    u64 pool_va, pool_pa, pool_used, pool_size;
    struct process idle, system, parent, victim;
    struct process extra[5];  /* smss, csrss, wininit, services, lsass */
    struct process *procs[MAX_PROCS]; /* PsActiveProcessHead's order */
    unsigned n_procs;
    u64 victim_tid;
    struct cpu cpu[MAX_CPUS];
    u32 selfref;          /* the self-referencing PML4 index */
    u64 pool_slot;
    u64 pfn_db;           /* MmPfnDatabase's value */
    u64 boot_time, system_time; /* FILETIME */
    struct module mods[MAX_MODS];
    unsigned n_mods;
    bool kdbg_encoded;
    u64 session_space[MAX_SESSIONS];
    u64 special_pool;     /* VA of the special pool (nothing mapped), 0: none */
};

extern struct orders ord;
extern struct world W;
extern struct ram_range ram[MAX_RAM];
extern int n_ram;

/* world.c */
u64 palloc(u64 size, u64 align);
void palloc_init(u64 start, u64 end, u64 avoid_start, u64 avoid_end);
void world_build(void);
void cpu_setup(unsigned i); /* load GDT/IDT/MSRs/CR3 of vCPU i, on vCPU i */
void map(u64 pml4, u64 va, u64 pa, bool large, u64 flags);
u64 pool_alloc(u64 size, u64 align);
u64 off(const char *key);
void put64(u64 va, u64 o, u64 v);
void put32(u64 va, u64 o, u32 v);
void put16(u64 va, u64 o, u16 v);
void list_insert_tail(u64 head, u64 entry);

/* windata.c: what analysis tools read besides processes and threads */
void kuser_build(u64 kuser_pa);
void modules_build(void);
void kdata_finish(void); /* KiProcessorBlock, KeNumberProcessors, ..., the KDBG (encoded last) */
void kibugcheckdata_fill(u64 code, const u64 p[4]);
void kibugcheckdriver_set(u64 ustr);
bool kva_mapped(u64 va);
int module_of(u64 va);
void bugcheck_final(u64 code, const u64 p[4], u64 trap_frame, u64 out[5], u64 *driver);
void save_control_state(u64 state); /* KiSaveProcessorControlState(&Prcb->ProcessorState) */

/* scenario.c: bug checks that crash the way Windows does (analysis tests) */
void scenario_apply(const char *name, size_t len);
void scenario_print_truth(void);
void scenario_lie_driver(u64 *driver);  /* a hostile KiBugCheckDriver, when ordered */
bool scenario_nofollow(void);       /* KeBugCheck2 dawdles before its follow points */

/* hw.c */
void lapic_timer_start(void);
void wait_ms(u64 ms);
void wait_trigger(void);
void smp_start_aps(void);
void bluescreen(u64 code, const u64 p[4]);
void pvpanic_signal(void);
bool hv_crash_available(void);
void hv_crash_report(u64 code, const u64 p[4]);
extern volatile bool world_ready;
extern volatile unsigned ap_booting;

/* entry.S */
extern char ap_tramp_start[], ap_tramp_end[], ap_tramp_cr3[], ap_tramp_stack[], ap_tramp_entry[];
void kebugcheck2_entry(void);
void rtl_capture_context(void);
void ki_save_control_state(void);
void isr_common(void);
void call_ms_abi(u64 target, u64 code, u64 p1, u64 p2, u64 p3, u64 p4);
void run_on_stack(u64 top, void (*fn)(void)) __attribute__((noreturn));
void reload_segments(void);

/* kmain.c */
void ap_main(void);
void kmain(u32 start_info);
void bugcheck2_handler(u64 code, u64 p1, u64 p2, u64 p3, u64 p4, u64 trap_frame);
void isr_dispatch(u64 vector, u64 *frame);

#endif
