/* monitor.c - attach, start plugins, run the event loop, stop, detach.
 *
 * One thread, one poll() over the stub's descriptor (stop replies) and a
 * signalfd (SIGINT/SIGTERM/SIGHUP, so no handler and no global state), with
 * the poll timeout taken from the nearest deadline (-t, then the stop
 * phase). Every exit path detaches: breakpoints removed, stub closed, guest
 * running (or paused with -p).
 */
#include "monitor/monitor.h"

#include <errno.h>
#include <stdatomic.h>
#include <inttypes.h>
#include <stdarg.h>
#include <json-c/json.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "vmi/qemu/qemu.h"
#include "win/wincore.h"

#define MAX_TRAPS 16

struct trap {
    uint64_t va;
    plugin_trap_fn fn;
    void *data;
};

struct monitor {
    const struct monitor_config *cfg;
    struct monitor_ctl *ctl;         /* host mode; NULL for one VM */
    struct vmi vmi;
    bool attached;
    struct win_kernel kernel;
    struct plugin_host host;
    int sigfd;                  /* a signalfd, or (host mode) ctl->stop_fd */
    volatile int interrupted;
    struct trap traps[MAX_TRAPS];
    size_t ntraps;
    uint64_t event_uid;
    const struct plugin_ops *plugins[8];
    void *states[8];
    bool running[8];
    size_t nplugins;
};

static void say(const struct monitor *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const struct monitor *m, const char *fmt, ...)
{
    if (!m->cfg->verbose)
        return;
    va_list ap;
    va_start(ap, fmt);
    bm_vlog(fmt, ap);
    va_end(ap);
}

/* ---- signals ------------------------------------------------------------ */

static int signals_open(struct monitor *m, struct bm_err *err)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return bm_err_sys(err, errno, "sigprocmask");
    m->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (m->sigfd < 0)
        return bm_err_sys(err, errno, "signalfd");
    signal(SIGPIPE, SIG_IGN); /* a closed stdout is an error we report */
    return 0;
}

static void check_signals(struct plugin_host *host)
{
    struct monitor *m = host->monitor;
    if (m->ctl != NULL) {
        /* The supervisor's eventfd stays readable once written. */
        struct pollfd p = { m->sigfd, POLLIN, 0 };
        if (poll(&p, 1, 0) == 1)
            m->interrupted = SIGTERM;
        return;
    }
    struct signalfd_siginfo si;
    while (read(m->sigfd, &si, sizeof si) == (ssize_t)sizeof si)
        m->interrupted = (int)si.ssi_signo;
}

/* ---- the host plugins see --------------------------------------------------- */

static int host_add_trap(struct plugin_host *host, uint64_t va, plugin_trap_fn fn, void *data,
                         struct bm_err *err)
{
    struct monitor *m = host->monitor;
    if (m->ntraps == MAX_TRAPS)
        return bm_err_set(err, "too many traps");
    if (vmi_bp_insert(&m->vmi, va, err) < 0)
        return -1;
    m->traps[m->ntraps++] = (struct trap){ va, fn, data };
    return 0;
}

static int host_remove_trap(struct plugin_host *host, uint64_t va, struct bm_err *err)
{
    struct monitor *m = host->monitor;
    for (size_t i = 0; i < m->ntraps; i++)
        if (m->traps[i].va == va) {
            m->traps[i] = m->traps[--m->ntraps];
            return vmi_bp_remove(&m->vmi, va, err);
        }
    return 0;
}

static uint64_t host_next_uid(struct plugin_host *host)
{
    struct monitor *m = host->monitor;
    if (m->ctl != NULL && m->ctl->event_uid != NULL)
        return atomic_fetch_add(m->ctl->event_uid, 1) + 1;
    return ++m->event_uid;
}

static int host_emit(struct plugin_host *host, struct output_event *ev, struct bm_err *err)
{
    struct monitor *m = host->monitor;
    if (m->ctl != NULL) {
        ev->domain = m->ctl->domain;
        ev->domain_uuid = m->ctl->domain_uuid;
    }
    if (output_write_event(stdout, m->cfg->format, ev, err) < 0)
        return -1;
    if (m->ctl != NULL && m->ctl->on_event != NULL)
        m->ctl->on_event(m->ctl->ctx);
    return 0;
}

/* ---- attach and discovery ------------------------------------------------------ */

static int attach(struct monitor *m, struct bm_err *err)
{
    const struct monitor_config *cfg = m->cfg;
    struct vmi_qemu_opts qo = { .route = &cfg->route,
                                .software_breakpoints = cfg->software_breakpoints,
                                .memory_access = cfg->memory_access };
    if (vmi_qemu_open(&m->vmi, &qo, err) < 0)
        return -1;
    m->attached = true;
    struct vmi_qemu_desc d;
    vmi_qemu_describe(&m->vmi, &d);
    if (d.uri != NULL)
        say(m, "libvirt %s, domain %s (%s), QEMU pid %d; GDB stub at %s (libvirt now marks the "
               "domain 'tainted: custom-monitor': informational only)", d.uri, d.domain, d.uuid,
            (int)d.pid, d.stub);
    else
        say(m, "QMP %s, QEMU pid %d; GDB stub at %s", d.socket, (int)d.pid, d.stub);
    const char *note = vmi_qemu_mem_note(&m->vmi);
    say(m, "guest RAM read through %s%s%s%s", vmi_mem_path_name(vmi_mem_path(&m->vmi)),
        note[0] ? " (" : "", note, note[0] ? ")" : "");
    if (win_kernel_discover(&m->vmi, 0, &m->kernel, err) < 0)
        return -1;
    /* Let the VM's manager have the monitor while we load symbols and watch. */
    vmi_qemu_release_monitor(&m->vmi);
    if (win_kernel_symbols(&m->vmi, &m->kernel, cfg->profile, cfg->symbols_dir, err) < 0)
        return -1;
    say(m, "ntoskrnl at %#" PRIx64 ", %s %s", m->kernel.base, m->kernel.pdb_name,
        m->kernel.pdb_guid);
    if (m->kernel.has_profile)
        say(m, "profile %s", m->kernel.prof.path);
    else
        bm_log("no symbol profile (-r or --symbols-dir): KeBugCheck2 found from "
               "KeBugCheckEx; PID, PPID, TID, UserId and ProcessName will be unavailable");
    say(m, "KeBugCheck2 at %#" PRIx64 " (from %s)", m->kernel.kebugcheck2,
        m->kernel.kebugcheck2_from);
    return 0;
}

static int detach(struct monitor *m, struct bm_err *err)
{
    if (!m->attached)
        return 0;
    m->attached = false;
    int rc = vmi_detach(&m->vmi, m->cfg->leave_paused, err);
    vmi_close(&m->vmi);
    return rc;
}

/* ---- --info ----------------------------------------------------------------------- */

static json_object *hexstr(uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "0x%" PRIx64, v);
    return json_object_new_string(buf);
}

static void print_info(struct monitor *m)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "KernelBase", hexstr(m->kernel.base));
    json_object_object_add(o, "PdbName", json_object_new_string(m->kernel.pdb_name));
    json_object_object_add(o, "PdbGuid", json_object_new_string(m->kernel.pdb_guid));
    json_object_object_add(o, "Profile", m->kernel.has_profile
                                             ? json_object_new_string(m->kernel.prof.path)
                                             : NULL);
    json_object_object_add(o, "KeBugCheck2", hexstr(m->kernel.kebugcheck2));
    json_object_object_add(o, "KeBugCheckEx",
                           m->kernel.kebugcheckex ? hexstr(m->kernel.kebugcheckex) : NULL);
    json_object_object_add(o, "VCPUs", json_object_new_int((int)vmi_vcpu_count(&m->vmi)));
    json_object *ram = json_object_new_array();
    const struct vmi_range *r;
    size_t n = vmi_ram_ranges(&m->vmi, &r);
    for (size_t i = 0; i < n; i++) {
        json_object *pair = json_object_new_array();
        json_object_array_add(pair, hexstr(r[i].start));
        json_object_array_add(pair, hexstr(r[i].end));
        json_object_array_add(ram, pair);
    }
    json_object_object_add(o, "Ram", ram);
    json_object_object_add(o, "MemoryAccess",
                           json_object_new_string(vmi_mem_path_name(vmi_mem_path(&m->vmi))));
    struct vmi_qemu_desc d;
    vmi_qemu_describe(&m->vmi, &d);
    json_object *route = json_object_new_object();
    json_object_object_add(route, "Via", json_object_new_string(d.via));
    if (d.socket != NULL)
        json_object_object_add(route, "Socket", json_object_new_string(d.socket));
    if (d.uri != NULL) {
        json_object_object_add(route, "URI", json_object_new_string(d.uri));
        json_object_object_add(route, "Domain", json_object_new_string(d.domain));
        json_object_object_add(route, "UUID", json_object_new_string(d.uuid));
    }
    json_object_object_add(route, "QemuPid", json_object_new_int((int)d.pid));
    json_object_object_add(route, "Stub", json_object_new_string(d.stub));
    if (d.uri != NULL)
        json_object_object_add(route, "Note", json_object_new_string(
            "monitor commands pass through libvirt, which marks the domain 'tainted: "
            "custom-monitor' (virsh dominfo); informational only, cleared when the domain stops"));
    json_object_object_add(o, "Route", route);
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_SPACED |
                                                         JSON_C_TO_STRING_NOSLASHESCAPE));
    fflush(stdout);
    json_object_put(o);
}

/* ---- plugins -------------------------------------------------------------------------- */

static int start_plugins(struct monitor *m, struct bm_err *err)
{
    for (size_t i = 0; plugin_registry[i] != NULL; i++) {
        if (!m->cfg->plugin_enabled[i])
            continue;
        const struct plugin_ops *p = plugin_registry[i];
        m->plugins[m->nplugins] = p;
        if (p->start(&m->host, &m->states[m->nplugins], err) < 0) {
            bm_err_prefix(err, "starting plugin %s", p->name);
            return -1;
        }
        m->running[m->nplugins++] = true;
        say(m, "plugin %s armed", p->name);
    }
    if (m->nplugins == 0)
        return bm_err_set(err, "no plugin enabled (see -a/-x)");
    return 0;
}

/* Stop the plugins; in the stop phase only those that do not stay. Returns
 * how many are still running. The guest must be stopped. */
static size_t stop_plugins(struct monitor *m, bool stop_phase, struct bm_err *err)
{
    size_t left = 0;
    for (size_t i = 0; i < m->nplugins; i++) {
        if (!m->running[i])
            continue;
        const struct plugin_ops *p = m->plugins[i];
        if (stop_phase && p->stays_through_stop && p->stays_through_stop(m->states[i], &m->host)) {
            left++;
            continue;
        }
        if (p->stop(m->states[i], &m->host, err) < 0)
            bm_err_prefix(err, "stopping plugin %s", p->name);
        m->running[i] = false;
    }
    return left;
}

static void destroy_plugins(struct monitor *m)
{
    for (size_t i = 0; i < m->nplugins; i++)
        if (m->plugins[i]->destroy)
            m->plugins[i]->destroy(m->states[i]);
    m->nplugins = 0;
}

/* ---- the loop ---------------------------------------------------------------------------- */

enum { RUN_ON = -1 };

/* Handle every pending event. Returns RUN_ON, or an exit code. */
static int handle_events(struct monitor *m, struct bm_err *err)
{
    for (;;) {
        struct vmi_event ev;
        int r = vmi_poll_event(&m->vmi, &ev, err);
        if (r < 0)
            return 1;
        if (r == 0)
            return RUN_ON;
        if (ev.kind == VMI_EVENT_GONE) {
            bm_log("the VM is gone (powered off or QEMU exited)");
            m->attached = false;
            vmi_close(&m->vmi);
            return MONITOR_EXIT_POWER_OFF;
        }
        if (ev.kind == VMI_EVENT_BREAKPOINT) {
            for (size_t i = 0; i < m->ntraps; i++) {
                if (m->traps[i].va != ev.addr)
                    continue;
                if (m->traps[i].fn(m->traps[i].data, &ev, &m->host) == PLUGIN_EXIT)
                    return m->host.exit_code;
                break;
            }
        }
        if (vmi_resume(&m->vmi, err) < 0)
            return 1;
    }
}

static int run_loop(struct monitor *m, struct bm_err *err)
{
    const struct monitor_config *cfg = m->cfg;
    int64_t deadline = cfg->timeout_s > 0 ? bm_now_ms() + (int64_t)cfg->timeout_s * 1000 : -1;
    bool stop_phase = false;
    for (;;) {
        int wait = -1;
        if (deadline >= 0) {
            int64_t left = deadline - bm_now_ms();
            wait = left < 0 ? 0 : (int)(left > 60000 ? 60000 : left);
        }
        struct pollfd pfd[2] = { { vmi_event_fd(&m->vmi), POLLIN, 0 }, { m->sigfd, POLLIN, 0 } };
        int n = poll(pfd, 2, wait);
        if (n < 0 && errno != EINTR)
            return bm_err_sys(err, errno, "poll"), 1;
        check_signals(&m->host);
        if (m->interrupted) {
            say(m, "signal %d: detaching", m->interrupted);
            return 0;
        }
        if (n > 0 && pfd[0].revents) {
            int rc = handle_events(m, err);
            if (rc != RUN_ON)
                return rc;
        }
        if (deadline >= 0 && bm_now_ms() >= deadline) {
            if (stop_phase) {
                say(m, "stop phase over");
                return 0;
            }
            /* -t ran out: the plugins stop, except those asked to stay. */
            if (vmi_pause(&m->vmi, err) < 0)
                return 1;
            size_t left = stop_plugins(m, true, err);
            if (err->set)
                return 1;
            if (left == 0 || cfg->wait_stop_s <= 0) {
                say(m, "timeout: plugins stopped");
                return 0;
            }
            say(m, "timeout: stop phase of %d s, %zu plugin(s) armed", cfg->wait_stop_s, left);
            stop_phase = true;
            deadline = bm_now_ms() + (int64_t)cfg->wait_stop_s * 1000;
            if (vmi_resume(&m->vmi, err) < 0)
                return 1;
        }
    }
}

static void monitor_init(struct monitor *m, const struct monitor_config *cfg,
                         struct monitor_ctl *ctl)
{
    memset(m, 0, sizeof *m);
    m->cfg = cfg;
    m->ctl = ctl;
    m->sigfd = -1;
    m->host = (struct plugin_host){
        .vmi = &m->vmi, .kernel = &m->kernel, .format = cfg->format, .opts = &cfg->plugin_opts,
        .leave_paused = cfg->leave_paused, .interrupted = &m->interrupted,
        .check_signals = check_signals, .add_trap = host_add_trap,
        .remove_trap = host_remove_trap, .next_event_uid = host_next_uid, .emit = host_emit,
        .monitor = m,
    };
}

/* Attach, watch, detach: what one VM's run is, whoever drives it. The
 * monitor lives on the heap: it holds the kernel's parsed profile. */
static int run_one(const struct monitor_config *cfg, struct monitor_ctl *ctl)
{
    struct monitor *mp = malloc(sizeof *mp);
    if (mp == NULL) {
        bm_log("out of memory");
        return 1;
    }
    struct monitor *m = mp;
    monitor_init(m, cfg, ctl);
    struct bm_err err = BM_ERR_INIT;
    int rc = 1;
    if (ctl != NULL)
        m->sigfd = ctl->stop_fd;
    if (ctl == NULL && signals_open(m, &err) < 0)
        goto out;
    if (attach(m, &err) < 0) {
        if (ctl != NULL) {
            snprintf(ctl->attach_error, sizeof ctl->attach_error, "%s", bm_err_msg(&err));
            bm_err_clear(&err);
        }
        goto out;
    }
    if (cfg->info) {
        print_info(m);
        rc = 0;
        goto out;
    }
    if (start_plugins(m, &err) < 0 || vmi_resume(&m->vmi, &err) < 0)
        goto out;
    if (ctl != NULL)
        ctl->armed = true;
    rc = run_loop(m, &err);
out:
    if (m->attached) {
        struct bm_err e2 = BM_ERR_INIT;
        if (vmi_pause(&m->vmi, &e2) == 0)
            stop_plugins(m, false, &e2);
        if (detach(m, &e2) < 0) {
            bm_log("detaching: %s", bm_err_msg(&e2));
            if (rc == 0)
                rc = 1;
        }
    }
    destroy_plugins(m);
    if (err.set)
        bm_log("%s", bm_err_msg(&err));
    if (ctl == NULL && m->sigfd >= 0)
        close(m->sigfd);
    free(mp);
    return rc;
}

int monitor_run(const struct monitor_config *cfg) { return run_one(cfg, NULL); }

int monitor_run_vm(const struct monitor_config *cfg, struct monitor_ctl *ctl)
{
    return run_one(cfg, ctl);
}
