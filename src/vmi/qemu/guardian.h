/* guardian.h - a process that outlives bsodmon and undoes its attach if
 * bsodmon dies without detaching (see guardian.c). */
#ifndef BM_VMI_QEMU_GUARDIAN_H
#define BM_VMI_QEMU_GUARDIAN_H

#include <stdbool.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

#include "base/err.h"
#include "vmi/qemu/route.h"

/* The guardian process; one serves any number of attaches (the host mode
 * shares one among its domains). */
struct guardian {
    pid_t pid;
    int fd;                       /* write end of its pipe; -1 once ended */
    pthread_mutex_t lock;         /* one record at a time */
    _Atomic unsigned next_id;
};

/* Start it (exec'ed: see guardian.c). */
int guardian_spawn(struct guardian *g, struct bm_err *err);
/* An attach to undo if bsodmon dies: the stub at stub_path of the VM at
 * `route`; `dir` (may be "") is bsodmon's private directory of the stub
 * socket, removed at the end; "" when the socket lives in a directory that
 * is not ours (libvirt's). */
int guardian_arm(struct guardian *g, const struct qemu_route *route, const char *stub_path,
                 const char *dir, unsigned *id, struct bm_err *err);
/* A clean detach: nothing left to undo for `id`. */
void guardian_disarm(struct guardian *g, unsigned id);
/* A detach that failed: undo `id` now (the guardian does it, asynchronously). */
void guardian_clean(struct guardian *g, unsigned id);
/* No more attaches: the guardian exits once it has undone what is still
 * armed (nothing, after clean detaches). `wait`: until it has exited. */
void guardian_end(struct guardian *g, bool wait);

/* Clear every breakpoint QEMU holds for a stub that is gone or unusable:
 * open a new stub at stub_path through the monitor, connect (its '?' clears
 * them), detach (resumes the guest) when `resume`, and close the stub again. */
int stub_reset(const struct qemu_route *route, const char *stub_path, bool resume,
               struct bm_err *err);

/* The guardian runs as `bsodmon GUARDIAN_ARG FD` (guardian_spawn execs
 * this same program); main() hands such a command line to
 * guardian_exec_main, which returns only if it is malformed. */
#define GUARDIAN_ARG "--guardian-internal"
int guardian_exec_main(int argc, char **argv);

#endif
