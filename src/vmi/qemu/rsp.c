/* rsp.c - GDB stub client: the commands. Framing is in rsp_wire.c, payload
 * parsers in rsp_parse.c. See rsp.h. */
#include "vmi/qemu/rsp.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vmi/qemu/rsp_parse.h"
#include "vmi/qemu/rsp_wire.h"

/* Without qSupported's PacketSize, GDB's own conservative default. */
#define DEFAULT_PACKET_SIZE 400
#define TARGET_XML_MAX 16384

struct rsp_bp {
    uint64_t addr;
    enum rsp_bp_kind kind;
};

struct rsp_conn {
    struct rsp_wire w;
    int timeout_ms;
    bool handshaken, running, detached;
    bool multiprocess, vcont_c, vcont_s, xfer_features, phys, phys_checked;
    size_t packet_size;
    unsigned pid;          /* pid of multiprocess thread ids (QEMU: 1) */
    int nthreads;
    long tids[RSP_MAX_VCPUS];
    long g_tid;            /* thread of the last Hg; 0 = unknown */
    struct rsp_stop last;
    size_t nbps;
    struct rsp_bp bps[RSP_MAX_BREAKPOINTS];
};

/* --- connection ---------------------------------------------------------- */

struct rsp_conn *rsp_adopt(int fd, int timeout_ms, struct bm_err *err)
{
    if (fd < 0) {
        bm_err_set(err, "invalid GDB stub file descriptor %d", fd);
        return NULL;
    }
    struct rsp_conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        bm_err_set(err, "out of memory for a GDB stub connection");
        return NULL;
    }
    rsp_wire_init(&c->w, fd);
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
    c->packet_size = DEFAULT_PACKET_SIZE;
    c->last.vcpu = -1;
    return c;
}

struct rsp_conn *rsp_connect(const char *path, int timeout_ms,
                             struct bm_err *err)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path) {
        bm_err_set(err, "GDB stub socket path %s is too long (max %zu)",
                   path, sizeof sa.sun_path - 1);
        return NULL;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        bm_err_sys(err, errno, "socket for the GDB stub");
        return NULL;
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* A unix socket whose backlog is full answers EAGAIN at once instead of
     * completing later, so retry until the deadline. */
    while (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        long ms = (t.tv_sec - t0.tv_sec) * 1000 +
                  (t.tv_nsec - t0.tv_nsec) / 1000000;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN || ms >= timeout_ms) {
            bm_err_sys(err, errno, "cannot connect to the GDB stub at %s",
                       path);
            close(fd);
            return NULL;
        }
        poll(NULL, 0, 5);
    }
    struct rsp_conn *c = rsp_adopt(fd, timeout_ms, err);
    if (c == NULL)
        close(fd);
    return c;
}

void rsp_close(struct rsp_conn *c)
{
    if (c == NULL)
        return;
    close(c->w.fd);
    free(c);
}

int rsp_fd(const struct rsp_conn *c) { return c->w.fd; }
void rsp_set_timeout(struct rsp_conn *c, int ms) { c->timeout_ms = ms > 0 ? ms : 1; }
int rsp_vcpu_count(const struct rsp_conn *c) { return c->nthreads; }
bool rsp_multiprocess(const struct rsp_conn *c) { return c->multiprocess; }
bool rsp_ack_mode(const struct rsp_conn *c) { return c->w.ack_mode; }
bool rsp_running(const struct rsp_conn *c) { return c->running; }
bool rsp_phys_mode(const struct rsp_conn *c) { return c->phys; }
size_t rsp_bp_count(const struct rsp_conn *c) { return c->nbps; }
const struct rsp_stop *rsp_last_stop(const struct rsp_conn *c) { return &c->last; }

/* --- request/reply --------------------------------------------------------- */

static int usable(struct rsp_conn *c, bool need_stopped, struct bm_err *err)
{
    if (c->detached)
        return bm_err_set(err, "GDB stub connection was detached");
    if (c->w.broken)
        return bm_err_set(err, "GDB stub connection is unusable after an "
                          "earlier error; reconnect");
    if (need_stopped && c->running)
        return bm_err_set(err, "the vCPUs are running; interrupt them first");
    return 0;
}

/* Send a packet and receive its reply into c->w.pkt / c->w.len. */
static int transact(struct rsp_conn *c, const char *payload, size_t len,
                    struct bm_err *err)
{
    if (rsp_wire_send(&c->w, payload, len, c->timeout_ms, err) < 0)
        return -1;
    int r = rsp_wire_recv(&c->w, c->timeout_ms, err);
    if (r == 0) {
        c->w.broken = true;
        char snip[40];
        return bm_err_set(err, "no reply from the GDB stub to '%s' within "
                          "%d ms", rsp_wire_snippet(payload, len, snip,
                                                    sizeof snip),
                          c->timeout_ms);
    }
    return r < 0 ? -1 : 0;
}

static int request(struct rsp_conn *c, struct bm_err *err, const char *fmt,
                   ...) __attribute__((format(printf, 3, 4)));
static int request(struct rsp_conn *c, struct bm_err *err, const char *fmt,
                   ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof buf)
        return bm_err_set(err, "internal error: GDB packet too long");
    return transact(c, buf, (size_t)n, err);
}

static bool reply_is(const struct rsp_conn *c, const char *s)
{
    return c->w.len == strlen(s) && memcmp(c->w.pkt, s, c->w.len) == 0;
}

static bool reply_is_error(const struct rsp_conn *c)
{
    return c->w.len == 3 && c->w.pkt[0] == 'E';
}

/* The reply was neither what we wanted nor "OK": say why. */
static int reply_error(const struct rsp_conn *c, const char *what,
                       struct bm_err *err)
{
    char snip[48];
    if (c->w.len == 0)
        return bm_err_set(err, "%s: not supported by this GDB stub", what);
    if (reply_is_error(c))
        return bm_err_set(err, "%s: GDB stub error %s", what, c->w.pkt);
    return bm_err_set(err, "%s: unexpected reply '%s'", what,
                      rsp_wire_snippet(c->w.pkt, c->w.len, snip, sizeof snip));
}

static int expect_ok(const struct rsp_conn *c, const char *what,
                     struct bm_err *err)
{
    return reply_is(c, "OK") ? 0 : reply_error(c, what, err);
}

static void tid_str(const struct rsp_conn *c, long tid, char *buf, size_t n)
{
    if (c->multiprocess)
        snprintf(buf, n, "p%x.%lx", c->pid, (unsigned long)tid);
    else
        snprintf(buf, n, "%lx", (unsigned long)tid);
}

static bool vcpu_known(const struct rsp_conn *c, int vcpu)
{
    for (int i = 0; i < c->nthreads; i++)
        if (c->tids[i] == (long)vcpu + 1)
            return true;
    return false;
}

static int check_vcpu(const struct rsp_conn *c, int vcpu, struct bm_err *err)
{
    if (!c->handshaken)
        return bm_err_set(err, "GDB stub handshake not done");
    if (vcpu < 0 || !vcpu_known(c, vcpu))
        return bm_err_set(err, "no vCPU %d (the GDB stub lists %d)", vcpu,
                          c->nthreads);
    return 0;
}

/* The 'g' thread is cached: the stop reply sets it (handle_stop), and it
 * is forgotten whenever the vCPUs run. */
static int select_vcpu(struct rsp_conn *c, int vcpu, struct bm_err *err)
{
    if (usable(c, true, err) < 0 || check_vcpu(c, vcpu, err) < 0)
        return -1;
    if (c->g_tid == vcpu + 1)
        return 0;
    char t[32];
    tid_str(c, vcpu + 1, t, sizeof t);
    if (request(c, err, "Hg%s", t) < 0)
        return -1;
    if (expect_ok(c, "selecting a vCPU (Hg)", err) < 0)
        return -1;
    c->g_tid = vcpu + 1;
    return 0;
}

/* --- handshake --------------------------------------------------------------- */

static void parse_features(struct rsp_conn *c)
{
    const char *p = c->w.pkt, *end = c->w.pkt + c->w.len;
    while (p < end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *fend = semi ? semi : end;
        size_t n = (size_t)(fend - p);
        uint64_t v;
        const char *q = p + 11;
        if (n > 11 && memcmp(p, "PacketSize=", 11) == 0 &&
            rsp_parse_hex(&q, fend, 8, &v) == 0 && q == fend)
            c->packet_size = v < 64 ? 64 : (v > RSP_WIRE_MAX ? RSP_WIRE_MAX : v);
        else if (n == 13 && memcmp(p, "multiprocess+", 13) == 0)
            c->multiprocess = true;
        else if (n == 20 && memcmp(p, "qXfer:features:read+", 20) == 0)
            c->xfer_features = true;
        p = fend + (semi != NULL);
    }
}

/* Reading target.xml proves the register layout is x86-64, and QEMU answers
 * 'p' only after a client has read it (measured: "" before, values after). */
static int check_target(struct rsp_conn *c, struct bm_err *err)
{
    static const char arch[] = "<architecture>i386:x86-64</architecture>";
    char xml[TARGET_XML_MAX + 1];
    size_t have = 0;
    for (;;) {
        if (request(c, err, "qXfer:features:read:target.xml:%zx,%x", have,
                    RSP_MEM_CHUNK) < 0)
            return -1;
        char kind = c->w.len > 0 ? c->w.pkt[0] : 0;
        if (kind != 'm' && kind != 'l')
            return reply_error(c, "reading target.xml", err);
        size_t n = c->w.len - 1;
        if (have + n > TARGET_XML_MAX)
            return bm_err_set(err, "target.xml from the GDB stub exceeds %d "
                              "bytes", TARGET_XML_MAX);
        memcpy(xml + have, c->w.pkt + 1, n);
        have += n;
        if (kind == 'l')
            break;
        if (n == 0)
            return bm_err_set(err, "GDB stub sent an empty target.xml part");
    }
    xml[have] = '\0';
    if (memmem(xml, have, arch, sizeof arch - 1) == NULL)
        return bm_err_set(err, "the GDB stub's target is not x86-64 (no %s "
                          "in target.xml)", arch);
    return 0;
}

static int read_threads(struct rsp_conn *c, struct bm_err *err)
{
    c->nthreads = 0;
    for (int round = 0; round <= RSP_MAX_VCPUS + 1; round++) {
        if (request(c, err, round == 0 ? "qfThreadInfo" : "qsThreadInfo") < 0)
            return -1;
        if (reply_is(c, "l"))
            return c->nthreads > 0 ? 0
                   : bm_err_set(err, "GDB stub lists no vCPU threads");
        if (c->w.len < 2 || c->w.pkt[0] != 'm')
            return reply_error(c, "listing threads", err);
        const char *p = c->w.pkt + 1, *end = c->w.pkt + c->w.len;
        for (;;) {
            unsigned pid;
            long tid;
            if (rsp_parse_tid(&p, end, &pid, &tid) < 0 || tid < 1 ||
                tid > RSP_MAX_VCPUS || vcpu_known(c, (int)tid - 1) ||
                c->nthreads >= RSP_MAX_VCPUS)
                return reply_error(c, "listing threads (bad or duplicate "
                                   "thread id)", err);
            if (c->nthreads == 0)
                c->pid = pid;
            c->tids[c->nthreads++] = tid;
            if (p == end)
                break;
            if (*p++ != ',')
                return reply_error(c, "listing threads", err);
        }
    }
    return bm_err_set(err, "GDB stub thread list does not end");
}

static int handle_stop(struct rsp_conn *c, struct rsp_stop *stop,
                       struct bm_err *err)
{
    struct rsp_stop s;
    if (rsp_parse_stop(c->w.pkt, c->w.len, &s, err) < 0) {
        c->w.broken = true;
        return -1;
    }
    if (c->handshaken && s.vcpu >= 0 && !vcpu_known(c, s.vcpu)) {
        c->w.broken = true;
        return bm_err_set(err, "stop reply names unknown vCPU %d", s.vcpu);
    }
    c->running = false;
    /* QEMU makes the stopping vCPU the 'g' thread before it sends the
     * stop reply (gdb_set_stop_cpu), so no Hg is needed to read it. The
     * handshake's '?' names the 'c' thread instead: unknown there. */
    c->g_tid = c->handshaken && s.vcpu >= 0 ? s.vcpu + 1 : 0;
    c->last = s;
    if (stop != NULL)
        *stop = s;
    return 0;
}

int rsp_handshake(struct rsp_conn *c, struct bm_err *err)
{
    if (usable(c, false, err) < 0)
        return -1;
    if (c->handshaken)
        return bm_err_set(err, "GDB stub handshake already done");
    if (request(c, err, "qSupported:multiprocess+;hwbreak+;"
                "xmlRegisters=i386") < 0)
        goto fail;
    parse_features(c);
    if (request(c, err, "QStartNoAckMode") < 0)
        goto fail;
    if (reply_is(c, "OK"))
        c->w.ack_mode = false;
    else if (c->w.len != 0 && reply_error(c, "QStartNoAckMode", err) < 0)
        goto fail;
    if (c->xfer_features && check_target(c, err) < 0)
        goto fail;
    /* '?' also makes QEMU drop breakpoints a dead client left behind. */
    if (request(c, err, "?") < 0 || handle_stop(c, NULL, err) < 0)
        goto fail;
    if (read_threads(c, err) < 0)
        goto fail;
    if (c->last.vcpu >= 0 && !vcpu_known(c, c->last.vcpu)) {
        bm_err_set(err, "'?' names vCPU %d, not in the thread list",
                   c->last.vcpu);
        goto fail;
    }
    if (request(c, err, "vCont?") < 0)
        goto fail;
    if (c->w.len > 5 && memcmp(c->w.pkt, "vCont", 5) == 0) {
        c->vcont_c = strstr(c->w.pkt, ";c") != NULL;
        c->vcont_s = strstr(c->w.pkt, ";s") != NULL;
    }
    c->w.have_stray = false;
    c->handshaken = true;
    return 0;
fail:
    bm_err_prefix(err, "GDB stub handshake");
    return -1;
}

/* --- registers and memory ------------------------------------------------- */

int rsp_read_regs(struct rsp_conn *c, int vcpu, struct rsp_regs *regs,
                  struct bm_err *err)
{
    if (select_vcpu(c, vcpu, err) < 0 || request(c, err, "g") < 0)
        return -1;
    if (c->w.len == 0 || reply_is_error(c))
        return reply_error(c, "reading registers", err);
    return rsp_parse_regs(c->w.pkt, c->w.len, regs, err);
}

int rsp_read_reg(struct rsp_conn *c, int vcpu, int regnum, uint64_t *val,
                 struct bm_err *err)
{
    if (rsp_reg_size(regnum) == 0)
        return bm_err_set(err, "register number %d is not an x86-64 integer "
                          "register", regnum);
    if (select_vcpu(c, vcpu, err) < 0 || request(c, err, "p%x", regnum) < 0)
        return -1;
    if (rsp_parse_reg(c->w.pkt, c->w.len, regnum, val) < 0)
        return reply_error(c, "reading a register (p)", err);
    return 0;
}

int rsp_set_phys_mode(struct rsp_conn *c, bool phys, struct bm_err *err)
{
    if (usable(c, true, err) < 0)
        return -1;
    if (!c->phys_checked) {
        if (request(c, err, "qqemu.Supported") < 0)
            return -1;
        if (strstr(c->w.pkt, "PhyMemMode") == NULL)
            return bm_err_set(err, "this GDB stub has no physical memory "
                              "mode (qqemu.Supported)");
        c->phys_checked = true;
    }
    if (request(c, err, "Qqemu.PhyMemMode:%d", phys ? 1 : 0) < 0 ||
        expect_ok(c, "setting the physical memory mode", err) < 0)
        return -1;
    c->phys = phys;
    return 0;
}

static int check_range(uint64_t addr, size_t len, struct bm_err *err)
{
    if (len > 0 && addr + (len - 1) < addr)
        return bm_err_set(err, "memory range 0x%" PRIx64 "+0x%zx wraps",
                          addr, len);
    return 0;
}

int rsp_read_mem(struct rsp_conn *c, uint64_t addr, void *buf, size_t len,
                 size_t *done, struct bm_err *err)
{
    size_t off = 0;
    int rc = usable(c, true, err) < 0 || check_range(addr, len, err) < 0
             ? -1 : 0;
    while (rc == 0 && off < len) {
        size_t n = len - off < RSP_MEM_CHUNK ? len - off : RSP_MEM_CHUNK;
        uint64_t a = addr + off;
        if (request(c, err, "m%" PRIx64 ",%zx", a, n) < 0) {
            rc = -1;
        } else if (c->w.len != 2 * n ||
                   rsp_decode_hex(c->w.pkt, c->w.len, (uint8_t *)buf + off,
                                  n) < 0) {
            char what[80];
            snprintf(what, sizeof what, "reading 0x%zx bytes at 0x%" PRIx64,
                     n, a);
            rc = reply_error(c, what, err);
        } else {
            off += n;
        }
    }
    if (done != NULL)
        *done = off;
    return rc;
}

int rsp_write_mem(struct rsp_conn *c, uint64_t addr, const void *buf,
                  size_t len, size_t *done, struct bm_err *err)
{
    static const char hex[] = "0123456789abcdef";
    char pkt[2 * RSP_MEM_CHUNK + 64];
    size_t chunk = (c->packet_size - 48) / 2, off = 0;
    if (chunk > RSP_MEM_CHUNK)
        chunk = RSP_MEM_CHUNK;
    int rc = usable(c, true, err) < 0 || check_range(addr, len, err) < 0
             ? -1 : 0;
    while (rc == 0 && off < len) {
        size_t n = len - off < chunk ? len - off : chunk;
        const uint8_t *src = (const uint8_t *)buf + off;
        int h = snprintf(pkt, sizeof pkt, "M%" PRIx64 ",%zx:", addr + off, n);
        for (size_t i = 0; i < n; i++) {
            pkt[h + 2 * i] = hex[src[i] >> 4];
            pkt[h + 2 * i + 1] = hex[src[i] & 15];
        }
        if (transact(c, pkt, (size_t)h + 2 * n, err) < 0 ||
            expect_ok(c, "writing guest memory", err) < 0)
            rc = -1;
        else
            off += n;
    }
    if (done != NULL)
        *done = off;
    return rc;
}

/* --- breakpoints ------------------------------------------------------------ */

static struct rsp_bp *bp_find(struct rsp_conn *c, uint64_t addr,
                              enum rsp_bp_kind kind)
{
    for (size_t i = 0; i < c->nbps; i++)
        if (c->bps[i].addr == addr && c->bps[i].kind == kind)
            return &c->bps[i];
    return NULL;
}

bool rsp_bp_has(const struct rsp_conn *c, uint64_t addr, enum rsp_bp_kind kind)
{
    for (size_t i = 0; i < c->nbps; i++)
        if (c->bps[i].addr == addr && c->bps[i].kind == kind)
            return true;
    return false;
}

static const char *bp_name(enum rsp_bp_kind kind)
{
    return kind == RSP_BP_HW ? "hardware" : "software";
}

int rsp_bp_insert(struct rsp_conn *c, uint64_t addr, enum rsp_bp_kind kind,
                  struct bm_err *err)
{
    if (usable(c, true, err) < 0)
        return -1;
    if (kind != RSP_BP_HW && kind != RSP_BP_SW)
        return bm_err_set(err, "unknown breakpoint kind %d", (int)kind);
    if (bp_find(c, addr, kind) != NULL)
        return 0;
    if (c->nbps >= RSP_MAX_BREAKPOINTS)
        return bm_err_set(err, "too many breakpoints (max %d)",
                          RSP_MAX_BREAKPOINTS);
    char what[80];
    snprintf(what, sizeof what, "inserting a %s breakpoint at 0x%" PRIx64,
             bp_name(kind), addr);
    /* x86 breakpoints have length 1; QEMU ignores the kind for Z1. */
    if (request(c, err, "Z%d,%" PRIx64 ",1", (int)kind, addr) < 0 ||
        expect_ok(c, what, err) < 0)
        return -1;
    c->bps[c->nbps++] = (struct rsp_bp){ addr, kind };
    return 0;
}

int rsp_bp_remove(struct rsp_conn *c, uint64_t addr, enum rsp_bp_kind kind,
                  struct bm_err *err)
{
    struct rsp_bp *bp = bp_find(c, addr, kind);
    if (bp != NULL)
        *bp = c->bps[--c->nbps];
    if (usable(c, true, err) < 0)
        return -1;
    char what[80];
    snprintf(what, sizeof what, "removing the %s breakpoint at 0x%" PRIx64,
             bp_name(kind), addr);
    if (request(c, err, "z%d,%" PRIx64 ",1", (int)kind, addr) < 0)
        return -1;
    return expect_ok(c, what, err);
}

int rsp_bp_remove_all(struct rsp_conn *c, struct bm_err *err)
{
    int rc = 0;
    while (c->nbps > 0) {
        struct rsp_bp bp = c->bps[c->nbps - 1];
        if (rsp_bp_remove(c, bp.addr, bp.kind, err) < 0)
            rc = -1;
    }
    return rc;
}

int rsp_bp_batch(struct rsp_conn *c, const struct rsp_bp_op *ops, size_t n,
                 int resume_vcpu, struct bm_err *err)
{
    if (usable(c, true, err) < 0)
        return -1;
    if (!c->handshaken)
        return bm_err_set(err, "GDB stub handshake not done");
    if (n > RSP_BATCH_MAX)
        return bm_err_set(err, "internal error: %zu breakpoint changes in one batch", n);
    if (resume_vcpu >= 0 && (check_vcpu(c, resume_vcpu, err) < 0 ||
                             (!c->vcont_c && bm_err_set(err, "this GDB stub cannot continue one "
                                                        "vCPU (vCont;c)") < 0)))
        return -1;
    size_t adds = 0;
    for (size_t i = 0; i < n; i++)
        adds += ops[i].insert && bp_find(c, ops[i].addr, ops[i].kind) == NULL;
    if (c->nbps + adds > RSP_MAX_BREAKPOINTS)
        return bm_err_set(err, "too many breakpoints (max %d)", RSP_MAX_BREAKPOINTS);
    char pkt[RSP_BATCH_MAX + 1][48];
    const char *p[RSP_BATCH_MAX + 1];
    for (size_t i = 0; i < n; i++) {
        snprintf(pkt[i], sizeof pkt[i], "%c%d,%" PRIx64 ",1", ops[i].insert ? 'Z' : 'z',
                 (int)ops[i].kind, ops[i].addr);
        p[i] = pkt[i];
    }
    size_t np = n;
    if (resume_vcpu >= 0) {
        char t[32];
        tid_str(c, resume_vcpu + 1, t, sizeof t);
        snprintf(pkt[np], sizeof pkt[np], "vCont;c:%s", t);
        p[np] = pkt[np];
        np++;
    } else if (resume_vcpu == RSP_RESUME_ALL) {
        p[np++] = c->vcont_c ? "vCont;c" : "c";
    }
    if (rsp_wire_send_many(&c->w, p, np, c->timeout_ms, err) < 0)
        return -1;
    if (np > n) {
        c->running = true;
        c->g_tid = 0;
    }
    /* Once the vCPUs run, any byte that reaches QEMU stops them (measured:
     * the acks of these replies, sent after the vCont;c, came back as a
     * T02 at once). QEMU's system-mode stub sends each reply once and
     * never waits for its ack, so with a resume none is sent. */
    bool ack = c->w.ack_mode;
    if (np > n)
        c->w.ack_mode = false;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        int r = rsp_wire_recv(&c->w, c->timeout_ms, err);
        if (r <= 0) {
            c->w.broken = true;
            rc = r < 0 ? -1 : bm_err_set(err, "no reply from the GDB stub to '%s' within "
                                         "%d ms", p[i], c->timeout_ms);
            break;
        }
        struct rsp_bp *bp = bp_find(c, ops[i].addr, ops[i].kind);
        if (!reply_is(c, "OK")) {
            /* A removal is forgotten either way (as rsp_bp_remove). */
            if (!ops[i].insert && bp != NULL)
                *bp = c->bps[--c->nbps];
            if (rc == 0 && !c->w.broken) {
                char what[80];
                snprintf(what, sizeof what, "%s the %s breakpoint at 0x%" PRIx64,
                         ops[i].insert ? "inserting" : "removing", bp_name(ops[i].kind),
                         ops[i].addr);
                rc = reply_error(c, what, err);
            }
        } else if (ops[i].insert && bp == NULL) {
            c->bps[c->nbps++] = (struct rsp_bp){ ops[i].addr, ops[i].kind };
        } else if (!ops[i].insert && bp != NULL) {
            *bp = c->bps[--c->nbps];
        }
    }
    c->w.ack_mode = ack;
    return rc;
}

/* --- execution ------------------------------------------------------------- */

int rsp_continue(struct rsp_conn *c, struct bm_err *err)
{
    if (usable(c, true, err) < 0)
        return -1;
    if (!c->handshaken)
        return bm_err_set(err, "GDB stub handshake not done");
    const char *cmd = c->vcont_c ? "vCont;c" : "c";
    if (rsp_wire_send(&c->w, cmd, strlen(cmd), c->timeout_ms, err) < 0)
        return -1;
    c->running = true;
    c->g_tid = 0;
    return 0;
}

int rsp_interrupt(struct rsp_conn *c, struct bm_err *err)
{
    if (usable(c, false, err) < 0)
        return -1;
    if (!c->running)
        return bm_err_set(err, "cannot interrupt: the vCPUs are not running");
    static const char intr = 0x03;
    return rsp_wire_send_raw(&c->w, &intr, 1, c->timeout_ms, err);
}

void rsp_set_running(struct rsp_conn *c, bool running)
{
    c->running = running;
    if (running)
        c->g_tid = 0;
}

int rsp_wait_stop(struct rsp_conn *c, struct rsp_stop *stop, int timeout_ms,
                  struct bm_err *err)
{
    if (usable(c, false, err) < 0)
        return -1;
    if (!c->running)
        return bm_err_set(err, "no stop to wait for: the vCPUs are stopped");
    int r = rsp_wire_recv(&c->w, timeout_ms, err);
    if (r <= 0)
        return r;
    return handle_stop(c, stop, err) < 0 ? -1 : 1;
}

int rsp_poll_stop(struct rsp_conn *c, struct rsp_stop *stop,
                  struct bm_err *err)
{
    return rsp_wait_stop(c, stop, 0, err);
}

int rsp_step(struct rsp_conn *c, int vcpu, struct rsp_stop *stop,
             struct bm_err *err)
{
    if (usable(c, true, err) < 0 || check_vcpu(c, vcpu, err) < 0)
        return -1;
    if (!c->vcont_s)
        return bm_err_set(err, "this GDB stub cannot step one vCPU (vCont;s)");
    char cmd[48], t[32];
    tid_str(c, vcpu + 1, t, sizeof t);
    int n = snprintf(cmd, sizeof cmd, "vCont;s:%s", t);
    if (rsp_wire_send(&c->w, cmd, (size_t)n, c->timeout_ms, err) < 0)
        return -1;
    c->running = true;
    c->g_tid = 0;
    int r = rsp_wait_stop(c, stop, c->timeout_ms, err);
    if (r == 0) {
        c->w.broken = true;
        return bm_err_set(err, "vCPU %d did not complete a single step "
                          "within %d ms (is it halted?)", vcpu, c->timeout_ms);
    }
    return r < 0 ? -1 : 0;
}

int rsp_detach(struct rsp_conn *c, struct bm_err *err)
{
    if (usable(c, true, err) < 0)
        return -1;
    /* QEMU answers E22 to a bare 'D' once multiprocess is negotiated. */
    int r = c->multiprocess ? request(c, err, "D;%x", c->pid)
                            : request(c, err, "D");
    if (r < 0 || expect_ok(c, "detaching", err) < 0)
        return -1;
    c->detached = true;
    c->running = true;
    c->nbps = 0;
    return 0;
}
