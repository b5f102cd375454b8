/* qmp.h - client of the QEMU Machine Protocol over a unix socket.
 *
 * Follows the server's rules (QEMU monitor/qmp.c): read the greeting,
 * negotiate with qmp_capabilities, then execute commands, each with an "id"
 * that its reply must echo. Events that arrive meanwhile are queued (the
 * queue is bounded; the oldest are dropped and counted). The byte stream is
 * split by json-c's incremental tokener with caps on message size and
 * nesting depth. Every wait is bounded by the connection's timeout.
 *
 * The typed helpers below run over any channel (chan.h: this socket, or
 * libvirt's pass-through). Those of HMP parse its text
 * (human-monitor-command): each parse is bounded and a miss is an error,
 * never a zero value.
 */
#ifndef BM_VMI_QEMU_QMP_H
#define BM_VMI_QEMU_QMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "base/err.h"
#include "vmi/qemu/chan.h"

#define QMP_MAX_MESSAGE (4u << 20)   /* bytes of one JSON message */
#define QMP_MAX_DEPTH 32             /* JSON nesting */
#define QMP_EVENT_QUEUE 64
#define QMP_MAX_EVENT 65536          /* bytes; larger events are dropped */
#define QMP_NAME_MAX 64              /* region, memdev and status names */

struct qmp_conn;

/* Connect, read and check the greeting, negotiate capabilities. */
struct qmp_conn *qmp_connect(const char *path, int timeout_ms,
                             struct bm_err *err);
/* The same over an already connected stream socket (owned afterwards). */
struct qmp_conn *qmp_adopt(int fd, int timeout_ms, struct bm_err *err);
void qmp_close(struct qmp_conn *c);   /* accepts NULL */

int qmp_fd(const struct qmp_conn *c);
void qmp_set_timeout(struct qmp_conn *c, int timeout_ms);
/* QEMU version from the greeting, e.g. 7, 2, 22. */
void qmp_version(const struct qmp_conn *c, int *major, int *minor,
                 int *micro);

/* Execute `cmd` with `args` (borrowed; may be NULL). On success *ret (may
 * be NULL) receives the "return" value, which the caller json_object_put()s.
 * A QMP error reply is an error carrying QEMU's class and description. */
int qmp_execute(struct qmp_conn *c, const char *cmd, json_object *args,
                json_object **ret, struct bm_err *err);

/* Next queued event, or wait up to timeout_ms for one (0 polls).
 * 1 with *event (caller puts), 0 when none, -1 on error. */
int qmp_next_event(struct qmp_conn *c, int timeout_ms, json_object **event,
                   struct bm_err *err);
/* Events dropped because the queue was full or they exceeded
 * QMP_MAX_EVENT. */
uint64_t qmp_events_dropped(const struct qmp_conn *c);

/* The connection as a channel (chan.h); closing the channel closes it. */
struct qemu_chan *qmp_chan(struct qmp_conn *c);

/* pid of the QEMU process at the other end (SO_PEERCRED). */
int qmp_peer_pid(const struct qmp_conn *c, pid_t *pid, struct bm_err *err);

/* --- typed helpers (qmp_query.c) ----------------------------------------------- */

struct qmp_status {
    bool running;
    char status[QMP_NAME_MAX];   /* "running", "paused", "debug", ... */
};
int qmp_query_status(struct qemu_chan *c, struct qmp_status *st,
                     struct bm_err *err);

struct qmp_cpu {
    int index;                   /* cpu-index: GDB thread id - 1 */
    pid_t thread_id;             /* host thread running the vCPU */
};
int qmp_query_cpus(struct qemu_chan *c, struct qmp_cpu *cpus, size_t cap,
                   size_t *n, struct bm_err *err);

struct qmp_memdev {
    char id[QMP_NAME_MAX];       /* e.g. "pc.ram", or the -object id */
    char type[QMP_NAME_MAX];     /* QOM type: memory-backend-{ram,file,...} */
    uint64_t size;
    bool share;
    char mem_path[4096];         /* only for memory-backend-file, else "" */
};
/* query-memdev, then qom-get of each backend's type and mem-path. */
int qmp_query_memdevs(struct qemu_chan *c, struct qmp_memdev *devs, size_t cap,
                      size_t *n, struct bm_err *err);

/* --- HMP (qmp_hmp.c) ------------------------------------------------------ */

/* Run an HMP command; *out is its malloc'ed text (lines end in "\r\n"). */
int qmp_hmp(struct qemu_chan *c, const char *cmdline, char **out,
            struct bm_err *err);

/* HMP "gdbserver unix:PATH,server=on,wait=off" / "gdbserver none". PATH
 * must not contain ',' or whitespace (chardev option syntax). The VM keeps
 * running until a GDB client connects; the connection stops it. */
int qmp_gdbserver_start(struct qemu_chan *c, const char *path,
                        struct bm_err *err);
int qmp_gdbserver_stop(struct qemu_chan *c, struct bm_err *err);

/* One guest-physical RAM range of the "memory" address space. */
struct qmp_ram_range {
    uint64_t gpa_start;
    uint64_t gpa_end;            /* exclusive */
    char block[QMP_NAME_MAX];    /* memory region: "pc.ram", backend id */
    uint64_t offset;             /* offset inside that region/backend file */
};
int qmp_ram_layout(struct qemu_chan *c, struct qmp_ram_range *ranges,
                   size_t cap, size_t *n, struct bm_err *err);
/* Host virtual address of a guest-physical address inside QEMU. `block`
 * (may be NULL) receives the region name QEMU prints. */
int qmp_gpa2hva(struct qemu_chan *c, uint64_t gpa, uint64_t *hva,
                char block[QMP_NAME_MAX], struct bm_err *err);
/* IDT base and limit of vCPU `vcpu` from "info registers N". */
int qmp_idt(struct qemu_chan *c, int vcpu, uint64_t *base, uint32_t *limit,
            struct bm_err *err);

/* Path of a unix-socket chardev named `id` ("charmonitor": libvirt's
 * monitor) from HMP "info chardev". */
int qmp_chardev_path(struct qemu_chan *c, const char *id, char *path, size_t cap,
                     struct bm_err *err);

/* The text parsers behind those, exposed for tests and fuzzing. */
int qmp_parse_mtree(const char *text, struct qmp_ram_range *ranges,
                    size_t cap, size_t *n, struct bm_err *err);
int qmp_parse_gpa2hva(const char *text, uint64_t gpa, uint64_t *hva,
                      char block[QMP_NAME_MAX], struct bm_err *err);
int qmp_parse_idt(const char *text, uint64_t *base, uint32_t *limit,
                  struct bm_err *err);
int qmp_parse_chardev_path(const char *text, const char *id, char *path, size_t cap,
                           struct bm_err *err);

#endif
