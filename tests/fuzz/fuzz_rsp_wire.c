/* fuzz_rsp_wire.c - GDB remote protocol framing (rsp_wire: '$'...'#xx'
 * packets, '}' escapes, '*' run-length repeats, checksums, acks) and the
 * payload parsers (rsp_parse_*) over bytes from a fuzzed stub.
 *
 * The stub is a thread on a socketpair that sends the input and closes,
 * so every wait ends at EOF. Each decoded packet goes through every
 * payload parser, as whatever reply it could be.
 *
 * Input: flags (1: bit 0 ack mode, bit 1 send a packet first and wait for
 * its ack, bit 2 send an interrupt at the end), then the stub's bytes.
 */
#include "fuzz.h"
#include "vmi/qemu/rsp_parse.h"
#include "vmi/qemu/rsp_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_snippet(const char *p, size_t len)
{
    static const size_t maxes[] = { 1, 2, 3, 4, 5, 6, 16, 48 };
    for (size_t i = 0; i < sizeof maxes / sizeof maxes[0]; i++) {
        char out[64];
        memset(out, 'Z', sizeof out);
        const char *s = rsp_wire_snippet(p, len, out, maxes[i]);
        size_t n = strnlen(s, sizeof out);
        FUZZ_CHECK(s == out && n < maxes[i]);
        for (size_t k = 0; k < n; k++)
            FUZZ_CHECK(s[k] >= 0x20 && s[k] < 0x7f);
        FUZZ_CHECK(out[maxes[i]] == 'Z');       /* nothing written past max */
    }
}

static void parse_payload(const char *p, size_t len)
{
    struct rsp_stop st;
    struct bm_err err = BM_ERR_INIT;
    if (rsp_parse_stop(p, len, &st, &err) == 0) {
        FUZZ_CHECK(st.vcpu >= -1 && st.vcpu < RSP_MAX_VCPUS);
        FUZZ_CHECK(st.code >= 0 && st.code <= 255);
        FUZZ_CHECK(st.kind == RSP_STOP_SIGNAL || st.kind == RSP_STOP_EXITED ||
                   st.kind == RSP_STOP_KILLED);
    } else {
        FUZZ_CHECK(fuzz_err_ok(&err));
    }

    struct rsp_regs regs;
    struct bm_err e2 = BM_ERR_INIT;
    if (rsp_parse_regs(p, len, &regs, &e2) == 0) {
        FUZZ_CHECK(len >= 2 * RSP_G_BYTES);
        FUZZ_CHECK(regs.eflags <= UINT32_MAX && regs.cs <= UINT32_MAX);
    } else {
        FUZZ_CHECK(fuzz_err_ok(&e2));
    }

    for (int r = -1; r <= RSP_REG_COUNT; r++) {
        uint64_t v;
        if (rsp_parse_reg(p, len, r, &v) == 0) {
            FUZZ_CHECK(len == 2 * rsp_reg_size(r));
            FUZZ_CHECK(rsp_reg_size(r) == 8 || v <= UINT32_MAX);
        }
    }

    /* A thread list "m<tid>,<tid>,..." or a bare list. */
    const char *q = p + (len > 0 && p[0] == 'm'), *end = p + len;
    for (int i = 0; q < end && i <= (int)len; i++) {
        unsigned pid;
        long tid;
        const char *before = q;
        if (rsp_parse_tid(&q, end, &pid, &tid) < 0)
            break;
        FUZZ_CHECK(q > before && q <= end);
        FUZZ_CHECK(tid >= -1 && tid <= (long)UINT32_MAX);
        if (q == end || *q++ != ',')
            break;
    }

    uint8_t bytes[RSP_WIRE_MAX / 2];
    (void)rsp_decode_hex(p, len, bytes, len / 2);
    const char *h = p;
    uint64_t v;
    if (rsp_parse_hex(&h, end, 16, &v) == 0)
        FUZZ_CHECK(h > p && h <= end && h - p <= 16);
    check_snippet(p, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static struct rsp_wire w;           /* 200 KB: not on the stack */
    uint8_t flags = data[0];
    struct fuzz_peer peer;
    int fd = fuzz_peer_start(&peer, data + 1, size - 1);
    rsp_wire_init(&w, fd);
    w.ack_mode = flags & 1;

    if (flags & 2) {
        struct bm_err err = BM_ERR_INIT;
        if (rsp_wire_send(&w, "qSupported", 10, 4000, &err) < 0)
            FUZZ_CHECK(fuzz_err_ok(&err) && w.broken);
        if (w.have_stray) {
            FUZZ_CHECK(strnlen(w.stray, sizeof w.stray) <= RSP_WIRE_STRAY_MAX);
            FUZZ_CHECK(w.stray[0] == 'T' || w.stray[0] == 'S');
        }
    }
    for (size_t i = 0; i <= size; i++) {
        struct bm_err err = BM_ERR_INIT;
        int r = rsp_wire_recv(&w, 4000, &err);
        if (r != 1) {
            /* The stub closed: never "timed out" with EOF pending. */
            FUZZ_CHECK(r < 0 && fuzz_err_ok(&err) && w.broken);
            break;
        }
        FUZZ_CHECK(w.len <= RSP_WIRE_MAX && w.pkt[w.len] == '\0');
        parse_payload(w.pkt, w.len);
    }
    if (flags & 4) {
        struct bm_err err = BM_ERR_INIT;
        static const char intr = 0x03;
        FUZZ_CHECK(rsp_wire_send_raw(&w, &intr, 1, 100, &err) < 0);
        FUZZ_CHECK(fuzz_err_ok(&err));  /* refused: the link is broken */
    }
    close(fd);
    fuzz_peer_finish(&peer);
    return 0;
}
