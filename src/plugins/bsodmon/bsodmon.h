/* bsodmon.h - the bsodmon plugin: a trap on KeBugCheck2, one event per
 * bug check, optionally a crash dump, and with -b the kernel-panic exit. */
#ifndef BM_PLUGINS_BSODMON_H
#define BM_PLUGINS_BSODMON_H

#include "plugins/plugin.h"

#define BSODMON_EXIT_KERNEL_PANIC 10

/* How long a bug check is followed past KeBugCheck2's entry, at most, for
 * the code Windows stores (--bsodmon-follow-ms). On the synthetic guest
 * under TCG the kernel gets there in well under 0.1 ms of wall time; a real
 * kernel runs a few thousand instructions to get there (the rewrites look
 * up one or two loaded modules). 5 ms leaves room for a loaded host and
 * keeps the event within a few ms of the bug check when it never gets
 * there. */
#define BSODMON_FOLLOW_MS 5
#define BSODMON_FOLLOW_MS_MAX 1000

extern const struct plugin_ops bsodmon_plugin;

/* A bug check that another source reported while no trap saw it (QEMU's
 * GUEST_PANICKED: Windows wrote the Hyper-V crash MSRs, or pvpanic): one
 * event with Method = `method` and, when the source gave them (`args`:
 * code, P1..P4; NULL otherwise), the code, its name and the parameters. No
 * vCPU, CR3 or process is known. Only host->emit, next_event_uid and
 * format are used. */
int bsodmon_emit_panic(struct plugin_host *host, const char *method, const uint64_t *args,
                       struct bm_err *err);

#endif
