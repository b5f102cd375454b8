/* rsp_wire.c - see rsp_wire.h. */
#include "vmi/qemu/rsp_wire.h"

#include "base/util.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

enum { S_IDLE, S_DATA, S_ESC, S_RLE, S_SUM1, S_SUM2 };
enum { EV_ACK = 1, EV_NAK, EV_PACKET };

void rsp_wire_init(struct rsp_wire *w, int fd)
{
    memset(w, 0, sizeof *w);
    w->fd = fd;
    w->ack_mode = true;
    w->state = S_IDLE;
}

const char *rsp_wire_snippet(const char *payload, size_t len, char *out,
                             size_t max)
{
    return bm_excerpt(payload, len, out, max);
}

static int fail(struct rsp_wire *w)
{
    w->broken = true;
    return -1;
}

static int write_all(struct rsp_wire *w, const void *buf, size_t len,
                     int64_t deadline, struct bm_err *err)
{
    return bm_send_all(w->fd, buf, len, deadline, "the GDB stub", err) < 0 ? fail(w) : 0;
}

/* Make at least one unread byte available. `one` reads a single byte, so
 * that nothing after an ack is taken out of the kernel buffer: a stop reply
 * that follows a continue's ack must stay visible to the caller's poll().
 * Returns 1, 0 on timeout, -1 on error. */
static int fill(struct rsp_wire *w, int64_t deadline, bool one,
                struct bm_err *err)
{
    if (w->in_pos < w->in_len)
        return 1;
    for (;;) {
        ssize_t n = recv(w->fd, w->in, one ? 1 : sizeof w->in, MSG_DONTWAIT);
        if (n > 0) {
            w->in_pos = 0;
            w->in_len = (size_t)n;
            return 1;
        }
        if (n == 0) {
            bm_err_set(err, "GDB stub closed the connection%s",
                       w->state == S_IDLE ? "" : " in the middle of a packet");
            return fail(w);
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            bm_err_sys(err, errno, "cannot read from the GDB stub");
            return fail(w);
        }
        struct pollfd pfd = { .fd = w->fd, .events = POLLIN };
        int r = poll(&pfd, 1, bm_ms_left(deadline));
        if (r < 0 && errno != EINTR) {
            bm_err_sys(err, errno, "poll on the GDB stub socket");
            return fail(w);
        }
        if (r == 0)
            return 0;
    }
}

static int hexval(uint8_t c) { return bm_hexdigit(c); }

static int append(struct rsp_wire *w, char c, struct bm_err *err)
{
    if (w->len >= RSP_WIRE_MAX) {
        bm_err_set(err, "packet from the GDB stub exceeds %d bytes",
                   RSP_WIRE_MAX);
        return fail(w);
    }
    w->pkt[w->len++] = c;
    w->last = c;
    return 0;
}

/* One byte through the state machine: 0 (need more), an EV_* event, or -1.
 * A packet whose checksum is wrong still ends as EV_PACKET, with *bad_sum
 * set, so the caller decides between NAK and giving up. */
static int feed(struct rsp_wire *w, uint8_t ch, bool *bad_sum,
                struct bm_err *err)
{
    switch (w->state) {
    case S_IDLE:
        if (ch == '$') {
            w->len = 0;
            w->sum = 0;
            w->state = S_DATA;
            return 0;
        }
        if (ch == '+')
            return EV_ACK;
        if (ch == '-')
            return EV_NAK;
        bm_err_set(err, "unexpected byte 0x%02x from the GDB stub outside a "
                   "packet; is this a QEMU gdbserver socket?", ch);
        return fail(w);
    case S_DATA:
        if (ch == '#') {
            w->state = S_SUM1;
            return 0;
        }
        if (ch == '$') {
            bm_err_set(err, "GDB stub started a packet inside a packet");
            return fail(w);
        }
        w->sum += ch;
        if (ch == '}') {
            w->state = S_ESC;
            return 0;
        }
        if (ch == '*') {
            if (w->len == 0) {
                bm_err_set(err, "GDB stub packet starts with a run-length "
                           "repeat");
                return fail(w);
            }
            w->state = S_RLE;
            return 0;
        }
        return append(w, (char)ch, err);
    case S_ESC:
        w->sum += ch;
        w->state = S_DATA;
        return append(w, (char)(ch ^ 0x20), err);
    case S_RLE:
        /* The count is a printable character minus 29; '#' and '$' are
         * excluded by the protocol because they would be ambiguous. */
        if (ch < 0x20 || ch > 0x7e || ch == '#' || ch == '$') {
            bm_err_set(err, "invalid run-length count 0x%02x from the GDB "
                       "stub", ch);
            return fail(w);
        }
        w->sum += ch;
        w->state = S_DATA;
        for (int i = 0; i < ch - 29; i++)
            if (append(w, w->last, err) < 0)
                return -1;
        return 0;
    case S_SUM1:
        if (hexval(ch) < 0)
            goto bad_digit;
        w->sum_hi = (uint8_t)hexval(ch);
        w->state = S_SUM2;
        return 0;
    case S_SUM2:
        if (hexval(ch) < 0)
            goto bad_digit;
        w->state = S_IDLE;
        w->pkt[w->len] = '\0';
        if ((uint8_t)(w->sum_hi << 4 | hexval(ch)) != w->sum)
            *bad_sum = true;
        return EV_PACKET;
    default:
        bm_err_set(err, "internal error: GDB framing state %d", w->state);
        return fail(w);
    }
bad_digit:
    bm_err_set(err, "non-hex checksum digit 0x%02x from the GDB stub", ch);
    return fail(w);
}

/* Next ack, NAK or good packet. Good packets are acked here; bad checksums
 * are NAKed here and wait for the stub's retransmission. */
static int next_event(struct rsp_wire *w, int64_t deadline, bool one,
                      struct bm_err *err)
{
    if (w->broken)
        return bm_err_set(err, "GDB stub connection is unusable after an "
                          "earlier error; reconnect");
    for (;;) {
        int r = fill(w, deadline, one && w->state == S_IDLE, err);
        if (r <= 0)
            return r;
        bool bad_sum = false;
        int ev = feed(w, w->in[w->in_pos++], &bad_sum, err);
        if (ev <= 0) {
            if (ev < 0)
                return -1;
            continue;
        }
        if (ev != EV_PACKET)
            return ev;
        const char *reply = "+";
        if (bad_sum) {
            if (!w->ack_mode) {
                bm_err_set(err, "bad checksum on a packet from the GDB stub "
                           "(no-ack mode: it cannot be sent again)");
                return fail(w);
            }
            if (++w->bad_sums > RSP_WIRE_RETRIES) {
                bm_err_set(err, "bad checksum on %d packets in a row from "
                           "the GDB stub", w->bad_sums);
                return fail(w);
            }
            reply = "-";
        } else {
            w->bad_sums = 0;
        }
        if (w->ack_mode && write_all(w, reply, 1, deadline, err) < 0)
            return -1;
        if (!bad_sum)
            return EV_PACKET;
    }
}

int rsp_wire_send_raw(struct rsp_wire *w, const void *buf, size_t len,
                      int timeout_ms, struct bm_err *err)
{
    if (w->broken)
        return bm_err_set(err, "GDB stub connection is unusable after an "
                          "earlier error; reconnect");
    return write_all(w, buf, len, bm_now_ms() + timeout_ms, err);
}

static bool is_stop_reply(const char *p, size_t len)
{
    return len > 0 && (p[0] == 'T' || p[0] == 'S');
}

/* Frame one packet into w->tx at *n; -1 when it does not fit. */
static int frame(struct rsp_wire *w, const char *payload, size_t len, size_t *n,
                 struct bm_err *err)
{
    if (len > RSP_WIRE_MAX || 2 * len + 4 > sizeof w->tx - *n)
        return bm_err_set(err, "packet of %zu bytes is too large", len);
    static const char hex[] = "0123456789abcdef";
    uint8_t sum = 0;
    size_t k = *n;
    w->tx[k++] = '$';
    for (size_t i = 0; i < len; i++) {
        char c = payload[i];
        if (c == '$' || c == '#' || c == '}' || c == '*') {
            w->tx[k++] = '}';
            sum += '}';
            c ^= 0x20;
        }
        w->tx[k++] = c;
        sum += (uint8_t)c;
    }
    w->tx[k++] = '#';
    w->tx[k++] = hex[sum >> 4];
    w->tx[k++] = hex[sum & 15];
    *n = k;
    return 0;
}

int rsp_wire_send_many(struct rsp_wire *w, const char *const *payloads, size_t n,
                       int timeout_ms, struct bm_err *err)
{
    if (w->broken)
        return bm_err_set(err, "GDB stub connection is unusable after an "
                          "earlier error; reconnect");
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        if (frame(w, payloads[i], strlen(payloads[i]), &len, err) < 0)
            return -1;
    w->tx_len = 0;      /* nothing to retransmit */
    return write_all(w, w->tx, len, bm_now_ms() + timeout_ms, err);
}

int rsp_wire_send(struct rsp_wire *w, const char *payload, size_t len,
                  int timeout_ms, struct bm_err *err)
{
    if (w->broken)
        return bm_err_set(err, "GDB stub connection is unusable after an "
                          "earlier error; reconnect");
    size_t n = 0;
    if (frame(w, payload, len, &n, err) < 0)
        return -1;
    w->tx_len = n;

    int64_t deadline = bm_now_ms() + timeout_ms;
    if (write_all(w, w->tx, w->tx_len, deadline, err) < 0)
        return -1;
    if (!w->ack_mode)
        return 0;
    for (int naks = 0;;) {
        int ev = next_event(w, deadline, true, err);
        if (ev < 0)
            return -1;
        if (ev == 0) {
            bm_err_set(err, "no acknowledgement from the GDB stub within "
                       "%d ms", timeout_ms);
            return fail(w);
        }
        if (ev == EV_ACK)
            return 0;
        if (ev == EV_NAK) {
            if (++naks > RSP_WIRE_RETRIES) {
                bm_err_set(err, "GDB stub rejected a packet %d times", naks);
                return fail(w);
            }
            if (write_all(w, w->tx, w->tx_len, deadline, err) < 0)
                return -1;
            continue;
        }
        /* QEMU reports the stop it makes when a client connects to a
         * running VM; nothing else may come before our ack. */
        char snip[48];
        if (!is_stop_reply(w->pkt, w->len) || w->len > RSP_WIRE_STRAY_MAX) {
            bm_err_set(err, "unexpected packet '%s' from the GDB stub before "
                       "its acknowledgement",
                       rsp_wire_snippet(w->pkt, w->len, snip, sizeof snip));
            return fail(w);
        }
        memcpy(w->stray, w->pkt, w->len + 1);
        w->have_stray = true;
    }
}

int rsp_wire_recv(struct rsp_wire *w, int timeout_ms, struct bm_err *err)
{
    int64_t deadline = bm_now_ms() + (timeout_ms < 0 ? 0 : timeout_ms);
    for (;;) {
        int ev = next_event(w, deadline, false, err);
        if (ev <= 0)
            return ev;
        if (ev == EV_PACKET)
            return 1;
        /* A late duplicate ack or a NAK outside a send is harmless. */
    }
}
