/* guardian.c - makes a killed bsodmon harmless.
 *
 * QEMU neither removes breakpoints nor resumes the guest when its GDB client
 * dies (measured on 7.2): a breakpoint left on KeBugCheck2 would freeze the
 * guest at its next bug check with nobody listening. So a small process
 * (this program, exec'ed) waits on a pipe from bsodmon, which tells it of
 * each attach ("arm": the route, the stub socket, the private directory)
 * and each clean detach ("disarm"). If bsodmon dies any other way (SIGKILL,
 * out of memory, a crash) the pipe reaches EOF with attaches still armed,
 * and for each the guardian reconnects to the stub (a new client's '?'
 * clears every breakpoint), detaches (which resumes the guest), closes the
 * stub through the monitor (QMP, or libvirt: the route is plain data,
 * opened anew here) and removes the private socket directory. A detach
 * that failed asks for the same at once ("clean"). One guardian serves one
 * VM, or every domain of the host mode.
 *
 * The pipe carries records of NUL-terminated fields: "A", id, via, target,
 * uri, stub, dir; "D", id; "C", id. Each is written whole under a lock.
 */
#include "vmi/qemu/guardian.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vmi/qemu/chan.h"
#include "vmi/qemu/qmp.h"
#include "vmi/qemu/rsp.h"

#define GUARDIAN_RETRY_MS 5000

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static void say(const char *what, const struct bm_err *err)
{
    fprintf(stderr, "bsodmon guardian: %s%s%s\n", what, err ? ": " : "", err ? bm_err_msg(err) : "");
}

/* A new client's '?' clears every breakpoint; D then resumes the guest
 * (without D it stays paused). */
static int clear_through(const char *stub_path, bool resume, int tries_ms, struct bm_err *err)
{
    struct rsp_conn *rsp = NULL;
    for (int waited = 0; rsp == NULL; waited += 50) {
        bm_err_clear(err);
        rsp = rsp_connect(stub_path, 2000, err);
        if (rsp == NULL && waited >= tries_ms)
            return -1;
        if (rsp == NULL)
            sleep_ms(50);
    }
    bm_err_clear(err);
    int rc = rsp_handshake(rsp, err);
    if (rc == 0 && resume)
        rc = rsp_detach(rsp, err);
    rsp_close(rsp);
    return rc;
}

/* The VM's manager may hold QMP for a moment, libvirtd may be restarting:
 * retry a while. */
static struct qemu_chan *monitor(const struct qemu_route *route, struct bm_err *err)
{
    struct qemu_chan *ch = NULL;
    for (int waited = 0; ch == NULL; waited += 100) {
        bm_err_clear(err);
        ch = qemu_route_open(route, 2000, err);
        if (ch == NULL && waited >= GUARDIAN_RETRY_MS)
            return NULL;
        if (ch == NULL)
            sleep_ms(100);
    }
    return ch;
}

int stub_reset(const struct qemu_route *route, const char *stub_path, bool resume,
               struct bm_err *err)
{
    struct qemu_chan *ch = monitor(route, err);
    if (ch == NULL)
        return -1;
    struct bm_err ignored = BM_ERR_INIT;
    qmp_gdbserver_stop(ch, &ignored); /* whatever is left of the old one */
    unlink(stub_path);
    bm_err_clear(err);
    int rc = qmp_gdbserver_start(ch, stub_path, err);
    if (rc == 0)
        rc = clear_through(stub_path, resume, 2000, err);
    bm_err_clear(&ignored);
    qmp_gdbserver_stop(ch, &ignored);
    chan_close(ch);
    unlink(stub_path);
    return rc;
}

/* Retry for a while: QEMU notices the dead client asynchronously. If the
 * stub is gone (someone closed it), open a new one through QMP. */
static void clean_up(const struct qemu_route *route, const char *stub_path, const char *dir)
{
    struct bm_err err = BM_ERR_INIT;
    /* A plain QEMU's stub lives in our private directory, made after the
     * guardian was told of it and before the stub opens, removed only once
     * the stub is closed: without it there is nothing to undo. */
    struct stat st;
    if (dir[0] != '\0' && lstat(dir, &st) < 0 && errno == ENOENT)
        return;
    if (clear_through(stub_path, true, GUARDIAN_RETRY_MS, &err) == 0) {
        struct qemu_chan *ch = monitor(route, &err);
        bm_err_clear(&err);
        if (ch == NULL || qmp_gdbserver_stop(ch, &err) < 0)
            say("breakpoints cleared and guest resumed, but closing the GDB stub failed", &err);
        else
            say("bsodmon ended without detaching; breakpoints cleared, guest resumed", NULL);
        chan_close(ch);
    } else if (stub_reset(route, stub_path, true, &err) == 0) {
        say("bsodmon ended without detaching; breakpoints cleared through a new stub, guest resumed",
            NULL);
    } else {
        say("could not clear bsodmon's breakpoints", &err);
    }
    unlink(stub_path);
    if (dir[0] != '\0')
        rmdir(dir);
}

#define GUARDIAN_MAX_ARMED 512
#define GUARDIAN_RECORD_MAX (8 + 3 * PATH_MAX + LV_URI_MAX + 64)

struct armed {
    unsigned id;
    struct qemu_route route;
    char stub[PATH_MAX];
    char dir[PATH_MAX];
};

/* The guardian's own end: records in, one at a time. */
struct reader {
    int fd;
    char buf[GUARDIAN_RECORD_MAX];
    size_t len;
};

/* Next field; NULL at EOF (or a broken record). */
static const char *next_field(struct reader *r, char *out, size_t cap)
{
    for (;;) {
        char *nul = memchr(r->buf, '\0', r->len);
        if (nul != NULL) {
            size_t n = (size_t)(nul - r->buf);
            if (n >= cap)
                return NULL;
            memcpy(out, r->buf, n + 1);
            memmove(r->buf, nul + 1, r->len - n - 1);
            r->len -= n + 1;
            return out;
        }
        if (r->len == sizeof r->buf)
            return NULL;
        ssize_t k = read(r->fd, r->buf + r->len, sizeof r->buf - r->len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return NULL;
        r->len += (size_t)k;
    }
}

static void guardian_main(int rfd)
{
    /* Never hold the caller's pipes open (a reader waiting for EOF on
     * bsodmon's stdout would wait for us), and ignore terminal signals:
     * we only end on the pipe. */
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        if (!isatty(2))
            dup2(null, 2);
    }
    for (int fd = 3; fd < 4096; fd++)
        if (fd != rfd)
            close(fd);
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    setsid();
    static struct reader r;
    static struct armed a[GUARDIAN_MAX_ARMED];
    size_t n = 0;
    r.fd = rfd;
    char op[4], id[16], via[16];
    while (next_field(&r, op, sizeof op) != NULL && next_field(&r, id, sizeof id) != NULL) {
        unsigned v = (unsigned)strtoul(id, NULL, 10);
        if (strcmp(op, "A") == 0) {
            struct armed e = { .id = v };
            if (next_field(&r, via, sizeof via) == NULL ||
                next_field(&r, e.route.target, sizeof e.route.target) == NULL ||
                next_field(&r, e.route.uri, sizeof e.route.uri) == NULL ||
                next_field(&r, e.stub, sizeof e.stub) == NULL ||
                next_field(&r, e.dir, sizeof e.dir) == NULL)
                break;
            e.route.via = strcmp(via, "libvirt") == 0 ? QEMU_VIA_LIBVIRT : QEMU_VIA_QMP;
            if (n < GUARDIAN_MAX_ARMED)
                a[n++] = e;
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            if (a[i].id != v)
                continue;
            if (strcmp(op, "C") == 0)
                clean_up(&a[i].route, a[i].stub, a[i].dir);
            a[i] = a[--n];
            break;
        }
    }
    /* EOF: bsodmon is gone. Whatever is still armed is ours to undo. */
    for (size_t i = 0; i < n; i++)
        clean_up(&a[i].route, a[i].stub, a[i].dir);
    _exit(0);
}

/* The guardian is this same program, exec'ed (fork alone is not enough: in
 * the host mode other threads may hold libvirt's locks at the fork, and a
 * child that inherited them locked would hang exactly when it is needed).
 * Between fork and exec only async-signal-safe calls; an exec that fails is
 * reported through a close-on-exec pipe. */
int guardian_spawn(struct guardian *g, struct bm_err *err)
{
    int p[2], ex[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return bm_err_sys(err, errno, "pipe for the guardian process");
    if (pipe2(ex, O_CLOEXEC) < 0) {
        close(p[0]);
        close(p[1]);
        return bm_err_sys(err, errno, "pipe for the guardian process");
    }
    char fdarg[16];
    snprintf(fdarg, sizeof fdarg, "%d", p[0]);
    char *const argv[] = { (char *)"bsodmon", (char *)GUARDIAN_ARG, fdarg, NULL };
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        close(ex[0]);
        close(ex[1]);
        return bm_err_sys(err, e, "fork of the guardian process");
    }
    if (pid == 0) {
        fcntl(p[0], F_SETFD, 0);
        execv("/proc/self/exe", argv);
        int e = errno;
        ssize_t w = write(ex[1], &e, sizeof e);
        (void)w;
        _exit(127);
    }
    close(p[0]);
    close(ex[1]);
    int child_errno = 0;
    ssize_t n;
    do
        n = read(ex[0], &child_errno, sizeof child_errno);
    while (n < 0 && errno == EINTR);
    close(ex[0]);
    if (n > 0) {
        close(p[1]);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        return bm_err_sys(err, child_errno, "starting the guardian process (/proc/self/exe)");
    }
    g->pid = pid;
    g->fd = p[1];
    atomic_init(&g->next_id, 0);
    pthread_mutex_init(&g->lock, NULL);
    return 0;
}

static int send_record(struct guardian *g, const char *const *fields, size_t nf,
                       struct bm_err *err)
{
    char rec[GUARDIAN_RECORD_MAX];
    size_t len = 0;
    for (size_t i = 0; i < nf; i++) {
        size_t l = strlen(fields[i]);
        if (len + l + 1 > sizeof rec)
            return bm_err_set(err, "guardian record too long");
        memcpy(rec + len, fields[i], l + 1);
        len += l + 1;
    }
    pthread_mutex_lock(&g->lock);
    int rc = 0;
    for (size_t off = 0; off < len && rc == 0;) {
        ssize_t w = g->fd < 0 ? -1 : write(g->fd, rec + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            rc = bm_err_sys(err, errno, "telling the guardian process");
        else
            off += (size_t)w;
    }
    pthread_mutex_unlock(&g->lock);
    return rc;
}

int guardian_arm(struct guardian *g, const struct qemu_route *route, const char *stub_path,
                 const char *dir, unsigned *id, struct bm_err *err)
{
    *id = atomic_fetch_add(&g->next_id, 1) + 1;
    char ids[16];
    snprintf(ids, sizeof ids, "%u", *id);
    const char *f[] = { "A", ids, route->via == QEMU_VIA_LIBVIRT ? "libvirt" : "qmp",
                        route->target, route->uri, stub_path, dir };
    return send_record(g, f, 7, err);
}

static void send_id(struct guardian *g, const char *op, unsigned id)
{
    char ids[16];
    snprintf(ids, sizeof ids, "%u", id);
    const char *f[] = { op, ids };
    struct bm_err ignored = BM_ERR_INIT;
    send_record(g, f, 2, &ignored);
}

void guardian_disarm(struct guardian *g, unsigned id) { send_id(g, "D", id); }
void guardian_clean(struct guardian *g, unsigned id) { send_id(g, "C", id); }

int guardian_exec_main(int argc, char **argv)
{
    char *end;
    long fd = argc == 3 ? strtol(argv[2], &end, 10) : -1;
    if (argc != 3 || strcmp(argv[1], GUARDIAN_ARG) != 0 || *end != '\0' || fd < 3 || fd > 65535) {
        fprintf(stderr, "bsodmon: %s is for bsodmon's own use\n", GUARDIAN_ARG);
        return 1;
    }
    guardian_main((int)fd);
    return 0;
}

void guardian_end(struct guardian *g, bool wait)
{
    if (g->fd < 0)
        return;
    pthread_mutex_lock(&g->lock);
    close(g->fd);
    g->fd = -1;
    pthread_mutex_unlock(&g->lock);
    if (!wait)
        return;
    int st;
    while (waitpid(g->pid, &st, 0) < 0 && errno == EINTR)
        ;
}
