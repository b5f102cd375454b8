/* rsp_wire.h - GDB remote serial protocol framing (internal to rsp.c).
 *
 * Bytes from the stub go through a state machine modelled on QEMU's own
 * gdb_read_byte(): every append is bounded, checksums are verified (a bad
 * one is answered with '-' and the stub retransmits), '}' escapes and '*'
 * run-length repeats are decoded. Acks are '+'/'-' until the stub accepts
 * QStartNoAckMode (QEMU 7.2 does not). Every wait has a deadline.
 */
#ifndef BM_VMI_QEMU_RSP_WIRE_H
#define BM_VMI_QEMU_RSP_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

/* Largest decoded payload accepted from or sent to a stub. QEMU's own limit
 * is 4096; anything near this cap is hostile or broken. */
#define RSP_WIRE_MAX 65536
/* Consecutive NAKs (either direction) before the link is declared bad. */
#define RSP_WIRE_RETRIES 3
/* An unsolicited stop reply seen while waiting for an ack is kept here. */
#define RSP_WIRE_STRAY_MAX 256

struct rsp_wire {
    int fd;
    bool ack_mode;
    bool broken;       /* framing lost or link failed: refuse further I/O */

    /* receive state machine */
    int state;
    uint8_t sum;       /* running checksum of the raw payload bytes */
    uint8_t sum_hi;    /* first checksum digit */
    char last;         /* last decoded byte, for '*' repeats */
    size_t len;        /* decoded payload length */
    int bad_sums;      /* consecutive bad checksums (NAKs sent) */
    char pkt[RSP_WIRE_MAX + 1];  /* NUL-terminated decoded payload */

    uint8_t in[4096];  /* bytes read but not yet fed to the machine */
    size_t in_pos, in_len;

    char tx[2 * RSP_WIRE_MAX + 4];  /* framed last packet, for retransmits */
    size_t tx_len;

    bool have_stray;
    char stray[RSP_WIRE_STRAY_MAX + 1];
};

void rsp_wire_init(struct rsp_wire *w, int fd);

/* Frame and send one packet, then (in ack mode) wait for its '+',
 * retransmitting on '-'. A stop reply that arrives before the ack (QEMU sends
 * one when a client connects to a running VM) is acked and kept in `stray`. */
int rsp_wire_send(struct rsp_wire *w, const char *payload, size_t len,
                  int timeout_ms, struct bm_err *err);

/* Frame several packets and send them in one write, waiting for no ack
 * (rsp_wire_recv skips the acks that come before each reply). No
 * retransmit: a NAK of one of them leaves its reply missing, which the
 * caller's wait for it turns into a timeout. */
int rsp_wire_send_many(struct rsp_wire *w, const char *const *payloads, size_t n,
                       int timeout_ms, struct bm_err *err);

/* Send raw bytes with no framing (the 0x03 interrupt). */
int rsp_wire_send_raw(struct rsp_wire *w, const void *buf, size_t len,
                      int timeout_ms, struct bm_err *err);

/* Receive one packet into w->pkt / w->len and ack it. Returns 1 when a packet
 * is complete, 0 when timeout_ms passed first (the partial packet is kept
 * for the next call; timeout_ms 0 polls), -1 on error. */
int rsp_wire_recv(struct rsp_wire *w, int timeout_ms, struct bm_err *err);

/* Copy at most `max` payload bytes to `out` as a printable NUL-terminated
 * string, for error messages. */
const char *rsp_wire_snippet(const char *payload, size_t len, char *out,
                             size_t max);

#endif
