/* guardian.c - makes a killed bsodmon harmless.
 *
 * QEMU neither removes breakpoints nor resumes the guest when its GDB client
 * dies (measured on 7.2): a breakpoint left on KeBugCheck2 would freeze the
 * guest at its next bug check with nobody listening. So at attach we fork a
 * small process that waits on a pipe from bsodmon. A clean detach writes 'D'
 * and the guardian exits quietly. If bsodmon dies any other way (SIGKILL, out
 * of memory, a crash) the pipe reaches EOF with no 'D', and the guardian
 * reconnects to the stub (a new client's '?' clears every breakpoint),
 * detaches (which resumes the guest), closes the stub through the monitor
 * (QMP, or libvirt: the route is plain data, opened anew here) and removes
 * the private socket directory.
 */
#include "vmi/qemu/guardian.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static void guardian_main(int rfd, const struct qemu_route *route, const char *stub_path,
                          const char *dir)
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
    char c = 0;
    ssize_t n;
    do
        n = read(rfd, &c, 1);
    while (n < 0 && errno == EINTR);
    if (n == 1 && c == 'D')
        _exit(0);
    clean_up(route, stub_path, dir);
    _exit(0);
}

/* The guardian is this same program, exec'ed (fork alone is not enough: in
 * the host mode other threads may hold libvirt's locks at the fork, and a
 * child that inherited them locked would hang exactly when it is needed).
 * Between fork and exec only async-signal-safe calls; an exec that fails is
 * reported through a close-on-exec pipe. */
int guardian_start(struct guardian *g, const struct qemu_route *route, const char *stub_path,
                   const char *dir, struct bm_err *err)
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
    char *const argv[] = {
        (char *)"bsodmon", (char *)GUARDIAN_ARG, fdarg,
        (char *)(route->via == QEMU_VIA_LIBVIRT ? "libvirt" : "qmp"),
        (char *)route->target, (char *)route->uri, (char *)stub_path, (char *)dir, NULL,
    };
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
    return 0;
}

int guardian_exec_main(int argc, char **argv)
{
    if (argc != 8 || strcmp(argv[1], GUARDIAN_ARG) != 0) {
        fprintf(stderr, "bsodmon: %s is for bsodmon's own use\n", GUARDIAN_ARG);
        return 1;
    }
    char *end;
    long fd = strtol(argv[2], &end, 10);
    struct qemu_route route = { 0 };
    route.via = strcmp(argv[3], "libvirt") == 0 ? QEMU_VIA_LIBVIRT : QEMU_VIA_QMP;
    if (*end != '\0' || fd < 3 || fd > 65535 || strlen(argv[4]) >= sizeof route.target ||
        strlen(argv[5]) >= sizeof route.uri) {
        fprintf(stderr, "bsodmon: %s: bad arguments\n", GUARDIAN_ARG);
        return 1;
    }
    memcpy(route.target, argv[4], strlen(argv[4]) + 1);
    memcpy(route.uri, argv[5], strlen(argv[5]) + 1);
    guardian_main((int)fd, &route, argv[6], argv[7]);
    return 0;
}

void guardian_release(struct guardian *g)
{
    if (g->fd < 0)
        return;
    ssize_t n;
    do
        n = write(g->fd, "D", 1);
    while (n < 0 && errno == EINTR);
    close(g->fd);
    g->fd = -1;
    int st;
    while (waitpid(g->pid, &st, 0) < 0 && errno == EINTR)
        ;
}
