/* route.c - see route.h. */
#include "vmi/qemu/route.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "vmi/qemu/qmp.h"

int qemu_route_parse(struct qemu_route *r, const char *arg, const char *uri,
                     struct bm_err *err)
{
    memset(r, 0, sizeof *r);
    if (arg == NULL || arg[0] == '\0')
        return bm_err_set(err, "-d needs a QMP socket or a libvirt domain");
    if (strlen(arg) >= sizeof r->target)
        return bm_err_set(err, "-d '%.40s...' is too long", arg);
    struct stat st;
    bool is_sock = stat(arg, &st) == 0 && S_ISSOCK(st.st_mode);
    if (is_sock || strchr(arg, '/') != NULL) {
        if (!is_sock) {
            int e = errno;
            if (stat(arg, &st) == 0)
                return bm_err_set(err, "%s is not a unix socket (give the VM's QMP socket, or a "
                                  "libvirt domain's name)", arg);
            return bm_err_sys(err, e, "QMP socket %s", arg);
        }
        if (uri != NULL)
            return bm_err_set(err, "-c names a libvirt connection, but %s is a QMP socket", arg);
        r->via = QEMU_VIA_QMP;
        memcpy(r->target, arg, strlen(arg) + 1);
        return 0;
    }
    const char *u = uri != NULL ? uri : lv_default_uri();
    if (strlen(u) >= sizeof r->uri)
        return bm_err_set(err, "libvirt URI too long");
    r->via = QEMU_VIA_LIBVIRT;
    memcpy(r->target, arg, strlen(arg) + 1);
    memcpy(r->uri, u, strlen(u) + 1);
    return 0;
}

struct qemu_chan *qemu_route_open(const struct qemu_route *r, int patience_ms,
                                  struct bm_err *err)
{
    if (r->via == QEMU_VIA_LIBVIRT) {
        struct lv_dom *d = lv_open(r->uri, r->target, patience_ms, err);
        return d != NULL ? lv_chan(d) : NULL;
    }
    /* A QMP monitor serves one client at a time; the others wait in its
     * listen backlog and get the greeting when it is their turn (measured on
     * QEMU 7.2), so waiting for the greeting is the retry. */
    struct qmp_conn *c = qmp_connect(r->target, patience_ms, err);
    return qmp_chan(c);
}
