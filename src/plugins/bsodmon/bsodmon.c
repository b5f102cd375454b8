/* bsodmon.c - catches every bug check at KeBugCheck2's entry.
 *
 * Every blue screen passes through KeBugCheck2 (KeBugCheckEx calls it, and
 * some paths such as 0x109 call it directly), so one hardware breakpoint
 * there sees them all without patching guest memory. At entry the x64
 * arguments are: RCX code, RDX/R8/R9 P1..P3, P4 at [RSP+0x28]. The event is
 * written and flushed before anything else (crash dump, -b), so a consumer
 * reading a pipe sees it even if what follows fails.
 */
#include "plugins/bsodmon/bsodmon.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "base/log.h"
#include "plugins/bsodmon/bugcheck.h"
#include "plugins/bsodmon/crashdump.h"
#include "plugins/bsodmon/triage.h"
#include "win/wincore.h"

/* What the event reads from guest memory besides the registers: the
 * crashing process and the analysis, at KeBugCheck2's entry. */
struct reads {
    struct plugin_host *host;
    const struct vmi_regs *r;
    struct win_current cur;
    bool analyse;
    struct triage_input in;
    struct triage t;
    long analysis_us;
};

struct bsodmon {
    uint64_t trap_va;
    bool armed;
    struct winmod_list modules;     /* the analysis' scratch, kept off the stack */
    char mod[WINMOD_NAME_MAX + 24];  /* FaultingModule's text */
    struct reads x;                 /* one event's reads (large: the triage) */
};

/* The analysis' fields, after DRAKVUF's six, each only when known
 * (triage.h). `mod` holds FaultingModule's text. Returns how many. */
static size_t analysis_fields(const struct triage *t, char *mod, size_t modlen,
                              struct output_field *f)
{
    size_t n = 0;
    if (t->has_reported) {
        const char *rn = bugcheck_name(t->reported);
        f[n++] = output_hex("ReportedBugCheckCode", t->reported);
        f[n++] = output_str("ReportedBugCheckName", rn, strlen(rn));
    }
    static const char *const rp[4] = { "ReportedBugCheckParameter1", "ReportedBugCheckParameter2",
                                       "ReportedBugCheckParameter3", "ReportedBugCheckParameter4" };
    if (t->has_reported_params)
        for (int i = 0; i < 4; i++)
            f[n++] = output_hex(rp[i], t->reported_params[i]);
    if (t->has_driver)
        f[n++] = output_str("FailingDriver", t->driver, strlen(t->driver));
    if (t->has_subcode) {
        f[n++] = output_hex("BugCheckSubcode", t->subcode);
        if (t->subcode_name != NULL)
            f[n++] = output_str("BugCheckSubcodeName", t->subcode_name, strlen(t->subcode_name));
    }
    if (t->has_ip)
        f[n++] = output_hex("FaultingIP", t->ip);
    if (t->has_module) {
        int len = snprintf(mod, modlen, "%s+0x%" PRIx64, t->module, t->module_offset);
        f[n++] = output_str("FaultingModule", mod, len > 0 ? (size_t)len : 0);
        f[n++] = output_hex("FaultingModuleSize", t->module_size);
        if (t->has_module_timestamp)
            f[n++] = output_hex("FaultingModuleTimeDateStamp", t->module_timestamp);
    }
    if (t->has_exception) {
        f[n++] = output_hex("ExceptionCode", t->exception_code);
        if (t->exception_name != NULL)
            f[n++] = output_str("ExceptionName", t->exception_name, strlen(t->exception_name));
    }
    if (t->has_process)
        f[n++] = output_str("CriticalProcess", (const char *)t->process, t->process_len);
    if (t->has_bucket)
        f[n++] = output_str("Bucket", t->bucket, strlen(t->bucket));
    return n;
}

#define ANALYSIS_FIELDS_MAX 18

static void warn(const char *what, const struct bm_err *e)
{
    bm_log("%s: %s", what, bm_err_msg(e));
}

/* The reads of one bug check with `code` and `p` on a vCPU with registers
 * r, through pg (NULL: no walker, so no profile-based analysis). */
static void reads_setup(struct bsodmon *b, struct plugin_host *host, const struct vmi_regs *r,
                        uint64_t code, const uint64_t p[4], struct paging *pg)
{
    struct reads *x = &b->x;
    memset(x, 0, sizeof *x);
    x->host = host;
    x->r = r;
    x->analyse = !host->opts->bsodmon_no_analysis;
    x->analysis_us = -1;
    x->in = (struct triage_input){
        .code = code, .p = { p[0], p[1], p[2], p[3] },
        .prof = host->kernel->has_profile && pg != NULL ? &host->kernel->prof : NULL,
        .kernel_base = host->kernel->base, .read = paging_read_virt_cb, .ctx = pg,
        .modules = &b->modules,
    };
}

static void do_reads(struct reads *x)
{
    struct bm_err e = BM_ERR_INIT;
    if (win_current(x->host->vmi, x->r, x->host->kernel, &x->cur, &e) < 0) {
        warn("reading the crashing process", &e);
        bm_err_clear(&e);
    }
    if (!x->analyse)
        return;
    struct timespec t0, t1;
    x->in.modules->n = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    triage_analyse(&x->in, &x->t);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    x->analysis_us = (t1.tv_sec - t0.tv_sec) * 1000000L + (t1.tv_nsec - t0.tv_nsec) / 1000;
}

/* Where KeBugCheck2 has stored the final code: functions it calls once the
 * rewrites are done (../shared/notes/bugcheck-parameters.md 2.3: the
 * Hyper-V crash report, Windows 8 on; the blue screen itself, every
 * release), whichever the profile has; both when it has both, the first
 * reached wins. None without a profile. */
static size_t follow_points(const struct win_kernel *k, uint64_t out[2])
{
    size_t n = 0;
    if (!k->has_profile || !k->prof.KiBugCheckData.present)
        return 0;
    if (k->prof.HvlLogGuestCrashInformation.present)
        out[n++] = k->base + k->prof.HvlLogGuestCrashInformation.value;
    if (k->prof.KiDisplayBlueScreen.present)
        out[n++] = k->base + k->prof.KiDisplayBlueScreen.value;
    return n;
}

/* One follow of a bug check (vmi_run_to) and what it found. */
struct follow {
    bool tried;
    int followed;               /* vmi_run_to's: -1 failed, 0 not reached, 1 reached */
    long us;
    uint64_t hit;
    bool have_fin;              /* KiBugCheckData and KiBugCheckDriver read */
    struct winbc_final fin;
    char err[200];
};

static void follow_bug_check(struct plugin_host *host, unsigned vcpu, const struct vmi_regs *r,
                             const uint64_t *points, size_t npoints, struct follow *f)
{
    struct bm_err e = BM_ERR_INIT;
    struct timespec t0, t1;
    f->tried = true;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    f->followed = vmi_run_to(host->vmi, vcpu, points, npoints, host->opts->bsodmon_follow_ms,
                             &f->hit, &e);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    f->us = (t1.tv_sec - t0.tv_sec) * 1000000L + (t1.tv_nsec - t0.tv_nsec) / 1000;
    if (f->followed <= 0) {
        if (e.set)
            snprintf(f->err, sizeof f->err, "%s", bm_err_msg(&e));
        return;
    }
    /* A fresh walker: the guest ran since the last one was built. */
    struct paging pg;
    if (vmi_paging(host->vmi, r, r->cr3, &pg, &e) == 0 &&
        winbc_read(paging_read_virt_cb, &pg, &host->kernel->prof, host->kernel->base, &f->fin,
                   &e) == 0)
        f->have_fin = true;
    else
        snprintf(f->err, sizeof f->err, "%s", bm_err_msg(&e));
}

/* -v: how the follow went; its errors always. `after` the event: the
 * follow was for the crash dump, and the event's code came from the entry
 * rules, so a kernel that stored another says so. */
static void log_follow(struct plugin_host *host, const struct follow *f, const struct triage *t,
                       bool after)
{
    if (!f->tried)
        return;
    if (f->followed >= 0 && host->opts->verbose) {
        const struct win_kernel *k = host->kernel;
        bool hvl = k->prof.HvlLogGuestCrashInformation.present &&
                   f->hit == k->base + k->prof.HvlLogGuestCrashInformation.value;
        bm_log("follow%s: %s in %ld us%s%s", after ? " (for the crash dump)" : "",
               f->followed == 1 ? "reached" : "not reached", f->us,
               f->followed != 1 ? "" : f->hit == 0 ? " (HvlLogGuestCrashInformation or KiDisplayBlueScreen)"
               : hvl ? " (HvlLogGuestCrashInformation)" : " (KiDisplayBlueScreen)",
               t->reported_stored ? "; the reported code is the one KiBugCheckData holds"
                                  : "; the reported code comes from the entry state");
    }
    if (f->err[0] != '\0')
        bm_log("follow: %s%s", f->err, t->reported_stored || after ? ""
               : " (the entry state's rules decide the reported code)");
    if (after && f->have_fin && t->has_reported && (uint32_t)f->fin.data[0] != 0 &&
        (uint32_t)f->fin.data[0] != t->reported)
        bm_log("follow: the kernel stored 0x%" PRIx32 " where the event reported 0x%" PRIx32
               " from the entry state; the crash dump carries the kernel's",
               (uint32_t)f->fin.data[0], t->reported);
}

static enum plugin_action on_keBugCheck2(void *data, const struct vmi_event *ev,
                                         struct plugin_host *host)
{
    struct bsodmon *b = data;
    struct timeval now;
    gettimeofday(&now, NULL);
    struct bm_err e = BM_ERR_INIT;
    struct vmi_regs r;
    unsigned vcpu = ev->vcpu < 0 ? 0 : (unsigned)ev->vcpu;
    if (vmi_get_regs(host->vmi, vcpu, &r, &e) < 0) {
        warn("reading the registers of the vCPU that hit KeBugCheck2", &e);
        return PLUGIN_RESUME;
    }
    struct crash c = { .code = r.rcx, .p = { r.rdx, r.r8, r.r9, 0 }, .vcpu = vcpu,
                       .cr3 = r.cr3, .rsp = r.rsp, .time = now, .regs = &r };
    struct paging pg;
    bool have_pg = vmi_paging(host->vmi, &r, r.cr3, &pg, &e) == 0;
    if (!have_pg || paging_read_virt(&pg, r.rsp + 0x28, &c.p[3], 8, &e) < 0) {
        warn("reading BugCheckParameter4 at [RSP+0x28] (reported as 0)", &e);
        bm_err_clear(&e);
    }
    const char *name = bugcheck_name(c.code);
    struct output_field fields[6 + ANALYSIS_FIELDS_MAX] = {
        output_hex("BugCheckCode", c.code),
        output_str("BugCheckName", name, strlen(name)),
        output_hex("BugCheckParameter1", c.p[0]),
        output_hex("BugCheckParameter2", c.p[1]),
        output_hex("BugCheckParameter3", c.p[2]),
        output_hex("BugCheckParameter4", c.p[3]),
    };
    size_t nfields = 6;
    /* The analysis: bounded reads through the trapping vCPU's page tables
     * (the kernel half is the same in every address space). Anything it
     * cannot read is left out of the event, which is never held back. */
    struct reads *xp = &b->x;   /* per VM: the host mode runs one handler per domain */
    reads_setup(b, host, &r, c.code, c.p, have_pg ? &pg : NULL);
    do_reads(xp);
    /* The code Windows stores, where the entry state does not decide it:
     * the crashing vCPU runs on alone to a point past the rewrites, for at
     * most --bsodmon-follow-ms. Hardware breakpoints only; none is left
     * behind. */
    uint64_t points[2];
    size_t npoints = xp->analyse && have_pg && host->opts->bsodmon_follow_ms > 0
                     ? follow_points(host->kernel, points) : 0;
    struct follow fo = { .tried = false };
    if (npoints > 0 && triage_wants_stored(&xp->in, &xp->t)) {
        follow_bug_check(host, vcpu, &r, points, npoints, &fo);
        if (fo.have_fin)
            triage_final(&xp->in, &fo.fin, &xp->t);
    }
    if (xp->analyse)
        nfields += analysis_fields(&xp->t, b->mod, sizeof b->mod, fields + nfields);
    struct win_current cur = xp->cur;
    struct triage t = xp->t;
    long analysis_us = xp->analysis_us;
    struct output_event oe = {
        .plugin = "bsodmon", .timestamp = now,
        .has_pid = cur.has_pid, .pid = cur.pid,
        .has_ppid = cur.has_ppid, .ppid = cur.ppid,
        .has_tid = cur.has_tid, .tid = cur.tid,
        .has_user_id = cur.has_session, .user_id = cur.session,
        .method = "KeBugCheck2",
        .has_event_uid = true, .event_uid = host->next_event_uid(host),
        .vcpu = vcpu, .cr3 = r.cr3,
        .fields = fields, .nfields = nfields,
    };
    if (cur.has_name) {
        oe.has_process_name = true;
        output_set_process_name(&oe, cur.name, cur.name_len);
    }
    if (host->emit(host, &oe, &e) < 0) {
        warn("writing the event", &e);
        host->exit_code = 1;
        return PLUGIN_EXIT;
    }
    /* Diagnostics only after the event is out. */
    log_follow(host, &fo, &t, false);
    /* A crash dump is taken where Windows' own writer would be, past the
     * rewrites: when the event did not need the follow, it is made now
     * (the event is out; it only delays the dump). */
    if (npoints > 0 && !fo.tried && host->opts->crashdump_dir != NULL) {
        follow_bug_check(host, vcpu, &r, points, npoints, &fo);
        log_follow(host, &fo, &t, true);
    }
    if (fo.have_fin && (uint32_t)fo.fin.data[0] != 0) {
        /* The dump's header carries what the kernel stored. */
        c.has_final = true;
        c.final_code = (uint32_t)fo.fin.data[0];
        memcpy(c.final_p, fo.fin.data + 1, sizeof c.final_p);
    }
    if (analysis_us >= 0 && host->opts->verbose) {
        bm_log("analysis took %ld us (%zu modules walked)", analysis_us, b->modules.n);
        if (t.failed_reads > 0)
            bm_log("analysis: %u read(s) failed, fields left out; first: %s", t.failed_reads,
                   t.first_error);
    }
    int rc_dump = 0;
    char sub[4096];
    if (host->opts->crashdump_dir != NULL && host->opts->crashdump_per_event) {
        /* Unique across restarts of bsodmon (EventUIDs start again at 1),
         * and sorted by time. */
        struct tm tm;
        gmtime_r(&now.tv_sec, &tm);
        char when[40];
        strftime(when, sizeof when, "%Y%m%dT%H%M%S", &tm);
        if ((size_t)snprintf(sub, sizeof sub, "%s/%s.%06ldZ-0x%" PRIx64, host->opts->crashdump_dir,
                             when, (long)now.tv_usec, oe.event_uid) >= sizeof sub ||
            crashdump_check_dir(sub, &e) < 0) {
            bm_log("crash dump not written: %s", e.set ? bm_err_msg(&e) : "path too long");
            bm_err_clear(&e);
        } else {
            c.dir = sub;
        }
    }
    if (host->opts->crashdump_dir != NULL && (!host->opts->crashdump_per_event || c.dir != NULL)) {
        c.name = name;
        c.analysis = fields + 6;
        c.nanalysis = nfields - 6;
        rc_dump = crashdump_write(host, &c, &e);
        if (rc_dump < 0) {
            bm_log("crash dump failed: %s", bm_err_msg(&e));
            bm_err_clear(&e);
        }
    }
    if (host->opts->bsodmon_abort) {
        host->exit_code = BSODMON_EXIT_KERNEL_PANIC;
        return PLUGIN_EXIT;
    }
    if (rc_dump < 0 || (host->interrupted && *host->interrupted)) {
        host->exit_code = rc_dump < 0 ? 1 : 0;
        return PLUGIN_EXIT;
    }
    return PLUGIN_RESUME;
}

int bsodmon_emit_panic(struct plugin_host *host, const char *method, const uint64_t *args,
                       struct bm_err *err)
{
    struct timeval now;
    gettimeofday(&now, NULL);
    const char *name = args != NULL ? bugcheck_name(args[0]) : NULL;
    struct output_field fields[6];
    size_t n = 0;
    if (args != NULL) {
        fields[n++] = output_hex("BugCheckCode", args[0]);
        fields[n++] = output_str("BugCheckName", name, strlen(name));
        fields[n++] = output_hex("BugCheckParameter1", args[1]);
        fields[n++] = output_hex("BugCheckParameter2", args[2]);
        fields[n++] = output_hex("BugCheckParameter3", args[3]);
        fields[n++] = output_hex("BugCheckParameter4", args[4]);
    }
    struct output_event oe = {
        .plugin = "bsodmon", .timestamp = now, .method = method,
        .has_event_uid = true, .event_uid = host->next_event_uid(host),
        .no_vcpu = true, .fields = fields, .nfields = n,
    };
    return host->emit(host, &oe, err);
}

/* The trap path's reads once at arm time, on the guest as it runs, the
 * results thrown away: the first bug check then finds that code, its data
 * and its stack already paged in, as every later one does. A fresh bsodmon
 * measured it (`-v` timing, irql scenario): the first win_current after a
 * stop ~60 us, the next ~38 us; the analysis' own 0.06-0.2 ms cold. Only
 * reads, bounded as on the trap path, and only where RAM can be read while
 * the guest runs (not through the stub). */
static void warm_up(struct plugin_host *host, struct bsodmon *b)
{
    const struct win_kernel *k = host->kernel;
    if (!k->has_profile || vmi_mem_path(host->vmi) == VMI_MEM_STUB)
        return;
    struct bm_err e = BM_ERR_INIT;
    struct paging pg;
    if (vmi_paging(host->vmi, &k->regs, k->regs.cr3, &pg, &e) < 0)
        return;
    /* 0xA with its IP in ntoskrnl: the module list, a name, a PE header. */
    const uint64_t p[4] = { 0, 2, 0, k->base + 0x1000 };
    reads_setup(b, host, &k->regs, 0xA, p, &pg);
    do_reads(&b->x);
    memset(&b->x, 0, sizeof b->x);
}

static int bsodmon_start(struct plugin_host *host, void **state, struct bm_err *err)
{
    struct bsodmon *b = calloc(1, sizeof *b);
    if (b == NULL)
        return bm_err_set(err, "out of memory");
    b->trap_va = host->kernel->kebugcheck2;
    if (host->add_trap(host, b->trap_va, on_keBugCheck2, b, err) < 0) {
        free(b);
        return -1;
    }
    b->armed = true;
    *state = b;
    warm_up(host, b);
    return 0;
}

static int bsodmon_stop(void *state, struct plugin_host *host, struct bm_err *err)
{
    struct bsodmon *b = state;
    if (!b->armed)
        return 0;
    b->armed = false;
    return host->remove_trap(host, b->trap_va, err);
}

static bool bsodmon_stays(void *state, const struct plugin_host *host)
{
    (void)state;
    return host->opts->bsodmon_ignore_stop;
}

static void bsodmon_destroy(void *state) { free(state); }

const struct plugin_ops bsodmon_plugin = {
    .name = "bsodmon",
    .start = bsodmon_start,
    .stop = bsodmon_stop,
    .stays_through_stop = bsodmon_stays,
    .destroy = bsodmon_destroy,
};
