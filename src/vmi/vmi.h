/* vmi.h - backend-neutral introspection of one guest.
 *
 * Layers above (win/, plugins/, monitor/) see a guest only through this
 * interface: vCPU registers, guest-physical memory (RAM only, never device
 * memory), virtual memory through our own page walker, breakpoints,
 * pause/resume and stop events. A backend fills one const ops table
 * (vmi/qemu/ today; a LibVMI backend for Xen or KVMi can be added beside it
 * without touching the layers above). Every call goes through a wrapper in
 * vmi.c that refuses a missing slot with an error instead of crashing.
 */
#ifndef BM_VMI_VMI_H
#define BM_VMI_VMI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "vmi/paging.h"

/* The integer and system registers of one vCPU. */
struct vmi_regs {
    uint64_t rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp;
    uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
    uint64_t rip, rflags;
    uint64_t cr0, cr2, cr3, cr4, efer;
    uint64_t fs_base, gs_base, kernel_gs_base;
    uint16_t cs, ss;
};

/* One range of guest RAM, inclusive end. */
struct vmi_range {
    uint64_t start, end;
};

/* How guest RAM is read: straight out of the hypervisor process, from a
 * shared memory backend file, or (slow fallback) through the debug stub. */
enum vmi_mem_path { VMI_MEM_PROCESS, VMI_MEM_SHM, VMI_MEM_STUB };

enum vmi_event_kind {
    VMI_EVENT_BREAKPOINT, /* a vCPU hit one of our breakpoints; all stopped */
    VMI_EVENT_STOPPED,    /* the guest stopped for another reason */
    VMI_EVENT_GONE,       /* the VM is gone (powered off, QEMU exited) */
};

struct vmi_event {
    enum vmi_event_kind kind;
    int vcpu;       /* -1 when unknown */
    uint64_t addr;  /* breakpoint address for VMI_EVENT_BREAKPOINT */
};

struct vmi_ops {
    const char *name;
    void (*close)(void *be);
    unsigned (*vcpu_count)(void *be);
    int (*get_regs)(void *be, unsigned vcpu, struct vmi_regs *r, struct bm_err *err);
    int (*idt_base)(void *be, unsigned vcpu, uint64_t *base, struct bm_err *err);
    int (*read_phys)(void *be, uint64_t pa, void *buf, size_t len, struct bm_err *err);
    /* Optional: a readable pointer to len bytes of RAM at pa (zero copy), or
     * NULL when the backend cannot map it. */
    const void *(*map_phys)(void *be, uint64_t pa, size_t len);
    size_t (*ram_ranges)(void *be, const struct vmi_range **ranges);
    enum vmi_mem_path (*mem_path)(void *be);
    int (*bp_insert)(void *be, uint64_t va, struct bm_err *err);
    int (*bp_remove)(void *be, uint64_t va, struct bm_err *err);
    int (*pause)(void *be, struct bm_err *err);
    /* Resume all vCPUs; steps a vCPU stopped on a breakpoint over it. */
    int (*resume)(void *be, struct bm_err *err);
    /* Optional: see vmi_run_to. */
    int (*run_to)(void *be, unsigned vcpu, const uint64_t *addrs, size_t n, int timeout_ms,
                  uint64_t *hit, struct bm_err *err);
    /* A descriptor that becomes readable when poll_event may have news. */
    int (*event_fd)(void *be);
    /* 1 with *ev, 0 when nothing yet, -1 on error. Never blocks. */
    int (*poll_event)(void *be, struct vmi_event *ev, struct bm_err *err);
    /* Remove every breakpoint, let go of the guest, leave it running (or
     * paused). Idempotent. */
    int (*detach)(void *be, bool leave_paused, struct bm_err *err);
};

struct vmi {
    const struct vmi_ops *ops;
    void *be;
};

const char *vmi_mem_path_name(enum vmi_mem_path p);

void vmi_close(struct vmi *v);
unsigned vmi_vcpu_count(const struct vmi *v);
int vmi_get_regs(const struct vmi *v, unsigned vcpu, struct vmi_regs *r, struct bm_err *err);
int vmi_idt_base(const struct vmi *v, unsigned vcpu, uint64_t *base, struct bm_err *err);
int vmi_read_phys(const struct vmi *v, uint64_t pa, void *buf, size_t len, struct bm_err *err);
const void *vmi_map_phys(const struct vmi *v, uint64_t pa, size_t len);
size_t vmi_ram_ranges(const struct vmi *v, const struct vmi_range **ranges);
enum vmi_mem_path vmi_mem_path(const struct vmi *v);
int vmi_bp_insert(const struct vmi *v, uint64_t va, struct bm_err *err);
int vmi_bp_remove(const struct vmi *v, uint64_t va, struct bm_err *err);
int vmi_pause(const struct vmi *v, struct bm_err *err);
int vmi_resume(const struct vmi *v, struct bm_err *err);

/* Follow a vCPU a little further without patching guest memory: vCPU
 * `vcpu`, stopped on one of our breakpoints, runs alone (the others stay
 * stopped) until it reaches one of addrs[0..n) (n <= VMI_RUN_TO_MAX;
 * hardware breakpoints, whatever --software-breakpoints says), for at most
 * timeout_ms. Returns 1 when an address was reached
 * (*hit), 0 when none was within the bound; in both cases the guest is
 * stopped again on return. The temporary breakpoints stay inserted until
 * the next resume or detach, which remove them before anything runs (as a
 * new stub client, the guardian removes them too). -1 on error (the guest
 * is stopped when that could be done). */
#define VMI_RUN_TO_MAX 4
int vmi_run_to(const struct vmi *v, unsigned vcpu, const uint64_t *addrs, size_t n,
               int timeout_ms, uint64_t *hit, struct bm_err *err);
int vmi_event_fd(const struct vmi *v);
int vmi_poll_event(const struct vmi *v, struct vmi_event *ev, struct bm_err *err);
int vmi_detach(const struct vmi *v, bool leave_paused, struct bm_err *err);

/* Physical reads with the paging_read_fn shape; ctx is a struct vmi *. */
int vmi_read_phys_cb(void *ctx, uint64_t pa, void *buf, size_t len, struct bm_err *err);

/* A page walker for the address space `cr3` in the paging mode `regs` are
 * in (CR0/CR4/EFER of a vCPU). */
int vmi_paging(const struct vmi *v, const struct vmi_regs *regs, uint64_t cr3,
               struct paging *pg, struct bm_err *err);

#endif
