/* lvhost.h - the domains of one libvirt connection, as they come and go.
 *
 * For the host mode (monitor/host.c): one read-only-enough connection with
 * libvirt's default event loop, lifecycle events of every domain, QEMU's
 * GUEST_PANICKED event of every domain (virConnectDomainQemuMonitorEvent-
 * Register: it does not taint), and the connection's loss (close callback
 * and keepalive), after which it reconnects with backoff and reports every
 * running domain again. Calls back from lvhost_run only, in its thread.
 */
#ifndef BM_VMI_QEMU_LVHOST_H
#define BM_VMI_QEMU_LVHOST_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "vmi/qemu/libvirt.h"

/* What GUEST_PANICKED said (its "info", when the guest gave one). */
struct lvhost_panic {
    const char *source;      /* "hyper-v" (crash MSRs), "s390", or "pvpanic" (no info) */
    bool has_args;           /* hyper-v: arg1..arg5 = code, P1..P4 */
    uint64_t args[5];
    char action[16];         /* QEMU's action: "pause", "poweroff", "run" */
};

struct lvhost_ops {
    /* A domain runs (it started, or was running when we connected). */
    void (*started)(void *ctx, const char *name, const char *uuid);
    /* It stopped (destroyed, shut down, crashed, saved, migrated away). */
    void (*stopped)(void *ctx, const char *uuid);
    void (*panicked)(void *ctx, const char *name, const char *uuid, const struct lvhost_panic *p);
    /* The connection is gone, or back (`up`). */
    void (*connection)(void *ctx, bool up, const char *why);
    /* A descriptor the caller registered became readable. */
    void (*readable)(void *ctx, int fd);
};

struct lvhost;

/* Register libvirt's event loop (once per process, before any connection)
 * and connect (retrying with backoff, forever, until lvhost_quit). */
struct lvhost *lvhost_new(const char *uri, const struct lvhost_ops *ops, void *ctx,
                          struct bm_err *err);
/* Watch fd in the same loop (signals, threads' news). */
int lvhost_watch_fd(struct lvhost *h, int fd, struct bm_err *err);
/* Report every running domain again (SIGHUP). */
void lvhost_rescan(struct lvhost *h);
/* Run until lvhost_quit (called from a callback). */
int lvhost_run(struct lvhost *h, struct bm_err *err);
void lvhost_quit(struct lvhost *h);
void lvhost_free(struct lvhost *h);

/* GUEST_PANICKED's details (hostile JSON, bounded). Exposed for tests and
 * fuzzing; 0, or -1 with err. */
int lvhost_parse_panic(const char *details, struct lvhost_panic *p, struct bm_err *err);

#endif
