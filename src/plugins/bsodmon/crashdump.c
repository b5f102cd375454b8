/* crashdump.c - bsodmon's crash dump: the guest stays stopped at the trap
 * while dump/ writes all of its RAM; progress goes to stderr for dumps that
 * take more than a second; SIGINT/SIGTERM cancel it cleanly. For the
 * Windows crash dump, win/crashinfo gathers the header facts and the
 * patches of the dump's copy of memory; this file only hands them over. */
#include "plugins/bsodmon/crashdump.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dump/dump.h"
#include "win/crashinfo.h"
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

int crashdump_parse_format(const char *s, unsigned *formats)
{
    if (strcmp(s, "raw") == 0)
        *formats = DUMP_RAW;
    else if (strcmp(s, "dmp") == 0)
        *formats = DUMP_DMP;
    else if (strcmp(s, "both") == 0)
        *formats = DUMP_RAW | DUMP_DMP;
    else {
        fprintf(stderr, "bsodmon: --crashdump-format takes raw, dmp or both, not '%s'\n", s);
        return -1;
    }
    return 0;
}

/* The dmp header's facts and patches, from win/. Without a profile only
 * what the trap itself gives (code, parameters, CR3, vCPU count). */
static void dmp_facts(struct plugin_host *host, const struct crash *c, struct win_crashinfo *ci,
                      struct dump_dmp *d, struct dump_patch *patches)
{
    struct bm_err e = BM_ERR_INIT;
    memset(d, 0, sizeof *d);
    uint64_t code = c->has_final ? c->final_code : c->code;
    const uint64_t *p = c->has_final ? c->final_p : c->p;
    if (win_crashinfo_collect(host->vmi, host->kernel, c->vcpu, c->regs, code, p, ci, &e) < 0) {
        memset(ci, 0, sizeof *ci);
        ci->dtb = c->cr3 & 0x000ffffffffff000ull;
        ci->nprocs = vmi_vcpu_count(host->vmi);
        snprintf(ci->warnings, sizeof ci->warnings, "%s: only the bug check, the DTB and the "
                 "processor count are filled", bm_err_msg(&e));
    }
    d->major_version = ci->major_version;
    d->minor_version = ci->minor_version;
    d->kd_secondary_version = ci->kd_secondary_version;
    d->directory_table_base = ci->dtb;
    d->pfn_database = ci->pfn_database;
    d->ps_loaded_module_list = ci->ps_loaded_module_list;
    d->ps_active_process_head = ci->ps_active_process_head;
    d->machine_image_type = 0x8664; /* IMAGE_FILE_MACHINE_AMD64 */
    d->number_processors = ci->nprocs;
    d->bugcheck_code = (uint32_t)code;
    memcpy(d->bugcheck_param, p, sizeof d->bugcheck_param);
    d->kd_debugger_data_block = ci->kdbg;
    _Static_assert(sizeof d->context == sizeof ci->context, "CONTEXT sizes");
    memcpy(d->context, ci->context, sizeof d->context);
    d->exception_code = ci->exception_code;
    d->exception_flags = ci->exception_flags;
    d->exception_address = ci->exception_address;
    d->system_time = ci->system_time;
    d->system_uptime = ci->interrupt_time;
    d->product_type = ci->product_type;
    d->suite_mask = ci->suite_mask;
    if (c->has_final)
        snprintf(d->comment, sizeof d->comment, "bsodmon: bug check %#llx caught at KeBugCheck2 "
                 "entry on vCPU %u, %#llx as the kernel stored it, dumped from the hypervisor",
                 (unsigned long long)c->code, c->vcpu, (unsigned long long)code);
    else
        snprintf(d->comment, sizeof d->comment, "bsodmon: bug check %#llx caught at KeBugCheck2 "
                 "entry on vCPU %u, dumped from the hypervisor", (unsigned long long)c->code,
                 c->vcpu);
    for (size_t i = 0; i < ci->npatches; i++)
        patches[i] = (struct dump_patch){ ci->patch[i].pa, ci->patch[i].len,
                                          ci->bytes + ci->patch[i].at };
    d->patches = patches;
    d->npatches = ci->npatches;
}

int crashdump_check_dir(const char *dir, struct bm_err *err)
{
    return dump_check_dir(dir, err) < 0 ? -1 : dump_prepare(err);
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
    const char *dir = c->dir != NULL ? c->dir : host->opts->crashdump_dir;
    unsigned formats = host->opts->crashdump_formats ? host->opts->crashdump_formats : DUMP_RAW;
    /* On this thread's stack (about 80 KiB), not static: the host mode dumps
     * each domain's crash on that domain's own thread, maybe at once. */
    struct win_crashinfo ci;
    struct dump_dmp dmp;
    struct dump_patch patches[WIN_CI_MAX_PATCHES];
    memset(&ci, 0, sizeof ci);
    memset(&dmp, 0, sizeof dmp);
    memset(patches, 0, sizeof patches);
    _Static_assert(WIN_CI_MAX_PATCHES <= DUMP_DMP_MAX_PATCHES, "patch counts");
    if (formats & DUMP_DMP) {
        dmp_facts(host, c, &ci, &dmp, patches);
        if (ci.warnings[0] != '\0') {
            fprintf(stderr, "bsodmon: warning: %s: %s\n", DUMP_DMP_NAME, ci.warnings);
            meta.dmp_warnings = ci.warnings;
        }
    }
    if (dump_write(dir, formats, &src, &meta, &dmp, &opts, NULL, &res, err) < 0) {
        if (prog.shown && prog.tty)
            fputc('\n', stderr);
        return -1;
    }
    char names[160] = "";
    for (unsigned i = 0; i < res.nfiles; i++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s/%s",
                 i ? ", " : "", dir, res.file[i].name);
    fprintf(stderr, "bsodmon: crash dump written: %s (%llu MiB of RAM in %.2f s, %.0f MB/s; "
            "%llu KiB of non-zero pages) and %s/%s\n", names,
            (unsigned long long)(res.ram_bytes >> 20), res.seconds,
            (double)res.ram_bytes / res.seconds / 1e6,
            (unsigned long long)(res.written_bytes >> 10), dir, DUMP_META_NAME);
    return 0;
}
