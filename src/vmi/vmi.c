/* vmi.c - checked wrappers over a backend's ops table (see vmi.h). */
#include "vmi/vmi.h"

#define NEED(v, slot)                                                              \
    do {                                                                           \
        if ((v) == NULL || (v)->ops == NULL || (v)->ops->slot == NULL)             \
            return bm_err_set(err, "the %s backend cannot " #slot,                 \
                              (v) && (v)->ops ? (v)->ops->name : "(none)");        \
    } while (0)

const char *vmi_mem_path_name(enum vmi_mem_path p)
{
    switch (p) {
    case VMI_MEM_PROCESS: return "process";
    case VMI_MEM_SHM: return "shm";
    case VMI_MEM_STUB: return "gdbstub";
    }
    return "unknown";
}

void vmi_close(struct vmi *v)
{
    if (v != NULL && v->ops != NULL && v->ops->close != NULL)
        v->ops->close(v->be);
    if (v != NULL) {
        v->ops = NULL;
        v->be = NULL;
    }
}

unsigned vmi_vcpu_count(const struct vmi *v)
{
    return v && v->ops && v->ops->vcpu_count ? v->ops->vcpu_count(v->be) : 0;
}

int vmi_get_regs(const struct vmi *v, unsigned vcpu, struct vmi_regs *r, struct bm_err *err)
{
    NEED(v, get_regs);
    return v->ops->get_regs(v->be, vcpu, r, err);
}

int vmi_idt_base(const struct vmi *v, unsigned vcpu, uint64_t *base, struct bm_err *err)
{
    NEED(v, idt_base);
    return v->ops->idt_base(v->be, vcpu, base, err);
}

int vmi_read_phys(const struct vmi *v, uint64_t pa, void *buf, size_t len, struct bm_err *err)
{
    NEED(v, read_phys);
    return v->ops->read_phys(v->be, pa, buf, len, err);
}

const void *vmi_map_phys(const struct vmi *v, uint64_t pa, size_t len)
{
    return v && v->ops && v->ops->map_phys ? v->ops->map_phys(v->be, pa, len) : NULL;
}

size_t vmi_ram_ranges(const struct vmi *v, const struct vmi_range **ranges)
{
    if (v && v->ops && v->ops->ram_ranges)
        return v->ops->ram_ranges(v->be, ranges);
    *ranges = NULL;
    return 0;
}

enum vmi_mem_path vmi_mem_path(const struct vmi *v)
{
    return v && v->ops && v->ops->mem_path ? v->ops->mem_path(v->be) : VMI_MEM_STUB;
}

int vmi_bp_insert(const struct vmi *v, uint64_t va, struct bm_err *err)
{
    NEED(v, bp_insert);
    return v->ops->bp_insert(v->be, va, err);
}

int vmi_bp_remove(const struct vmi *v, uint64_t va, struct bm_err *err)
{
    NEED(v, bp_remove);
    return v->ops->bp_remove(v->be, va, err);
}

int vmi_pause(const struct vmi *v, struct bm_err *err)
{
    NEED(v, pause);
    return v->ops->pause(v->be, err);
}

int vmi_resume(const struct vmi *v, struct bm_err *err)
{
    NEED(v, resume);
    return v->ops->resume(v->be, err);
}

int vmi_run_to(const struct vmi *v, unsigned vcpu, const uint64_t *addrs, size_t n,
               int timeout_ms, uint64_t *hit, struct bm_err *err)
{
    NEED(v, run_to);
    if (n == 0 || n > VMI_RUN_TO_MAX)
        return bm_err_set(err, "run_to: %zu addresses (1..%d)", n, VMI_RUN_TO_MAX);
    return v->ops->run_to(v->be, vcpu, addrs, n, timeout_ms, hit, err);
}

int vmi_event_fd(const struct vmi *v)
{
    return v && v->ops && v->ops->event_fd ? v->ops->event_fd(v->be) : -1;
}

int vmi_poll_event(const struct vmi *v, struct vmi_event *ev, struct bm_err *err)
{
    NEED(v, poll_event);
    return v->ops->poll_event(v->be, ev, err);
}

int vmi_detach(const struct vmi *v, bool leave_paused, struct bm_err *err)
{
    NEED(v, detach);
    return v->ops->detach(v->be, leave_paused, err);
}

int vmi_read_phys_cb(void *ctx, uint64_t pa, void *buf, size_t len, struct bm_err *err)
{
    return vmi_read_phys(ctx, pa, buf, len, err);
}

int vmi_paging(const struct vmi *v, const struct vmi_regs *regs, uint64_t cr3,
               struct paging *pg, struct bm_err *err)
{
    enum paging_mode mode = paging_mode_from_regs(regs->cr0, regs->cr4, regs->efer);
    return paging_init(pg, mode, cr3, 0, vmi_read_phys_cb, (void *)v, err);
}
