/* route.h - how bsodmon reaches one VM's QEMU monitor.
 *
 * `-d` names the VM: a path to QEMU's QMP unix socket (plain QEMU,
 * Proxmox's /var/run/qemu-server/VMID.qmp), or the name or UUID of a
 * libvirt domain, reached through libvirt at `-c URI`. A route is plain
 * data, so the guardian (a forked process) can open it again on its own.
 */
#ifndef BM_VMI_QEMU_ROUTE_H
#define BM_VMI_QEMU_ROUTE_H

#include <limits.h>

#include "base/err.h"
#include "vmi/qemu/chan.h"
#include "vmi/qemu/libvirt.h"

enum qemu_via { QEMU_VIA_QMP, QEMU_VIA_LIBVIRT };

struct qemu_route {
    enum qemu_via via;
    char target[PATH_MAX];   /* the QMP socket, or the libvirt domain (its UUID once known) */
    char uri[LV_URI_MAX];    /* libvirt only */
};

/* `arg` is a QMP socket when it is a unix socket, or contains a '/' (then it
 * must be one); otherwise a libvirt domain at `uri` (NULL: lv_default_uri).
 * -c with a socket is refused: it would be silently ignored. */
int qemu_route_parse(struct qemu_route *r, const char *arg, const char *uri,
                     struct bm_err *err);

/* Open a channel to the monitor. `patience_ms` bounds the wait for a busy
 * QMP monitor (another client holds it: the VM's manager between two
 * commands) or for a libvirtd that is restarting. */
struct qemu_chan *qemu_route_open(const struct qemu_route *r, int patience_ms,
                                  struct bm_err *err);

#endif
