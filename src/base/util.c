/* util.c - see util.h. */
#include "base/util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int64_t bm_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int bm_ms_left(int64_t deadline)
{
    int64_t left = deadline - bm_now_ms();
    return left < 0 ? 0 : (left > 1000000 ? 1000000 : (int)left);
}

const char *bm_excerpt(const char *p, size_t len, char *out, size_t max)
{
    size_t n = 0;
    if (max == 0)
        return "";                      /* no room even for the NUL */
    for (size_t i = 0; i < len && n + 4 < max; i++) {
        unsigned char c = (unsigned char)p[i];
        out[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '.';
    }
    if (len > n && max >= 4) {          /* room for "..." and the NUL */
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
    return out;
}

int bm_hexdigit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int bm_send_all(int fd, const void *buf, size_t len, int64_t deadline, const char *peer,
                struct bm_err *err)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return bm_err_sys(err, errno, "cannot write to %s", peer);
        struct pollfd pfd = { .fd = fd, .events = POLLOUT };
        int r = poll(&pfd, 1, bm_ms_left(deadline));
        if (r < 0 && errno != EINTR)
            return bm_err_sys(err, errno, "poll on the socket of %s", peer);
        if (r == 0)
            return bm_err_set(err, "%s does not accept data (write timed out)", peer);
    }
    return 0;
}

int bm_proc_status_num(int pid, const char *field, long *out)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    size_t fl = strlen(field);
    for (const char *p = buf; *p != '\0';) {
        if (strncmp(p, field, fl) == 0 && p[fl] == ':') {
            char *end;
            errno = 0;
            long v = strtol(p + fl + 1, &end, 10);
            if (errno != 0 || end == p + fl + 1 || v < 0)
                return -1;
            *out = v;
            return 0;
        }
        const char *nl = strchr(p, '\n');
        if (nl == NULL)
            break;
        p = nl + 1;
    }
    return -1;
}
