/* latency-probe.c - figure 1's stopwatch. It connects to the guest's serial
 * socket, sends the trigger byte, and timestamps (CLOCK_MONOTONIC, in this
 * one process) the arrival of the guest's "bugcheck now" line and of the
 * first line on WATCH_FD that contains PATTERN (bsodmon's stdout, gdb's
 * stdout or a QMP socket, inherited from the caller). Both are read by the
 * same poll() loop, so no clocks or threads of two processes are compared.
 *
 *   latency-probe SERIAL_SOCK WATCH_FD PATTERN [TIMEOUT_MS]
 *
 * Unix stream sockets and pipes carry no kernel receive timestamps, so a
 * timestamp is taken when poll() wakes this process. To keep that close to
 * the moment the bytes were written, the probe asks for SCHED_FIFO (it
 * sleeps in poll() all the time, so it takes no CPU from the guest or the
 * monitor) and locks its memory; without those rights it still runs and
 * says so (BENCH_PROBE_NO_RT=1 turns it off, to compare). Without them, on a loaded 2-core machine, a late wake-up for the
 * serial line was seen to hide a whole latency (both lines read at once).
 *
 * Output: "SERIAL_NS EVENT_NS RT" on the first line (0 for what did not
 * come in time; RT 1 when SCHED_FIFO was granted), then the matching event
 * line as received. Exit 0 when both came, 1 otherwise.
 */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 65536

struct liner {
    char buf[LINE_MAX_BYTES];
    size_t len;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Append bytes; for each complete line call found(). Returns 1 when found()
 * matched a line (its text left in l->buf, NUL-terminated), else 0. */
static int feed(struct liner *l, const char *p, size_t n, int (*match)(const char *, const void *),
                const void *arg)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            l->buf[l->len] = 0;
            if (match(l->buf, arg))
                return 1;
            l->len = 0;
        } else if (p[i] != '\r' && l->len + 1 < sizeof l->buf) {
            l->buf[l->len++] = p[i];
        }
    }
    return 0;
}

static int is_bugcheck_now(const char *line, const void *arg)
{
    (void)arg;
    return strcmp(line, "bugcheck now") == 0;
}

static int has_pattern(const char *line, const void *arg)
{
    return strstr(line, (const char *)arg) != NULL;
}

static int connect_serial(const char *path, int timeout_ms)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof a.sun_path) {
        fprintf(stderr, "latency-probe: socket path too long: %s\n", path);
        return -1;
    }
    strcpy(a.sun_path, path);
    uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -1;
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0)
            return fd;
        int e = errno;
        close(fd);
        if (now_ns() > deadline) {
            fprintf(stderr, "latency-probe: cannot connect to %s: %s\n", path, strerror(e));
            return -1;
        }
        usleep(10000); /* QEMU's socket chardev takes one client at a time */
    }
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: latency-probe SERIAL_SOCK WATCH_FD PATTERN [TIMEOUT_MS]\n");
        return 2;
    }
    int wfd = atoi(argv[2]);
    const char *pattern = argv[3];
    int timeout_ms = argc == 5 ? atoi(argv[4]) : 30000;
    struct sched_param sp = { .sched_priority = 50 };
    int rt = getenv("BENCH_PROBE_NO_RT") == NULL && sched_setscheduler(0, SCHED_FIFO, &sp) == 0;
    if (rt)
        mlockall(MCL_CURRENT | MCL_FUTURE);
    int sfd = connect_serial(argv[1], 5000);
    if (sfd < 0)
        return 1;
    static struct liner sl, wl;
    uint64_t t_serial = 0, t_event = 0;
    if (write(sfd, "t", 1) != 1) {
        perror("latency-probe: sending the trigger");
        return 1;
    }
    uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000u;
    char chunk[4096];
    while (t_serial == 0 || t_event == 0) {
        struct pollfd p[2] = { { sfd, POLLIN, 0 }, { wfd, POLLIN, 0 } };
        int64_t left = (int64_t)(deadline - now_ns()) / 1000000;
        if ((int64_t)(deadline - now_ns()) <= 0)
            break;
        int n = poll(p, 2, (int)(left + 1));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        /* Serial first: when both are ready at once, the order of the bytes
         * in time was serial, then event. */
        if (p[0].revents) {
            ssize_t r = read(sfd, chunk, sizeof chunk);
            uint64_t t = now_ns();
            if (r <= 0) {
                p[0].fd = -1;
                break;
            }
            if (t_serial == 0 && feed(&sl, chunk, (size_t)r, is_bugcheck_now, NULL))
                t_serial = t;
        }
        if (p[1].revents) {
            ssize_t r = read(wfd, chunk, sizeof chunk);
            uint64_t t = now_ns();
            if (r <= 0)
                break;
            if (t_event == 0 && feed(&wl, chunk, (size_t)r, has_pattern, pattern))
                t_event = t;
        }
    }
    printf("%llu %llu %d\n%s\n", (unsigned long long)t_serial, (unsigned long long)t_event,
           rt, t_event ? wl.buf : "");
    close(sfd);
    return t_serial && t_event ? 0 : 1;
}
