/* replay.c - see replay.h. */
#include "replay.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* The server gives up on a silent client after this long, so a client bug
 * shows as a failure instead of a hung test. */
#define SERVER_WAIT_MS 10000

static void failf(struct replay *r, const char *fmt, ...)
{
    if (r->fail[0] != '\0')
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->fail, sizeof r->fail, fmt, ap);
    va_end(ap);
}

static int unescape(const char *s, size_t n, char *out, size_t *outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') {
            out[o++] = s[i];
            continue;
        }
        if (++i >= n)
            return -1;
        switch (s[i]) {
        case '\\': out[o++] = '\\'; break;
        case 'r': out[o++] = '\r'; break;
        case 'n': out[o++] = '\n'; break;
        case 't': out[o++] = '\t'; break;
        case 'x': {
            char hex[3] = { 0 };
            char *end;
            if (i + 2 >= n)
                return -1;
            memcpy(hex, s + i + 1, 2);
            unsigned long v = strtoul(hex, &end, 16);
            if (end != hex + 2)
                return -1;
            out[o++] = (char)v;
            i += 2;
            break;
        }
        default:
            return -1;
        }
    }
    *outlen = o;
    return 0;
}

static int parse_script(struct replay *r, const char *text)
{
    size_t cap = 16;
    r->steps = calloc(cap, sizeof *r->steps);
    for (const char *p = text; r->steps != NULL && *p != '\0';) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        const char *line = p;
        p += len + (eol != NULL);
        if (len == 0 || line[0] == '#')
            continue;
        if (r->nsteps == cap) {
            cap *= 2;
            struct replay_step *s = realloc(r->steps, cap * sizeof *s);
            if (s == NULL)
                break;
            r->steps = s;
        }
        struct replay_step *st = &r->steps[r->nsteps];
        memset(st, 0, sizeof *st);
        if (len == 5 && memcmp(line, "close", 5) == 0) {
            st->kind = STEP_CLOSE;
        } else if (len > 6 && memcmp(line, "pause ", 6) == 0) {
            st->kind = STEP_PAUSE;
            st->len = strtoul(line + 6, NULL, 10);
        } else if (len >= 3 && (line[0] == '<' || line[0] == '>') &&
                   line[1] == ' ') {
            st->kind = line[0] == '<' ? STEP_SEND : STEP_EXPECT;
            st->data = malloc(len);
            if (st->data == NULL ||
                unescape(line + 2, len - 2, st->data, &st->len) < 0) {
                failf(r, "bad escape in transcript line '%.*s'", (int)len,
                      line);
                free(st->data);
                return -1;
            }
        } else {
            failf(r, "bad transcript line '%.*s'", (int)(len > 60 ? 60 : len),
                  line);
            return -1;
        }
        r->nsteps++;
    }
    if (r->steps == NULL) {
        failf(r, "out of memory");
        return -1;
    }
    return 0;
}

static int wait_in(int fd)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    int n;
    do
        n = poll(&pfd, 1, SERVER_WAIT_MS);
    while (n < 0 && errno == EINTR);
    return n;
}

static void describe(char *out, size_t max, const char *p, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < max; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c < 0x7f)
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, max - o, "\\x%02x", c);
    }
    out[o] = '\0';
}

static bool expect(struct replay *r, const struct replay_step *st)
{
    char got[8192];
    size_t have = 0;
    while (have < st->len) {
        if (wait_in(r->fd) <= 0) {
            failf(r, "step %zu: client silent; got %zu of %zu bytes", r->done,
                  have, st->len);
            return false;
        }
        size_t want = st->len - have;
        if (want > sizeof got - have)
            want = sizeof got - have;
        ssize_t n = read(r->fd, got + have, want);
        if (n <= 0) {
            char a[200];
            describe(a, sizeof a, st->data, st->len);
            failf(r, "step %zu: client closed; expected '%s'", r->done, a);
            return false;
        }
        if (memcmp(got + have, st->data + have, (size_t)n) != 0) {
            char a[200], b[200];
            describe(a, sizeof a, st->data, st->len);
            describe(b, sizeof b, got, have + (size_t)n);
            failf(r, "step %zu: client sent '%s', expected '%s'", r->done, b,
                  a);
            return false;
        }
        have += (size_t)n;
        if (have == sizeof got && have < st->len) {
            failf(r, "step %zu: expected chunk too long for the test", r->done);
            return false;
        }
    }
    return true;
}

static void *serve(void *arg)
{
    struct replay *r = arg;
    bool ok = true;
    if (r->listen_fd >= 0) {
        if (wait_in(r->listen_fd) <= 0 ||
            (r->fd = accept4(r->listen_fd, NULL, NULL, SOCK_CLOEXEC)) < 0) {
            failf(r, "no client connected");
            return NULL;
        }
    }
    for (; ok && r->done < r->nsteps; r->done += ok) {
        const struct replay_step *st = &r->steps[r->done];
        switch (st->kind) {
        case STEP_SEND:
            for (size_t off = 0; ok && off < st->len;) {
                ssize_t n = send(r->fd, st->data + off, st->len - off,
                                 MSG_NOSIGNAL);
                if (n <= 0) {
                    failf(r, "step %zu: send failed (client gone?)", r->done);
                    ok = false;
                } else {
                    off += (size_t)n;
                }
            }
            break;
        case STEP_EXPECT:
            ok = expect(r, st);
            break;
        case STEP_CLOSE:
            shutdown(r->fd, SHUT_WR);
            break;
        case STEP_PAUSE:
            poll(NULL, 0, (int)st->len);
            break;
        }
    }
    if (!ok) {
        close(r->fd);   /* the client fails fast instead of timing out */
        return NULL;
    }
    /* Drain until the client closes; anything it sends now is unscripted. */
    char extra[256];
    for (;;) {
        if (wait_in(r->fd) <= 0) {
            failf(r, "client did not close its end");
            break;
        }
        ssize_t n = read(r->fd, extra, sizeof extra);
        if (n <= 0)
            break;
        char d[200];
        describe(d, sizeof d, extra, (size_t)n);
        failf(r, "client sent unscripted bytes after the end: '%s'", d);
    }
    close(r->fd);
    return NULL;
}

static int start(struct replay *r)
{
    int sv[2];
    r->listen_fd = -1;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        failf(r, "socketpair: %s", strerror(errno));
        return -1;
    }
    r->fd = sv[0];
    if (pthread_create(&r->thread, NULL, serve, r) != 0) {
        close(sv[0]);
        close(sv[1]);
        failf(r, "pthread_create failed");
        return -1;
    }
    r->started = true;
    return sv[1];
}

int replay_start_text(struct replay *r, const char *text)
{
    memset(r, 0, sizeof *r);
    r->listen_fd = -1;
    if (parse_script(r, text) < 0)
        return -1;
    return start(r);
}

char *replay_read_data(const char *name, size_t *len)
{
    const char *dir = getenv("TESTDATA_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/qemu/%s", dir ? dir : "tests/unit/data",
             name);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 65536;
            char *b = realloc(buf, cap);
            if (b == NULL)
                break;
            buf = b;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    if (buf != NULL) {
        buf[n] = '\0';
        if (len != NULL)
            *len = n;
    }
    return buf;
}

int replay_start_file(struct replay *r, const char *name)
{
    memset(r, 0, sizeof *r);
    r->listen_fd = -1;
    char *text = replay_read_data(name, NULL);
    if (text == NULL) {
        failf(r, "cannot read transcript %s (TESTDATA_DIR unset?)", name);
        return -1;
    }
    int rc = parse_script(r, text);
    free(text);
    return rc < 0 ? -1 : start(r);
}

int replay_listen_file(struct replay *r, const char *name, const char *path)
{
    memset(r, 0, sizeof *r);
    r->fd = -1;
    r->listen_fd = -1;
    char *text = replay_read_data(name, NULL);
    if (text == NULL) {
        failf(r, "cannot read transcript %s", name);
        return -1;
    }
    int rc = parse_script(r, text);
    free(text);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    r->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (rc < 0 || r->listen_fd < 0 ||
        bind(r->listen_fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        listen(r->listen_fd, 1) < 0) {
        failf(r, "cannot listen on %s: %s", path, strerror(errno));
        return -1;
    }
    if (pthread_create(&r->thread, NULL, serve, r) != 0) {
        failf(r, "pthread_create failed");
        return -1;
    }
    r->started = true;
    return 0;
}

bool replay_finish(struct replay *r)
{
    if (r->started)
        pthread_join(r->thread, NULL);
    if (r->listen_fd >= 0)
        close(r->listen_fd);
    for (size_t i = 0; i < r->nsteps; i++)
        free(r->steps[i].data);
    free(r->steps);
    r->steps = NULL;
    bool ok = r->started && r->fail[0] == '\0' && r->done == r->nsteps;
    if (!ok && r->fail[0] == '\0')
        failf(r, "script stopped at step %zu of %zu", r->done, r->nsteps);
    return ok;
}

char *replay_expect(const char *name, const char *key)
{
    char *text = replay_read_data(name, NULL);
    if (text == NULL)
        return NULL;
    char pat[128];
    snprintf(pat, sizeof pat, "# expect %s=", key);
    char *hit = NULL;
    for (char *p = text; p != NULL && *p != '\0';) {
        char *eol = strchr(p, '\n');
        if (strncmp(p, pat, strlen(pat)) == 0) {
            size_t n = (eol ? (size_t)(eol - p) : strlen(p)) - strlen(pat);
            hit = strndup(p + strlen(pat), n);
            break;
        }
        p = eol ? eol + 1 : NULL;
    }
    free(text);
    return hit;
}

unsigned long long replay_expect_u64(const char *name, const char *key)
{
    char *v = replay_expect(name, key);
    if (v == NULL)
        fail_msg("transcript %s has no '# expect %s=' line", name, key);
    unsigned long long x = strtoull(v, NULL, 0);
    free(v);
    return x;
}

/* --- scripts built in code ------------------------------------------------ */

void script_add(struct script *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        fail_msg("script_add: bad format");
    if (s->len + (size_t)n + 1 > s->cap) {
        size_t cap = (s->len + (size_t)n + 1) * 2;
        char *b = realloc(s->buf, cap);
        if (b == NULL)
            fail_msg("script_add: out of memory");
        s->buf = b;
        s->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(s->buf + s->len, s->cap - s->len, fmt, ap);
    va_end(ap);
    s->len += (size_t)n;
}

void script_pkt(struct script *s, char dir, const char *payload)
{
    unsigned sum = 0;
    script_add(s, "%c $", dir);
    for (const char *p = payload; *p != '\0'; p++) {
        sum += (unsigned char)*p;
        if (*p == '\\')
            script_add(s, "\\\\");
        else
            script_add(s, "%c", *p);
    }
    script_add(s, "#%02x\n", sum & 0xff);
}

void script_exchange(struct script *s, const char *request, const char *reply)
{
    script_pkt(s, '>', request);
    script_add(s, "< +\n");
    script_pkt(s, '<', reply);
    script_add(s, "> +\n");
}

void script_free(struct script *s)
{
    free(s->buf);
    memset(s, 0, sizeof *s);
}
