/* crashdump.c - bsodmon's crash dump: the guest stays stopped at the trap
 * while dump/ writes all of its RAM; progress goes to stderr for dumps that
 * take more than a second; SIGINT/SIGTERM cancel it cleanly. */
#include "plugins/bsodmon/crashdump.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "dump/dump.h"
#include "win/wincore.h"

#define MAX_RANGES 64

struct progress {
    struct timespec start, last;
    bool shown;
    bool tty;
};

static double since(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
    struct progress *p = ctx;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double el = since(&p->start, &now);
    bool last = done >= total;
    if (el < 1.0 || (!last && since(&p->last, &now) < (p->tty ? 0.2 : 1.0)))
        return;
    p->last = now;
    p->shown = true;
    fprintf(stderr, "%sbsodmon: crash dump %3.0f%% (%llu of %llu MiB, %.0f MB/s)%s",
            p->tty ? "\r" : "", 100.0 * (double)done / (double)total,
            (unsigned long long)(done >> 20), (unsigned long long)(total >> 20),
            (double)done / el / 1e6, p->tty && !last ? "" : "\n");
    fflush(stderr);
}

static void poll_signals(void *ctx)
{
    struct plugin_host *host = ctx;
    host->check_signals(host);
}

static int read_ram(void *ctx, uint64_t pa, void *buf, size_t len, struct bm_err *err)
{
    return vmi_read_phys(ctx, pa, buf, len, err);
}

static const void *map_ram(void *ctx, uint64_t pa, size_t len)
{
    return vmi_map_phys(ctx, pa, len);
}

int crashdump_check_dir(const char *dir, struct bm_err *err)
{
    return dump_check_dir(dir, err);
}

int crashdump_write(struct plugin_host *host, const struct crash *c, struct bm_err *err)
{
    const struct vmi_range *vr;
    size_t n = vmi_ram_ranges(host->vmi, &vr);
    if (n == 0 || n > MAX_RANGES)
        return bm_err_set(err, "the guest's RAM layout is unknown (%zu ranges)", n);
    struct dump_range ranges[MAX_RANGES];
    for (size_t i = 0; i < n; i++)
        ranges[i] = (struct dump_range){ vr[i].start, vr[i].end };
    struct dump_source src = { ranges, n, read_ram, map_ram, host->vmi };
    struct dump_meta_field extra[DUMP_META_EXTRA_MAX];
    size_t nextra = 0;
    for (size_t i = 0; i < c->nanalysis && nextra < DUMP_META_EXTRA_MAX; i++) {
        const struct output_field *f = &c->analysis[i];
        extra[nextra++] = (struct dump_meta_field){
            .name = f->name, .is_str = f->type == OUTPUT_STR, .num = f->num,
            .str = f->str, .str_len = f->str_len,
        };
    }
    struct dump_meta meta = {
        .extra = extra, .nextra = nextra,
        .kernel_base = host->kernel->base, .code = c->code,
        .p = { c->p[0], c->p[1], c->p[2], c->p[3] }, .cr3 = c->cr3, .rsp = c->rsp,
        .bugcheck_name = c->name, .vcpu = c->vcpu, .time = c->time,
        .pdb_guid = host->kernel->pdb_guid[0] ? host->kernel->pdb_guid : NULL,
    };
    struct progress prog = { .tty = isatty(2) };
    clock_gettime(CLOCK_MONOTONIC, &prog.start);
    prog.last = prog.start;
    struct dump_opts opts = { on_progress, &prog, host->interrupted, poll_signals, host };
    struct dump_result res;
    const char *dir = host->opts->crashdump_dir;
    if (dump_write_raw(dir, &src, &meta, &opts, &res, err) < 0) {
        if (prog.shown && prog.tty)
            fputc('\n', stderr);
        return -1;
    }
    fprintf(stderr, "bsodmon: crash dump written: %s/%s (%llu MiB of RAM in %.2f s, %.0f MB/s; "
            "%llu KiB of non-zero pages) and %s/%s\n", dir, DUMP_BIN_NAME,
            (unsigned long long)(res.ram_bytes >> 20), res.seconds,
            (double)res.ram_bytes / res.seconds / 1e6,
            (unsigned long long)(res.written_bytes >> 10), dir, DUMP_META_NAME);
    return 0;
}
