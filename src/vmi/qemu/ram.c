/* ram.c - see ram.h. */
#include "vmi/qemu/ram.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define MTREE_CAP 64

/* Guest RAM is what a memory backend provides (pc.ram or -object
 * memory-backend-*): other "ram" regions in the flat view, such as
 * vga.vram, are device memory and are never read. */
static bool is_memdev(const struct qmp_memdev *devs, size_t ndev, const char *block)
{
    for (size_t i = 0; i < ndev; i++)
        if (strcmp(devs[i].id, block) == 0)
            return true;
    return false;
}

static int ram_ranges_from_qmp(struct qemu_ram *ram, struct qemu_chan *qmp,
                               const struct qmp_memdev *devs, size_t ndev,
                               struct qmp_ram_range *mt, size_t *nmt, struct bm_err *err)
{
    struct qmp_ram_range all[MTREE_CAP];
    size_t nall = 0;
    if (qmp_ram_layout(qmp, all, MTREE_CAP, &nall, err) < 0)
        return -1;
    *nmt = 0;
    for (size_t i = 0; i < nall; i++) {
        if (!is_memdev(devs, ndev, all[i].block))
            continue;
        /* One range where the flat view splits a backend only by access
         * (the BIOS shadow's read-only pieces): contiguous in the guest and
         * in the backend, hence in QEMU's memory too. */
        struct qmp_ram_range *prev = *nmt ? &mt[*nmt - 1] : NULL;
        if (prev != NULL && strcmp(prev->block, all[i].block) == 0 &&
            prev->gpa_end == all[i].gpa_start &&
            all[i].offset == prev->offset + (prev->gpa_end - prev->gpa_start)) {
            prev->gpa_end = all[i].gpa_end;
            continue;
        }
        mt[(*nmt)++] = all[i];
    }
    if (*nmt == 0)
        return bm_err_set(err, "QEMU reports no guest RAM backed by a memory device "
                          "(HMP info mtree -f, query-memdev)");
    if (*nmt > QEMU_RAM_MAX_RANGES)
        return bm_err_set(err, "QEMU reports %zu RAM ranges; at most %d are supported",
                          *nmt, QEMU_RAM_MAX_RANGES);
    ram->n = *nmt;
    for (size_t i = 0; i < *nmt; i++) {
        if (mt[i].gpa_end <= mt[i].gpa_start || (i && mt[i].gpa_start < mt[i - 1].gpa_end))
            return bm_err_set(err, "QEMU's RAM layout is not sorted and disjoint at %#" PRIx64,
                              mt[i].gpa_start);
        ram->r[i].start = ram->ranges[i].start = mt[i].gpa_start;
        ram->r[i].end = ram->ranges[i].end = mt[i].gpa_end - 1;
        ram->r[i].file_off = mt[i].offset;
    }
    return 0;
}

/* shm: every RAM range must come from the same shared file backend. */
static int try_shm(struct qemu_ram *ram, const struct qmp_memdev *devs, size_t n,
                   const struct qmp_ram_range *mt, struct bm_err *why)
{
    const struct qmp_memdev *d = NULL;
    for (size_t i = 0; i < n; i++)
        if (strcmp(devs[i].id, mt[0].block) == 0)
            d = &devs[i];
    if (d == NULL || !d->share || d->mem_path[0] == '\0')
        return bm_err_set(why, "guest RAM is not a shared memory backend file");
    for (size_t i = 1; i < ram->n; i++)
        if (strcmp(mt[i].block, mt[0].block) != 0)
            return bm_err_set(why, "guest RAM spans several memory regions");
    /* QEMU reports mem-path as given on its command line: a relative path
     * is relative to QEMU's working directory, not ours. */
    char path[4096 + 64];
    if (d->mem_path[0] == '/')
        snprintf(path, sizeof path, "%s", d->mem_path);
    else
        snprintf(path, sizeof path, "/proc/%d/cwd/%s", (int)ram->pid, d->mem_path);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return bm_err_sys(why, errno, "open %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size < d->size) {
        close(fd);
        return bm_err_set(why, "%s is not a regular file of the guest's RAM size", d->mem_path);
    }
    for (size_t i = 0; i < ram->n; i++)
        if (ram->r[i].file_off + (ram->r[i].end - ram->r[i].start) >= (uint64_t)st.st_size) {
            close(fd);
            return bm_err_set(why, "%s is smaller than the RAM it backs", d->mem_path);
        }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        close(fd);
        return bm_err_sys(why, errno, "mmap %s", d->mem_path);
    }
    ram->shm_fd = fd;
    ram->shm = p;
    ram->shm_size = (size_t)st.st_size;
    ram->path = VMI_MEM_SHM;
    return 0;
}

static int try_process(struct qemu_ram *ram, struct qemu_chan *qmp, struct bm_err *why)
{
    for (size_t i = 0; i < ram->n; i++) {
        char block[QMP_NAME_MAX];
        if (qmp_gpa2hva(qmp, ram->r[i].start, &ram->r[i].hva, block, why) < 0)
            return -1;
        /* One probe per range: ptrace rules (Yama, another uid) refuse early. */
        uint8_t probe;
        struct iovec local = { &probe, 1 }, remote = { (void *)(uintptr_t)ram->r[i].hva, 1 };
        if (process_vm_readv(ram->pid, &local, 1, &remote, 1, 0) != 1)
            return bm_err_sys(why, errno, "process_vm_readv of QEMU (pid %d)", (int)ram->pid);
    }
    ram->path = VMI_MEM_PROCESS;
    return 0;
}

int qemu_ram_open(struct qemu_ram *ram, struct qemu_chan *qmp, pid_t qemu_pid,
                  struct rsp_conn *stub, const char *force, struct bm_err *err)
{
    memset(ram, 0, sizeof *ram);
    ram->shm_fd = -1;
    ram->pid = qemu_pid;
    ram->stub = stub;
    struct qmp_ram_range mt[MTREE_CAP];
    struct qmp_memdev devs[8];
    size_t nmt = 0, ndev = 0;
    if (qmp_query_memdevs(qmp, devs, 8, &ndev, err) < 0 ||
        ram_ranges_from_qmp(ram, qmp, devs, ndev, mt, &nmt, err) < 0)
        return -1;
    struct bm_err why = BM_ERR_INIT;
    if (force == NULL || strcmp(force, "shm") == 0) {
        if (try_shm(ram, devs, ndev, mt, &why) == 0)
            return 0;
        snprintf(ram->why_not_fast, sizeof ram->why_not_fast, "shm: %s", bm_err_msg(&why));
        if (force != NULL)
            return bm_err_set(err, "cannot read guest RAM through shm: %s", bm_err_msg(&why));
    }
    if (force == NULL || strcmp(force, "process") == 0) {
        bm_err_clear(&why);
        if (try_process(ram, qmp, &why) == 0)
            return 0;
        size_t l = strlen(ram->why_not_fast);
        snprintf(ram->why_not_fast + l, sizeof ram->why_not_fast - l, "%sprocess: %s",
                 l ? "; " : "", bm_err_msg(&why));
        if (force != NULL)
            return bm_err_set(err, "cannot read guest RAM from the QEMU process: %s",
                              bm_err_msg(&why));
    }
    if (force != NULL && strcmp(force, "gdbstub") != 0)
        return bm_err_set(err, "unknown memory access '%s' (shm, process or gdbstub)", force);
    ram->path = VMI_MEM_STUB;
    return 0;
}

void qemu_ram_close(struct qemu_ram *ram)
{
    if (ram->shm != NULL)
        munmap((void *)ram->shm, ram->shm_size);
    if (ram->shm_fd >= 0)
        close(ram->shm_fd);
    ram->shm = NULL;
    ram->shm_fd = -1;
}

static const struct qemu_ram_range *range_of(const struct qemu_ram *ram, uint64_t pa)
{
    for (size_t i = 0; i < ram->n; i++)
        if (pa >= ram->r[i].start && pa <= ram->r[i].end)
            return &ram->r[i];
    return NULL;
}

static int read_piece(struct qemu_ram *ram, const struct qemu_ram_range *r, uint64_t pa,
                      void *buf, size_t len, struct bm_err *err)
{
    uint64_t off = pa - r->start;
    switch (ram->path) {
    case VMI_MEM_SHM:
        memcpy(buf, ram->shm + r->file_off + off, len);
        return 0;
    case VMI_MEM_PROCESS: {
        struct iovec local = { buf, len }, remote = { (void *)(uintptr_t)(r->hva + off), len };
        ssize_t got = process_vm_readv(ram->pid, &local, 1, &remote, 1, 0);
        if (got != (ssize_t)len)
            return bm_err_sys(err, got < 0 ? errno : EIO,
                              "reading guest RAM at %#" PRIx64 " from QEMU (pid %d)", pa,
                              (int)ram->pid);
        return 0;
    }
    case VMI_MEM_STUB:
        if (!rsp_phys_mode(ram->stub) && rsp_set_phys_mode(ram->stub, true, err) < 0)
            return -1;
        return rsp_read_mem(ram->stub, pa, buf, len, NULL, err);
    }
    return bm_err_set(err, "no way to read guest RAM");
}

int qemu_ram_read(struct qemu_ram *ram, uint64_t pa, void *buf, size_t len, struct bm_err *err)
{
    uint8_t *out = buf;
    while (len > 0) {
        const struct qemu_ram_range *r = range_of(ram, pa);
        if (r == NULL)
            return bm_err_set(err, "guest physical address %#" PRIx64 " is not RAM", pa);
        uint64_t room = r->end - pa + 1;
        size_t n = room < len ? (size_t)room : len;
        if (read_piece(ram, r, pa, out, n, err) < 0)
            return -1;
        out += n;
        pa += n;
        len -= n;
    }
    return 0;
}

const void *qemu_ram_map(struct qemu_ram *ram, uint64_t pa, size_t len)
{
    if (ram->path != VMI_MEM_SHM || len == 0)
        return NULL;
    const struct qemu_ram_range *r = range_of(ram, pa);
    if (r == NULL || r->end - pa + 1 < len)
        return NULL;
    return ram->shm + r->file_off + (pa - r->start);
}
