/* ram.h - reading guest RAM of a QEMU VM from the host.
 *
 * Fastest first: a shared memory backend file mapped read-only (zero copy),
 * else process_vm_readv() on the QEMU process at the host addresses QEMU
 * reports (HMP gpa2hva), else the GDB stub's 'm' packets in physical mode
 * (~30 MB/s). Only RAM is ever read; device memory (MMIO, ROM, the PCI hole)
 * is refused, since reading it could have side effects.
 */
#ifndef BM_VMI_QEMU_RAM_H
#define BM_VMI_QEMU_RAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/err.h"
#include "vmi/qemu/qmp.h"
#include "vmi/qemu/rsp.h"
#include "vmi/vmi.h"

#define QEMU_RAM_MAX_RANGES 32

struct qemu_ram_range {
    uint64_t start, end;    /* guest-physical, inclusive */
    uint64_t hva;           /* host address of `start` in QEMU (process) */
    uint64_t file_off;      /* offset of `start` in the backend file (shm) */
};

struct qemu_ram {
    enum vmi_mem_path path;
    pid_t pid;
    size_t n;
    struct qemu_ram_range r[QEMU_RAM_MAX_RANGES];
    struct vmi_range ranges[QEMU_RAM_MAX_RANGES];
    int shm_fd;
    const uint8_t *shm;     /* the mapped backend file */
    size_t shm_size;
    struct rsp_conn *stub;  /* fallback, not owned */
    char why_not_fast[256]; /* why a faster path was not taken (for -v) */
};

/* Learn the RAM layout through QMP and pick the fastest working path.
 * `force` may name a path to use ("shm", "process", "gdbstub") or be NULL. */
int qemu_ram_open(struct qemu_ram *ram, struct qemu_chan *qmp, pid_t qemu_pid,
                  struct rsp_conn *stub, const char *force, struct bm_err *err);
void qemu_ram_close(struct qemu_ram *ram);

int qemu_ram_read(struct qemu_ram *ram, uint64_t pa, void *buf, size_t len,
                  struct bm_err *err);
/* Zero-copy pointer into RAM (shm path only), NULL otherwise. */
const void *qemu_ram_map(struct qemu_ram *ram, uint64_t pa, size_t len);

#endif
