/* qmp.c - QMP connection over a unix socket: command execution, event
 * queue. See qmp.h. Typed queries live in qmp_query.c, HMP in qmp_hmp.c. */
#include "vmi/qemu/qmp.h"

#include "base/util.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct qmp_conn {
    struct qemu_chan chan;   /* first: a qmp_conn is a channel */
    int fd;
    int timeout_ms;
    bool broken;           /* stream position lost: refuse further use */
    char name[160];        /* "the QMP socket PATH", for messages */
    json_tokener *tok;
    size_t msg_bytes;      /* bytes fed into the message being parsed */
    size_t last_bytes;     /* size of the message read_message returned */
    char in[65536];
    size_t in_pos, in_len;
    char first[48];        /* start of what the peer sent, for messages */
    bool got_any;
    int64_t next_id;
    json_object *events[QMP_EVENT_QUEUE];
    size_t ev_head, ev_count;
    uint64_t ev_dropped;
    int version[3];
};

static int broken(struct qmp_conn *c)
{
    c->broken = true;
    return -1;
}

/* --- byte stream → messages ------------------------------------------------ */

static int read_more(struct qmp_conn *c, int64_t deadline, struct bm_err *err)
{
    for (;;) {
        ssize_t n = recv(c->fd, c->in, sizeof c->in, MSG_DONTWAIT);
        if (n > 0) {
            c->in_pos = 0;
            c->in_len = (size_t)n;
            if (!c->got_any)
                bm_excerpt(c->in, c->in_len, c->first, sizeof c->first);
            c->got_any = true;
            return 1;
        }
        if (n == 0) {
            bm_err_set(err, "%s was closed by QEMU%s", c->name,
                       c->msg_bytes ? " in the middle of a message" : "");
            return broken(c);
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            bm_err_sys(err, errno, "cannot read %s", c->name);
            return broken(c);
        }
        struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
        int r = poll(&pfd, 1, bm_ms_left(deadline));
        if (r < 0 && errno != EINTR) {
            bm_err_sys(err, errno, "poll on %s", c->name);
            return broken(c);
        }
        if (r == 0)
            return 0;
    }
}

/* 1 and *msg (an object), 0 on timeout, -1 on error. */
static int read_message(struct qmp_conn *c, int64_t deadline,
                        json_object **msg, struct bm_err *err)
{
    if (c->broken)
        return bm_err_set(err, "%s is unusable after an earlier error; "
                          "reconnect", c->name);
    for (;;) {
        if (c->in_pos == c->in_len) {
            int r = read_more(c, deadline, err);
            if (r <= 0)
                return r;
        }
        const char *p = c->in + c->in_pos;
        size_t avail = c->in_len - c->in_pos;
        json_object *o = json_tokener_parse_ex(c->tok, p, (int)avail);
        enum json_tokener_error je = json_tokener_get_error(c->tok);
        size_t used = json_tokener_get_parse_end(c->tok);
        char snip[48];
        if (o == NULL && je != json_tokener_continue) {
            bm_err_set(err, "%s sent invalid JSON (%s) near '%s'", c->name,
                       json_tokener_error_desc(je),
                       bm_excerpt(p, avail, snip, sizeof snip));
            return broken(c);
        }
        if (used == 0 || used > avail) {
            json_object_put(o);
            bm_err_set(err, "JSON parser made no progress on %s", c->name);
            return broken(c);
        }
        c->in_pos += used;
        c->msg_bytes += used;
        if (c->msg_bytes > QMP_MAX_MESSAGE) {
            json_object_put(o);
            bm_err_set(err, "message from %s exceeds %u bytes", c->name,
                       QMP_MAX_MESSAGE);
            return broken(c);
        }
        if (o == NULL)
            continue;
        json_tokener_reset(c->tok);
        c->last_bytes = c->msg_bytes;
        c->msg_bytes = 0;
        if (!json_object_is_type(o, json_type_object)) {
            json_object_put(o);
            bm_err_set(err, "%s sent a JSON value that is not an object",
                       c->name);
            return broken(c);
        }
        *msg = o;
        return 1;
    }
}

/* The queue is bounded in count and, through the per-event cap, in bytes:
 * QEMU's events are well under 1 KiB. */
static void queue_event(struct qmp_conn *c, json_object *ev)
{
    if (c->last_bytes > QMP_MAX_EVENT) {
        json_object_put(ev);
        c->ev_dropped++;
        return;
    }
    if (c->ev_count == QMP_EVENT_QUEUE) {
        json_object_put(c->events[c->ev_head]);
        c->ev_head = (c->ev_head + 1) % QMP_EVENT_QUEUE;
        c->ev_count--;
        c->ev_dropped++;
    }
    c->events[(c->ev_head + c->ev_count) % QMP_EVENT_QUEUE] = ev;
    c->ev_count++;
}

static json_object *member(json_object *o, const char *key, json_type t)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, t))
        return NULL;
    return v;
}

static int write_all(struct qmp_conn *c, const char *p, size_t len,
                     int64_t deadline, struct bm_err *err)
{
    return bm_send_all(c->fd, p, len, deadline, c->name, err) < 0 ? broken(c) : 0;
}

/* --- commands and events ------------------------------------------------- */

static int reply_failed(struct qmp_conn *c, const char *cmd, json_object *msg,
                        struct bm_err *err)
{
    json_object *e = member(msg, "error", json_type_object);
    json_object *cls = e ? member(e, "class", json_type_string) : NULL;
    json_object *desc = e ? member(e, "desc", json_type_string) : NULL;
    return bm_err_set(err, "QMP command '%s' failed on %s: %s (%s)", cmd,
                      c->name, desc ? json_object_get_string(desc) : "?",
                      cls ? json_object_get_string(cls) : "no error class");
}

int qmp_execute(struct qmp_conn *c, const char *cmd, json_object *args,
                json_object **ret, struct bm_err *err)
{
    if (c->broken)
        return bm_err_set(err, "%s is unusable after an earlier error; "
                          "reconnect", c->name);
    int64_t id = ++c->next_id;
    json_object *req = json_object_new_object();
    json_object_object_add(req, "execute", json_object_new_string(cmd));
    if (args != NULL)
        json_object_object_add(req, "arguments", json_object_get(args));
    json_object_object_add(req, "id", json_object_new_int64(id));
    size_t len;
    const char *s = json_object_to_json_string_length(req,
        JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    int64_t deadline = bm_now_ms() + c->timeout_ms;
    int rc = write_all(c, s, len, deadline, err);
    if (rc == 0)
        rc = write_all(c, "\n", 1, deadline, err);
    json_object_put(req);
    while (rc == 0) {
        json_object *msg;
        int r = read_message(c, deadline, &msg, err);
        if (r <= 0) {
            if (r == 0)
                bm_err_set(err, "no reply to QMP command '%s' from %s within "
                           "%d ms", cmd, c->name, c->timeout_ms);
            return -1;
        }
        if (member(msg, "event", json_type_string) != NULL) {
            queue_event(c, msg);
            continue;
        }
        json_object *rid, *rv;
        bool is_reply = json_object_object_get_ex(msg, "error", NULL) ||
                        json_object_object_get_ex(msg, "return", NULL);
        /* QEMU omits the id only when it could not parse the request. */
        bool ours = !json_object_object_get_ex(msg, "id", &rid) ||
                    (json_object_is_type(rid, json_type_int) &&
                     json_object_get_int64(rid) == id);
        if (!is_reply || !ours) {
            json_object_put(msg);   /* stale reply to a timed-out command */
            continue;
        }
        if (json_object_object_get_ex(msg, "error", NULL)) {
            rc = reply_failed(c, cmd, msg, err);
        } else if (ret != NULL) {
            json_object_object_get_ex(msg, "return", &rv);
            *ret = json_object_get(rv);
        }
        json_object_put(msg);
        return rc;
    }
    return rc;
}

int qmp_next_event(struct qmp_conn *c, int timeout_ms, json_object **event,
                   struct bm_err *err)
{
    int64_t deadline = bm_now_ms() + (timeout_ms < 0 ? 0 : timeout_ms);
    while (c->ev_count == 0) {
        json_object *msg;
        int r = read_message(c, deadline, &msg, err);
        if (r <= 0)
            return r;
        if (member(msg, "event", json_type_string) != NULL)
            queue_event(c, msg);
        else
            json_object_put(msg);
    }
    *event = c->events[c->ev_head];
    c->ev_head = (c->ev_head + 1) % QMP_EVENT_QUEUE;
    c->ev_count--;
    return 1;
}

uint64_t qmp_events_dropped(const struct qmp_conn *c) { return c->ev_dropped; }
int qmp_fd(const struct qmp_conn *c) { return c->fd; }
void qmp_set_timeout(struct qmp_conn *c, int ms) { c->timeout_ms = ms > 0 ? ms : 1; }

void qmp_version(const struct qmp_conn *c, int *major, int *minor, int *micro)
{
    *major = c->version[0];
    *minor = c->version[1];
    *micro = c->version[2];
}

/* --- connection ---------------------------------------------------------- */

static int check_greeting(struct qmp_conn *c, json_object *g,
                          struct bm_err *err)
{
    json_object *qmp = member(g, "QMP", json_type_object);
    json_object *ver = qmp ? member(qmp, "version", json_type_object) : NULL;
    json_object *q = ver ? member(ver, "qemu", json_type_object) : NULL;
    if (q == NULL || member(qmp, "capabilities", json_type_array) == NULL)
        return bm_err_set(err, "%s is not a QMP socket (its greeting has no "
                          "QMP version and capabilities)", c->name);
    static const char *const keys[3] = { "major", "minor", "micro" };
    for (int i = 0; i < 3; i++) {
        json_object *v = member(q, keys[i], json_type_int);
        c->version[i] = v ? json_object_get_int(v) : -1;
    }
    return 0;
}

void qmp_close(struct qmp_conn *c)
{
    if (c == NULL)
        return;
    while (c->ev_count > 0) {
        json_object_put(c->events[c->ev_head]);
        c->ev_head = (c->ev_head + 1) % QMP_EVENT_QUEUE;
        c->ev_count--;
    }
    if (c->tok != NULL)
        json_tokener_free(c->tok);
    close(c->fd);
    free(c);
}

static int chan_exec(struct qemu_chan *ch, const char *cmd, json_object *args,
                     json_object **ret, struct bm_err *err)
{
    return qmp_execute((struct qmp_conn *)ch, cmd, args, ret, err);
}

static void chan_free(struct qemu_chan *ch) { qmp_close((struct qmp_conn *)ch); }

static const struct qemu_chan_ops qmp_chan_ops = { chan_exec, chan_free };

struct qemu_chan *qmp_chan(struct qmp_conn *c) { return c ? &c->chan : NULL; }

static struct qmp_conn *open_conn(int fd, const char *name, int timeout_ms,
                                  struct bm_err *err)
{
    struct qmp_conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        close(fd);
        bm_err_set(err, "out of memory for a QMP connection");
        return NULL;
    }
    c->chan.ops = &qmp_chan_ops;
    c->fd = fd;
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
    snprintf(c->name, sizeof c->name, "%s", name);
    c->tok = json_tokener_new_ex(QMP_MAX_DEPTH);
    if (c->tok == NULL) {
        bm_err_set(err, "out of memory for a JSON parser");
        qmp_close(c);
        return NULL;
    }
    json_tokener_set_flags(c->tok, JSON_TOKENER_STRICT |
                           JSON_TOKENER_ALLOW_TRAILING_CHARS |
                           JSON_TOKENER_VALIDATE_UTF8);
    json_object *g = NULL;
    struct bm_err why = BM_ERR_INIT;
    int64_t deadline = bm_now_ms() + c->timeout_ms;
    int r = read_message(c, deadline, &g, &why);
    /* An event can come before the greeting: QEMU 7.2 starts writing to a
     * newly accepted client before its monitor thread has reset the session
     * (seen by the soak: a GUEST_PANICKED first). Such events are queued
     * like any other; a bounded number of them, within the same deadline. */
    for (int skipped = 0; r > 0 && skipped < QMP_EVENT_QUEUE &&
         member(g, "QMP", json_type_object) == NULL &&
         member(g, "event", json_type_string) != NULL; skipped++) {
        queue_event(c, g);
        g = NULL;
        r = read_message(c, deadline, &g, &why);
    }
    if (r == 0)
        /* QEMU serves one QMP client per monitor; others wait silently in
         * the listen backlog (measured on 7.2). */
        bm_err_set(err, "no QMP greeting from %s within %d ms: not a QMP "
                   "socket, or another client holds this QMP monitor (the "
                   "VM's manager stayed busy; for a VM that libvirt "
                   "manages, name the domain instead: -d NAME)", c->name,
                   c->timeout_ms);
    else if (r < 0 && c->got_any)
        bm_err_set(err, "%s is not a QMP socket (it sent '%s')", c->name,
                   c->first);
    else if (r < 0)
        bm_err_set(err, "no QMP greeting: %s", bm_err_msg(&why));
    if (r <= 0 || check_greeting(c, g, err) < 0 ||
        qmp_execute(c, "qmp_capabilities", NULL, NULL, err) < 0) {
        json_object_put(g);
        qmp_close(c);
        return NULL;
    }
    json_object_put(g);
    return c;
}

struct qmp_conn *qmp_adopt(int fd, int timeout_ms, struct bm_err *err)
{
    char name[64];
    if (fd < 0) {
        bm_err_set(err, "invalid QMP file descriptor %d", fd);
        return NULL;
    }
    snprintf(name, sizeof name, "the QMP connection on fd %d", fd);
    return open_conn(fd, name, timeout_ms, err);
}

struct qmp_conn *qmp_connect(const char *path, int timeout_ms,
                             struct bm_err *err)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    size_t len = strlen(path);
    if (len >= sizeof sa.sun_path) {
        bm_err_set(err, "QMP socket path %s is too long (max %zu)", path,
                   sizeof sa.sun_path - 1);
        return NULL;
    }
    memcpy(sa.sun_path, path, len + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        bm_err_sys(err, errno, "socket for QMP");
        return NULL;
    }
    int64_t deadline = bm_now_ms() + timeout_ms;
    /* A full backlog gives EAGAIN at once on unix sockets: retry. */
    while (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN || bm_ms_left(deadline) == 0) {
            bm_err_sys(err, errno, "cannot connect to the QMP socket %s",
                       path);
            close(fd);
            return NULL;
        }
        poll(NULL, 0, 5);
    }
    char name[160];
    snprintf(name, sizeof name, "the QMP socket %s", path);
    return open_conn(fd, name, timeout_ms, err);
}

int qmp_peer_pid(const struct qmp_conn *c, pid_t *pid, struct bm_err *err)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return bm_err_sys(err, errno, "SO_PEERCRED on %s", c->name);
    if (cred.pid <= 0)
        return bm_err_set(err, "no peer process for %s", c->name);
    *pid = cred.pid;
    return 0;
}
