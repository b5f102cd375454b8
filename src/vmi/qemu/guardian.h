/* guardian.h - a process that outlives bsodmon and undoes its attach if
 * bsodmon dies without detaching (see guardian.c). */
#ifndef BM_VMI_QEMU_GUARDIAN_H
#define BM_VMI_QEMU_GUARDIAN_H

#include <stdbool.h>
#include <sys/types.h>

#include "base/err.h"
#include "vmi/qemu/route.h"

struct guardian {
    pid_t pid;
    int fd; /* write end of its pipe; -1 once released */
};

/* `dir` (may be "") is bsodmon's private directory of the stub socket,
 * removed at the end; "" when the socket lives in a directory that is not
 * ours (libvirt's). */
int guardian_start(struct guardian *g, const struct qemu_route *route, const char *stub_path,
                   const char *dir, struct bm_err *err);
/* Clear every breakpoint QEMU holds for a stub that is gone or unusable:
 * open a new stub at stub_path through the monitor, connect (its '?' clears
 * them), detach (resumes the guest) when `resume`, and close the stub again. */
int stub_reset(const struct qemu_route *route, const char *stub_path, bool resume,
               struct bm_err *err);

/* The guardian runs as `bsodmon GUARDIAN_ARG ...` (guardian_start execs
 * this same program); main() hands such a command line to
 * guardian_exec_main, which returns only if it is malformed. */
#define GUARDIAN_ARG "--guardian-internal"
int guardian_exec_main(int argc, char **argv);

/* After a clean detach: tell the guardian to exit without touching anything. */
void guardian_release(struct guardian *g);

#endif
