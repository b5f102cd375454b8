/* monitor.h - one bsodmon run: attach, plugins, event loop, detach. */
#ifndef BM_MONITOR_MONITOR_H
#define BM_MONITOR_MONITOR_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "output/output.h"
#include "plugins/plugin.h"
#include "vmi/qemu/route.h"

/* DRAKVUF's exit codes. */
#define MONITOR_EXIT_SUCCESS 0
#define MONITOR_EXIT_FAIL 1
#define MONITOR_EXIT_PLUGINS_STOP_TIMEOUT 7
#define MONITOR_EXIT_KERNEL_PANIC 10
#define MONITOR_EXIT_POWER_OFF 11

struct monitor_config {
    struct qemu_route route;     /* -d, -c */
    const char *profile;         /* -r */
    const char *symbols_dir;     /* --symbols-dir */
    enum output_format format;   /* -o */
    int timeout_s;               /* -t, 0: none */
    int wait_stop_s;             /* --wait-stop-plugins, 0: none */
    bool leave_paused;           /* -p */
    bool verbose;                /* -v */
    bool info;                   /* --info: report and detach */
    bool software_breakpoints;   /* --software-breakpoints */
    const char *memory_access;   /* --memory-access, NULL: fastest */
    bool plugin_enabled[8];      /* by plugin_registry index (-a/-x) */
    struct plugin_options plugin_opts;
};

/* Returns the process exit code. Errors are printed on stderr. */
int monitor_run(const struct monitor_config *cfg);

/* The host mode drives one monitor per domain, each in a thread of its own
 * (host.c): no signals reach it; the supervisor asks it to detach through
 * stop_fd, and hears of its events. */
struct monitor_ctl {
    int stop_fd;               /* readable (an eventfd): detach and return 0 */
    const char *domain;        /* events gain Domain and DomainUUID */
    const char *domain_uuid;
    _Atomic uint64_t *event_uid;  /* EventUIDs, shared with the supervisor's */
    /* Called after a breakpoint event was written (may be NULL). */
    void (*on_event)(void *ctx);
    void *ctx;
    /* Out: why attaching failed (not printed: the supervisor decides), and
     * whether the plugins were armed. */
    char attach_error[512];
    bool armed;
};

/* One VM's monitor under a supervisor: attach, watch, detach. Returns the
 * exit code one VM would have (11: the VM went away). */
int monitor_run_vm(const struct monitor_config *cfg, struct monitor_ctl *ctl);

/* The whole host (--all-domains; host.c): every running libvirt domain
 * whose name matches `glob` (NULL: all), and each one as it starts. */
int monitor_run_host(const struct monitor_config *cfg, const char *uri, const char *glob,
                     int wait_windows_s);

#endif
