/* bsodmon.h - the bsodmon plugin: a trap on KeBugCheck2, one event per
 * bug check, optionally a crash dump, and with -b the kernel-panic exit. */
#ifndef BM_PLUGINS_BSODMON_H
#define BM_PLUGINS_BSODMON_H

#include "plugins/plugin.h"

#define BSODMON_EXIT_KERNEL_PANIC 10

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
