/* qemu.h - attach to a QEMU/KVM VM by its QMP socket (see qemu.c). */
#ifndef BM_VMI_QEMU_QEMU_H
#define BM_VMI_QEMU_QEMU_H

#include <stdbool.h>

#include <sys/types.h>

#include "base/err.h"
#include "vmi/qemu/route.h"
#include "vmi/vmi.h"

struct vmi_qemu_opts {
    const struct qemu_route *route;   /* the VM (route.h) */
    bool software_breakpoints;  /* Z0 instead of Z1: patches guest memory */
    const char *memory_access;  /* NULL (fastest), "shm", "process", "gdbstub" */
};

/* Attach; the guest is left stopped (the caller arms and resumes it). */
int vmi_qemu_open(struct vmi *v, const struct vmi_qemu_opts *opts, struct bm_err *err);
/* Let go of the monitor so the VM's manager can use it (it is reopened
 * briefly when needed). */
void vmi_qemu_release_monitor(struct vmi *v);
/* Why a faster memory path was not taken ("" when the fastest was). */
const char *vmi_qemu_mem_note(const struct vmi *v);

/* How the VM is reached, for --info and -v. Strings stay valid while
 * attached; NULL where they do not apply. */
struct vmi_qemu_desc {
    const char *via;       /* "qmp" or "libvirt" */
    const char *socket;    /* qmp: the QMP socket */
    const char *uri;       /* libvirt: the connection */
    const char *domain;    /* libvirt: its name */
    const char *uuid;      /* libvirt: its UUID */
    pid_t pid;             /* QEMU */
    const char *stub;      /* the GDB stub's unix socket */
};
void vmi_qemu_describe(const struct vmi *v, struct vmi_qemu_desc *d);

/* A cheap look at a VM that may not run Windows yet (firmware, boot
 * loader): vCPU 0's IDT base through the monitor; the VM is not paused and
 * no stub is opened. 1 when the IDT lies where an x64 kernel's does (the
 * upper half), 0 when not, -1 on error. */
int vmi_qemu_probe_kernel(const struct qemu_route *r, struct bm_err *err);

#endif
