/* qemu.h - attach to a QEMU/KVM VM by its QMP socket (see qemu.c). */
#ifndef BM_VMI_QEMU_QEMU_H
#define BM_VMI_QEMU_QEMU_H

#include <stdbool.h>

#include "base/err.h"
#include "vmi/vmi.h"

struct vmi_qemu_opts {
    const char *qmp_path;
    bool software_breakpoints;  /* Z0 instead of Z1: patches guest memory */
    const char *memory_access;  /* NULL (fastest), "shm", "process", "gdbstub" */
};

/* Attach; the guest is left stopped (the caller arms and resumes it). */
int vmi_qemu_open(struct vmi *v, const struct vmi_qemu_opts *opts, struct bm_err *err);
/* Let go of the QMP socket so the VM's manager can use it. */
void vmi_qemu_release_qmp(struct vmi *v);
/* Why a faster memory path was not taken ("" when the fastest was). */
const char *vmi_qemu_mem_note(const struct vmi *v);

#endif
