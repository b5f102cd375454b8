/* libvirt.h - QEMU's monitor through libvirt, for domains libvirt manages.
 *
 * libvirtd keeps a domain's only QMP monitor for the domain's whole life, so
 * a second client of that socket waits forever. libvirt's own client library
 * passes QMP commands through instead (virDomainQemuMonitorCommand, from
 * libvirt-qemu): that is the channel here. Never a second connection to the
 * monitor socket, never a virsh subprocess.
 *
 * libvirt answers success for HMP commands that failed, so every reply is
 * checked as text by the typed helpers above the channel (qmp.h); the QMP
 * JSON reply itself is parsed here with bounds (lv_parse_reply). libvirt
 * marks a domain "tainted: custom-monitor" the first time a command passes
 * through; that is informational only (it is cleared when the domain stops).
 *
 * Built only with libvirt (meson finds libvirt and libvirt-qemu through
 * pkg-config); without it lv_open says so.
 */
#ifndef BM_VMI_QEMU_LIBVIRT_H
#define BM_VMI_QEMU_LIBVIRT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "base/err.h"
#include "vmi/qemu/chan.h"

#define LV_URI_MAX 512
#define LV_NAME_MAX 256
#define LV_UUID_LEN 36

struct lv_dom;

/* The URI bsodmon uses when none is given: $LIBVIRT_DEFAULT_URI, else
 * qemu:///system (as virsh, run as root). */
const char *lv_default_uri(void);

/* Connect to `uri` (read-write: monitor commands need it), check that it
 * is a QEMU connection, look the domain up by name, then by UUID, and check
 * that it runs. While libvirtd cannot be reached (restarting), retry for up
 * to `patience_ms`. */
struct lv_dom *lv_open(const char *uri, const char *domain, int patience_ms,
                       struct bm_err *err);
struct qemu_chan *lv_chan(struct lv_dom *d);   /* closing it closes d */

const char *lv_name(const struct lv_dom *d);
const char *lv_uuid(const struct lv_dom *d);   /* 36 characters */
const char *lv_uri(const struct lv_dom *d);    /* as libvirt names it */

/* QEMU's pid, in-band: the host thread of every vCPU (query-cpus-fast)
 * must belong to one process, whose command line names the domain
 * (-name guest=NAME), and that agrees with libvirt's pid file when there
 * is one. QMP has no pid command and virDomainGetInfo gives none. */
int lv_qemu_pid(struct lv_dom *d, pid_t *pid, struct bm_err *err);

/* The domain's private directory (libvirt's libDir,
 * /var/lib/libvirt/qemu/domain-ID-NAME/ on Debian), found from the domain
 * itself: the directory of its monitor socket (HMP info chardev,
 * "charmonitor"). Checked: a real directory (no link), owned by QEMU's
 * user, writable by nobody else. QEMU may create sockets there under DAC,
 * AppArmor (virt-aa-helper's rules) and SELinux (libvirt labels it). */
int lv_private_dir(struct lv_dom *d, pid_t qemu_pid, char *dir, size_t cap,
                   struct bm_err *err);

/* Parse what virDomainQemuMonitorCommand returned for `cmd`: one QMP reply
 * object, bounded in size and depth, with "return" (*ret, may be NULL) or
 * "error" (an error naming QEMU's class and description). Exposed for tests
 * and fuzzing. */
int lv_parse_reply(const char *text, size_t len, const char *cmd, json_object **ret,
                   struct bm_err *err);

/* Check a process's NUL-separated command line for "-name guest=NAME[,...]"
 * (commas in NAME doubled, as QEMU's option syntax wants). */
bool lv_cmdline_names(const char *cmdline, size_t len, const char *name);

#endif
