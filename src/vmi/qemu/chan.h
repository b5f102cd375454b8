/* chan.h - one way to send QMP commands to a QEMU, whatever carries them.
 *
 * QEMU's monitor is reached two ways: its own QMP unix socket (qmp.c), or
 * libvirt's pass-through (virDomainQemuMonitorCommand, libvirt.c), since
 * libvirtd keeps a domain's only QMP monitor for itself. Everything above
 * (the typed QMP and HMP commands, guest RAM, the guardian) talks to a
 * channel and does not care which. A channel is held only briefly: the VM's
 * manager needs the monitor too.
 */
#ifndef BM_VMI_QEMU_CHAN_H
#define BM_VMI_QEMU_CHAN_H

#include <json-c/json.h>

#include "base/err.h"

struct qemu_chan;

struct qemu_chan_ops {
    /* Execute `cmd` with `args` (borrowed; may be NULL). On success *ret
     * (may be NULL) receives the "return" value, which the caller puts. A
     * QMP error reply is an error carrying QEMU's class and description. */
    int (*execute)(struct qemu_chan *ch, const char *cmd, json_object *args,
                   json_object **ret, struct bm_err *err);
    void (*close)(struct qemu_chan *ch);
};

/* Embedded as the first member of each implementation's connection. */
struct qemu_chan {
    const struct qemu_chan_ops *ops;
};

static inline int chan_execute(struct qemu_chan *ch, const char *cmd, json_object *args,
                               json_object **ret, struct bm_err *err)
{
    return ch->ops->execute(ch, cmd, args, ret, err);
}

/* Accepts NULL. */
static inline void chan_close(struct qemu_chan *ch)
{
    if (ch != NULL)
        ch->ops->close(ch);
}

#endif
