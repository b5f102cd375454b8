/* host.c - one bsodmon for a whole host (--all-domains).
 *
 * A supervisor above the single-VM monitor: libvirt's lifecycle events
 * (vmi/qemu/lvhost.c) start one watcher thread per running domain that
 * matches --domains, and end it when the domain stops; each thread runs
 * today's monitor loop (monitor_run_vm) for its domain, so one domain's
 * failure stays in its thread. Before attaching, a thread looks cheaply
 * (vCPU 0's IDT through the monitor, no pause, once a second) whether an x64
 * kernel runs yet; a domain that shows none within --wait-windows is
 * reported once and left alone. QEMU's GUEST_PANICKED (Hyper-V crash MSRs,
 * pvpanic) is a second source: a panic that no breakpoint event accounts
 * for (attached too late, no breakpoint) is reported on its own.
 *
 * Threads: the main thread runs libvirt's event loop and owns the slot
 * table (under `lock`, which watcher threads take only to say they ended
 * or saw an event). Signals are blocked in every thread and read from a
 * signalfd in the loop: SIGTERM/SIGINT detach every domain and exit 0;
 * SIGHUP looks for running domains again.
 */
#include "monitor/monitor.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <fnmatch.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#ifdef ENABLE_PLUGIN_BSODMON
#include "plugins/bsodmon/bsodmon.h"
#include "plugins/bsodmon/crashdump.h"
#endif
#include "vmi/qemu/guardian.h"
#include "vmi/qemu/lvhost.h"
#include "vmi/qemu/qemu.h"

#define HOST_MAX_DOMAINS 256
#define PROBE_INTERVAL_MS 1000

enum slot_state { SLOT_FREE, SLOT_RUNNING, SLOT_ENDED };

struct host;

struct slot {
    enum slot_state state;
    struct host *h;
    char name[LV_NAME_MAX];
    char uuid[LV_UUID_LEN + 1];
    pthread_t thread;
    int stop_fd;                 /* eventfd: the thread detaches and ends */
    bool restart;                /* the domain started again before the thread ended */
    /* Breakpoint events seen, and panics already matched to one of them. */
    uint64_t bp_events, panics_matched;
    _Atomic uint64_t event_uid;
    struct monitor_config cfg;   /* the host's, for this domain */
    char dump_dir[PATH_MAX];     /* --crashdump-dir/<domain> */
    struct monitor_ctl ctl;
};

struct host {
    const struct monitor_config *base;
    const char *uri;
    const char *glob;
    int wait_windows_s;
    bool panics_only;            /* no plugin armed: GUEST_PANICKED only, no monitor command */
    struct lvhost *lv;
    struct guardian guardian;    /* one for every domain */
    int sigfd;
    int ended_fd;                /* eventfd: some watcher thread ended */
    pthread_mutex_t lock;
    /* Allocated when first needed (a slot is ~35 KiB: its monitor_config),
     * kept and reused after its domain stops, freed at exit. */
    struct slot *slots[HOST_MAX_DOMAINS];
};

/* ---- one domain's watcher thread ------------------------------------------------- */

static bool stop_asked(const struct slot *s, int wait_ms)
{
    struct pollfd p = { s->stop_fd, POLLIN, 0 };
    return poll(&p, 1, wait_ms) == 1;
}

static void on_bp_event(void *ctx)
{
    struct slot *s = ctx;
    pthread_mutex_lock(&s->h->lock);
    s->bp_events++;
    pthread_mutex_unlock(&s->h->lock);
}

static void *watch_domain(void *arg)
{
    struct slot *s = arg;
    struct host *h = s->h;
    bm_log_set_tag(s->name);
    int64_t deadline = bm_now_ms() + (int64_t)h->wait_windows_s * 1000;
    char last_error[512] = "";
    bool verbose = h->base->verbose;
    while (!stop_asked(s, 0)) {
        struct bm_err e = BM_ERR_INIT;
        int p = vmi_qemu_probe_kernel(&s->cfg.route, &e);
        if (p < 0) {
            /* The domain stopped meanwhile, or libvirtd is restarting. */
            snprintf(last_error, sizeof last_error, "%s", bm_err_msg(&e));
        } else if (p == 1) {
            s->ctl.attach_error[0] = '\0';
            s->ctl.armed = false;
            int rc = monitor_run_vm(&s->cfg, &s->ctl);
            if (rc == MONITOR_EXIT_POWER_OFF || stop_asked(s, 0)) {
                if (verbose)
                    bm_log("watch ended (exit code %d)", rc);
                break;
            }
            if (s->ctl.armed) {
                /* Windows was there: watch again, however long it takes. */
                deadline = INT64_MAX;
                bm_log("watch ended (exit code %d); attaching again", rc);
            }
            snprintf(last_error, sizeof last_error, "%s", s->ctl.attach_error);
        }
        if (bm_now_ms() >= deadline) {
            bm_log("no Windows kernel seen within %d s (%s); not watched", h->wait_windows_s,
                   last_error[0] ? last_error : "its IDT is not where an x64 kernel's is");
            break;
        }
        if (stop_asked(s, PROBE_INTERVAL_MS))
            break;
    }
    pthread_mutex_lock(&h->lock);
    s->state = SLOT_ENDED;
    pthread_mutex_unlock(&h->lock);
    uint64_t one = 1;
    ssize_t w = write(h->ended_fd, &one, sizeof one);
    (void)w;
    return NULL;
}

/* ---- the slot table (main thread) ---------------------------------------------------- */

static struct slot *find(struct host *h, const char *uuid)
{
    for (size_t i = 0; i < HOST_MAX_DOMAINS; i++)
        if (h->slots[i] != NULL && h->slots[i]->state != SLOT_FREE &&
            strcmp(h->slots[i]->uuid, uuid) == 0)
            return h->slots[i];
    return NULL;
}

/* A free slot: one used before, else a new one; NULL when none can be had. */
static struct slot *free_slot(struct host *h, const char *name)
{
    for (size_t i = 0; i < HOST_MAX_DOMAINS; i++)
        if (h->slots[i] != NULL && h->slots[i]->state == SLOT_FREE)
            return h->slots[i];
    for (size_t i = 0; i < HOST_MAX_DOMAINS; i++) {
        if (h->slots[i] != NULL)
            continue;
        struct slot *s = calloc(1, sizeof *s);
        if (s == NULL || (s->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
            bm_log("%s: not watched: %s", name, s == NULL ? "out of memory" : strerror(errno));
            free(s);
            return NULL;
        }
        s->h = h;
        return h->slots[i] = s;
    }
    bm_log("%s: not watched: already %d domains", name, HOST_MAX_DOMAINS);
    return NULL;
}

/* --crashdump-dir DIR: DIR/<domain>/<time>-<EventUID>/ per crash. A name
 * that is not a plain file name (libvirt allows blanks, quotes, a leading
 * dot...) is made one, with the UUID's start to keep it apart. */
static void dump_dir(struct host *h, struct slot *s)
{
#ifdef ENABLE_PLUGIN_BSODMON
    s->cfg.plugin_opts.crashdump_dir = NULL;
    if (h->base->plugin_opts.crashdump_dir == NULL)
        return;
    char name[LV_NAME_MAX + 16];
    size_t n = 0;
    bool changed = s->name[0] == '.' || s->name[0] == '\0';
    for (const char *p = s->name; *p != '\0' && n < 64; p++) {
        char ch = *p;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                  ch == '.' || ch == '_' || ch == '-' || ch == '+';
        name[n++] = ok ? ch : '_';
        changed |= !ok;
    }
    changed |= strlen(s->name) > 64;
    name[n] = '\0';
    if (changed)
        snprintf(name + n, sizeof name - n, "-%.8s", s->uuid);
    struct bm_err e = BM_ERR_INIT;
    if ((size_t)snprintf(s->dump_dir, sizeof s->dump_dir, "%s/%s",
                         h->base->plugin_opts.crashdump_dir, name) >= sizeof s->dump_dir ||
        crashdump_check_dir(s->dump_dir, &e) < 0) {
        bm_log("%s: no crash dumps: %s", s->name, e.set ? bm_err_msg(&e) : "path too long");
        return;
    }
    s->cfg.plugin_opts.crashdump_dir = s->dump_dir;
    s->cfg.plugin_opts.crashdump_per_event = true;
#else
    (void)h;
    (void)s;
#endif
}

static void start_slot(struct host *h, struct slot *s)
{
    s->cfg = *h->base;
    s->cfg.guardian = &h->guardian;
    dump_dir(h, s);
    snprintf(s->cfg.route.target, sizeof s->cfg.route.target, "%s", s->uuid);
    snprintf(s->cfg.route.uri, sizeof s->cfg.route.uri, "%s", h->uri);
    s->cfg.route.via = QEMU_VIA_LIBVIRT;
    s->ctl = (struct monitor_ctl){ .stop_fd = s->stop_fd, .domain = s->name,
                                   .domain_uuid = s->uuid, .event_uid = &s->event_uid,
                                   .on_event = on_bp_event, .ctx = s };
    s->bp_events = s->panics_matched = 0;
    s->restart = false;
    s->state = SLOT_RUNNING;
    uint64_t v;
    while (read(s->stop_fd, &v, sizeof v) == (ssize_t)sizeof v)
        ;   /* a stop asked of an earlier thread */
    int e = pthread_create(&s->thread, NULL, watch_domain, s);
    if (e != 0) {
        s->state = SLOT_FREE;
        bm_log("%s: cannot start a thread: %s", s->name, strerror(e));
    }
}

static void started(void *ctx, const char *name, const char *uuid)
{
    struct host *h = ctx;
    if (h->glob != NULL && fnmatch(h->glob, name, 0) != 0)
        return;
    if (h->panics_only)
        return;
    pthread_mutex_lock(&h->lock);
    struct slot *s = find(h, uuid);
    if (s != NULL) {
        /* Still watched, or a thread of its previous run still ending. */
        if (s->state == SLOT_ENDED || stop_asked(s, 0))
            s->restart = true;
        pthread_mutex_unlock(&h->lock);
        return;
    }
    s = free_slot(h, name);
    if (s == NULL) {
        pthread_mutex_unlock(&h->lock);
        return;
    }
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->uuid, sizeof s->uuid, "%s", uuid);
    start_slot(h, s);
    pthread_mutex_unlock(&h->lock);
    if (h->base->verbose)
        bm_log("%s (%s): watching", name, uuid);
}

static void ask_stop(struct slot *s)
{
    uint64_t one = 1;
    ssize_t w = write(s->stop_fd, &one, sizeof one);
    (void)w;
}

static void stopped(void *ctx, const char *uuid)
{
    struct host *h = ctx;
    pthread_mutex_lock(&h->lock);
    struct slot *s = find(h, uuid);
    if (s != NULL && s->state == SLOT_RUNNING)
        ask_stop(s);
    if (s != NULL)
        s->restart = false;
    pthread_mutex_unlock(&h->lock);
}

/* Join the threads that ended; start again those whose domain came back. */
static void reap(struct host *h)
{
    for (size_t i = 0; i < HOST_MAX_DOMAINS; i++) {
        pthread_mutex_lock(&h->lock);
        struct slot *s = h->slots[i];
        bool ended = s != NULL && s->state == SLOT_ENDED;
        pthread_mutex_unlock(&h->lock);
        if (!ended)
            continue;
        pthread_join(s->thread, NULL);
        pthread_mutex_lock(&h->lock);
        if (s->restart)
            start_slot(h, s);
        else
            s->state = SLOT_FREE;
        pthread_mutex_unlock(&h->lock);
    }
}

/* ---- the second source: GUEST_PANICKED ------------------------------------------------ */

#ifdef ENABLE_PLUGIN_BSODMON
static uint64_t panic_uid(struct plugin_host *ph)
{
    struct slot *s = ph->monitor;
    return atomic_fetch_add(&s->event_uid, 1) + 1;
}

static int panic_emit(struct plugin_host *ph, struct output_event *ev, struct bm_err *err)
{
    struct slot *s = ph->monitor;
    ev->domain = s->name;
    ev->domain_uuid = s->uuid;
    return output_write_event(stdout, s->h->base->format, ev, err);
}
#endif

static void panicked(void *ctx, const char *name, const char *uuid, const struct lvhost_panic *p)
{
    struct host *h = ctx;
    if (h->glob != NULL && fnmatch(h->glob, name, 0) != 0)
        return;
    pthread_mutex_lock(&h->lock);
    struct slot *s = find(h, uuid);
    /* Windows tells the hypervisor from inside KeBugCheck2, after our
     * breakpoint at its entry: a panic after a breakpoint event is that
     * event's. */
    bool seen = s != NULL && s->bp_events > s->panics_matched;
    if (seen)
        s->panics_matched++;
    pthread_mutex_unlock(&h->lock);
    if (seen) {
        if (h->base->verbose)
            bm_log("%s: GUEST_PANICKED (%s) for the bug check already reported", name, p->source);
        return;
    }
    struct slot tmp;
    if (s == NULL) {
        memset(&tmp, 0, sizeof tmp);
        tmp.h = h;
        snprintf(tmp.name, sizeof tmp.name, "%s", name);
        snprintf(tmp.uuid, sizeof tmp.uuid, "%s", uuid);
        s = &tmp;
    }
#ifdef ENABLE_PLUGIN_BSODMON
    struct plugin_host ph = { .format = h->base->format, .next_event_uid = panic_uid,
                              .emit = panic_emit, .monitor = s };
    char method[32];
    snprintf(method, sizeof method, "GUEST_PANICKED/%s", p->source);
    struct bm_err e = BM_ERR_INIT;
    if (bsodmon_emit_panic(&ph, method, p->has_args ? p->args : NULL, &e) < 0)
        bm_log("%s: writing the event: %s", name, bm_err_msg(&e));
#else
    bm_log("%s: the guest panicked (GUEST_PANICKED/%s); no bsodmon plugin in this build to "
           "report it", name, p->source);
#endif
}

/* ---- the loop ----------------------------------------------------------------------- */

static void connection(void *ctx, bool up, const char *why)
{
    struct host *h = ctx;
    if (up)
        bm_log("connected to libvirt at %s", h->uri);
    else
        bm_log("libvirt at %s: %s; reconnecting (domains already watched stay watched)", h->uri,
               why);
}

static void readable(void *ctx, int fd)
{
    struct host *h = ctx;
    if (fd == h->ended_fd) {
        uint64_t v;
        while (read(fd, &v, sizeof v) == (ssize_t)sizeof v)
            ;
        reap(h);
        return;
    }
    struct signalfd_siginfo si;
    while (read(h->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGHUP) {
            bm_log("SIGHUP: looking for running domains again");
            lvhost_rescan(h->lv);
        } else {
            if (h->base->verbose)
                bm_log("signal %u: detaching every domain", si.ssi_signo);
            lvhost_quit(h->lv);
        }
    }
}

static const struct lvhost_ops host_ops = {
    .started = started, .stopped = stopped, .panicked = panicked,
    .connection = connection, .readable = readable,
};

int monitor_run_host(const struct monitor_config *cfg, const char *uri, const char *glob,
                     int wait_windows_s)
{
    static struct host h;
    h.base = cfg;
    h.uri = uri;
    h.glob = glob;
    h.wait_windows_s = wait_windows_s;
    h.panics_only = true;
    for (size_t i = 0; plugin_registry[i] != NULL; i++)
        if (cfg->plugin_enabled[i])
            h.panics_only = false;
    if (h.panics_only)
        bm_log("no plugin enabled: reporting only the panics QEMU reports (GUEST_PANICKED); no "
               "domain is attached to or tainted");
    pthread_mutex_init(&h.lock, NULL);
    /* Every thread parses a profile at attach (megabytes, freed at once):
     * in glibc's per-thread arenas that memory would stay resident, once
     * per domain. One arena, trimmed after each attach (monitor.c). */
    mallopt(M_ARENA_MAX, 1);
    int rc = 1;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    /* Blocked before any thread starts: every thread inherits the mask. */
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0 ||
        (h.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) < 0 ||
        (h.ended_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        bm_log("setting up signals: %s", strerror(errno));
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    struct bm_err err = BM_ERR_INIT;
    if (guardian_spawn(&h.guardian, &err) < 0) {
        bm_log("%s", bm_err_msg(&err));
        return 1;
    }
    h.lv = lvhost_new(uri, &host_ops, &h, &err);
    if (h.lv == NULL || lvhost_watch_fd(h.lv, h.sigfd, &err) < 0 ||
        lvhost_watch_fd(h.lv, h.ended_fd, &err) < 0 || lvhost_run(h.lv, &err) < 0)
        bm_log("%s", bm_err_msg(&err));
    else
        rc = 0;
    /* Detach every domain, then wait for each thread. */
    for (size_t i = 0; i < HOST_MAX_DOMAINS; i++) {
        struct slot *s = h.slots[i];
        if (s != NULL && s->state != SLOT_FREE) {
            ask_stop(s);
            s->restart = false;
        }
    }
    for (size_t i = 0; i < HOST_MAX_DOMAINS; i++) {
        struct slot *s = h.slots[i];
        if (s == NULL)
            continue;
        if (s->state != SLOT_FREE)
            pthread_join(s->thread, NULL);
        close(s->stop_fd);
        free(s);
        h.slots[i] = NULL;
    }
    lvhost_free(h.lv);
    guardian_end(&h.guardian, true);
    close(h.sigfd);
    close(h.ended_fd);
    return rc;
}
