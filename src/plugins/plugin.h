/* plugin.h - what a plugin is, and what the monitor offers it.
 *
 * A plugin arms traps when it starts, handles them, and disarms them when it
 * stops. It sees the monitor only through `struct plugin_host` (the monitor
 * layer sits above plugins), so a plugin never includes monitor headers.
 */
#ifndef BM_PLUGINS_PLUGIN_H
#define BM_PLUGINS_PLUGIN_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "output/output.h"
#include "vmi/vmi.h"
#include "win/wincore.h"

/* What a trap handler asks the monitor to do next. */
enum plugin_action {
    PLUGIN_RESUME,  /* resume the guest and keep watching */
    PLUGIN_EXIT,    /* exit with plugin_host.exit_code (guest resumed or left paused by -p) */
};

struct plugin_host;
typedef enum plugin_action (*plugin_trap_fn)(void *data, const struct vmi_event *ev,
                                             struct plugin_host *host);

/* Options of every plugin built in (main.c fills the ones it offers). */
struct plugin_options {
    bool verbose;
#ifdef ENABLE_PLUGIN_BSODMON
    bool bsodmon_abort;          /* -b */
    bool bsodmon_ignore_stop;    /* --bsodmon-ignore-stop */
    bool bsodmon_no_analysis;    /* --bsodmon-no-analysis: DRAKVUF's field set */
    int bsodmon_follow_ms;       /* --bsodmon-follow-ms: the follow's bound, 0 = none */
    const char *crashdump_dir;   /* --crashdump-dir */
    unsigned crashdump_formats;  /* --crashdump-format: DUMP_RAW | DUMP_DMP bits, 0 = raw */
    /* Each dump in a directory of its own, crashdump_dir/<UTC time>-<EventUID>/
     * (the host mode: one crashdump_dir per domain, many crashes each). */
    bool crashdump_per_event;
#endif
};

struct plugin_host {
    struct vmi *vmi;
    const struct win_kernel *kernel;
    enum output_format format;
    const struct plugin_options *opts;
    bool leave_paused;           /* -p: the guest stays paused on exit */
    int exit_code;               /* set by a handler that returns PLUGIN_EXIT */
    /* Signals seen by the monitor (SIGINT/SIGTERM) while a handler works,
     * e.g. during a crash dump: nonzero means stop as soon as it is safe. */
    volatile int *interrupted;
    /* Polls for signals now (a long handler calls it between chunks). */
    void (*check_signals)(struct plugin_host *host);
    int (*add_trap)(struct plugin_host *host, uint64_t va, plugin_trap_fn fn, void *data,
                    struct bm_err *err);
    int (*remove_trap)(struct plugin_host *host, uint64_t va, struct bm_err *err);
    uint64_t (*next_event_uid)(struct plugin_host *host);
    /* Write one event line (stdout, the -o format), flushed. The monitor
     * adds what it knows that a plugin does not (which VM, in the host
     * mode). */
    int (*emit)(struct plugin_host *host, struct output_event *ev, struct bm_err *err);
    void *monitor;
};

struct plugin_ops {
    const char *name;
    int (*start)(struct plugin_host *host, void **state, struct bm_err *err);
    /* Disarm. 0 when stopped, -1 on error. */
    int (*stop)(void *state, struct plugin_host *host, struct bm_err *err);
    /* True when the plugin stays armed through the stop phase. */
    bool (*stays_through_stop)(void *state, const struct plugin_host *host);
    void (*destroy)(void *state);
};

/* Every plugin this build has, NULL-terminated. */
extern const struct plugin_ops *const plugin_registry[];

const struct plugin_ops *plugin_find(const char *name);

#endif
