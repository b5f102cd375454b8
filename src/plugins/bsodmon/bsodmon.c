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
#include "win/wincore.h"

struct bsodmon {
    uint64_t trap_va;
    bool armed;
};

static void warn(const char *what, const struct bm_err *e)
{
    bm_log("%s: %s", what, bm_err_msg(e));
}

static enum plugin_action on_keBugCheck2(void *data, const struct vmi_event *ev,
                                         struct plugin_host *host)
{
    (void)data;
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
                       .cr3 = r.cr3, .rsp = r.rsp, .time = now };
    struct paging pg;
    if (vmi_paging(host->vmi, &r, r.cr3, &pg, &e) < 0 ||
        paging_read_virt(&pg, r.rsp + 0x28, &c.p[3], 8, &e) < 0) {
        warn("reading BugCheckParameter4 at [RSP+0x28] (reported as 0)", &e);
        bm_err_clear(&e);
    }
    struct win_current cur;
    if (win_current(host->vmi, &r, host->kernel, &cur, &e) < 0) {
        warn("reading the crashing process", &e);
        bm_err_clear(&e);
    }
    const char *name = bugcheck_name(c.code);
    struct output_field fields[] = {
        output_hex("BugCheckCode", c.code),
        output_str("BugCheckName", name, strlen(name)),
        output_hex("BugCheckParameter1", c.p[0]),
        output_hex("BugCheckParameter2", c.p[1]),
        output_hex("BugCheckParameter3", c.p[2]),
        output_hex("BugCheckParameter4", c.p[3]),
    };
    struct output_event oe = {
        .plugin = "bsodmon", .timestamp = now,
        .has_pid = cur.has_pid, .pid = cur.pid,
        .has_ppid = cur.has_ppid, .ppid = cur.ppid,
        .has_tid = cur.has_tid, .tid = cur.tid,
        .has_user_id = cur.has_session, .user_id = cur.session,
        .method = "KeBugCheck2",
        .has_event_uid = true, .event_uid = host->next_event_uid(host),
        .vcpu = vcpu, .cr3 = r.cr3,
        .fields = fields, .nfields = sizeof fields / sizeof fields[0],
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
