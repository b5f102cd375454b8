/* rsp_parse.c - parsers for what a GDB stub says: hex fields, thread ids,
 * stop replies, the 'g' register block. Pure functions over a bounded
 * buffer, so they can be fuzzed on their own. */
#include "vmi/qemu/rsp_parse.h"

#include <string.h>

#include "base/util.h"
#include "vmi/qemu/rsp_wire.h"  /* rsp_wire_snippet */

static int hexdigit(char c) { return bm_hexdigit((unsigned char)c); }

int rsp_parse_hex(const char **p, const char *end, unsigned maxdigits,
                  uint64_t *out)
{
    uint64_t v = 0;
    unsigned n = 0;
    while (*p < end && hexdigit(**p) >= 0) {
        if (++n > maxdigits)
            return -1;
        v = v << 4 | (uint64_t)hexdigit(**p);
        (*p)++;
    }
    if (n == 0)
        return -1;
    *out = v;
    return 0;
}

int rsp_decode_hex(const char *hex, size_t hexlen, uint8_t *out, size_t n)
{
    if (hexlen < 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int hi = hexdigit(hex[2 * i]), lo = hexdigit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

int rsp_parse_tid(const char **p, const char *end, unsigned *pid, long *tid)
{
    uint64_t v;
    *pid = 0;
    if (*p < end && **p == 'p') {
        (*p)++;
        if (rsp_parse_hex(p, end, 8, &v) < 0 || *p >= end || **p != '.')
            return -1;
        *pid = (unsigned)v;
        (*p)++;
    }
    if (end - *p >= 2 && (*p)[0] == '-' && (*p)[1] == '1') {
        *p += 2;
        *tid = -1;
        return 0;
    }
    if (rsp_parse_hex(p, end, 8, &v) < 0)
        return -1;
    *tid = (long)v;
    return 0;
}

/* QEMU 7.2 i386-64bit.xml: rax..r15, rip (8 bytes each), eflags and the
 * six selectors (4), fs_base, gs_base, k_gs_base, cr0, cr2, cr3, cr4, cr8,
 * efer (8). Measured offsets: fs_base 164, cr3 204, efer 228. */
size_t rsp_reg_size(int regnum)
{
    if (regnum < 0 || regnum >= RSP_REG_COUNT)
        return 0;
    if (regnum == RSP_REG_EFLAGS ||
        (regnum >= RSP_REG_CS && regnum <= RSP_REG_GS))
        return 4;
    return 8;
}

size_t rsp_reg_offset(int regnum)
{
    size_t off = 0;
    for (int i = 0; i < regnum && i < RSP_REG_COUNT; i++)
        off += rsp_reg_size(i);
    return off;
}

static uint64_t le(const uint8_t *b, size_t n)
{
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;)
        v = v << 8 | b[i];
    return v;
}

int rsp_parse_regs(const char *hex, size_t hexlen, struct rsp_regs *regs,
                   struct bm_err *err)
{
    uint8_t raw[RSP_G_BYTES];
    char snip[48];
    if (hexlen % 2 != 0 || hexlen < 2 * RSP_G_BYTES ||
        rsp_decode_hex(hex, hexlen, raw, RSP_G_BYTES) < 0)
        return bm_err_set(err, "'g' reply of %zu characters is not the "
                          "%d-byte x86-64 register block of QEMU: '%s'",
                          hexlen, RSP_G_BYTES,
                          rsp_wire_snippet(hex, hexlen, snip, sizeof snip));
    for (int i = 0; i < RSP_REG_COUNT; i++)
        regs->r[i] = le(raw + rsp_reg_offset(i), rsp_reg_size(i));
    return 0;
}

int rsp_parse_reg(const char *hex, size_t hexlen, int regnum, uint64_t *val)
{
    uint8_t raw[8];
    size_t n = rsp_reg_size(regnum);
    if (n == 0 || hexlen != 2 * n || rsp_decode_hex(hex, hexlen, raw, n) < 0)
        return -1;
    *val = le(raw, n);
    return 0;
}

static int stop_error(const char *payload, size_t len, const char *why,
                      struct bm_err *err)
{
    char snip[64];
    return bm_err_set(err, "bad stop reply '%s' from the GDB stub: %s",
                      rsp_wire_snippet(payload, len, snip, sizeof snip), why);
}

/* "key:value;" pairs after "Txx". Unknown keys (register numbers, core,
 * swbreak, hwbreak) are skipped. */
static int parse_t_fields(const char *p, const char *end, struct rsp_stop *s,
                          const char *payload, size_t len, struct bm_err *err)
{
    while (p < end) {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        if (colon == NULL)
            return stop_error(payload, len, "field without ':'", err);
        const char *semi = memchr(colon, ';', (size_t)(end - colon));
        const char *vend = semi ? semi : end;
        size_t klen = (size_t)(colon - p);
        const char *v = colon + 1;
        if (klen == 6 && memcmp(p, "thread", 6) == 0) {
            unsigned pid;
            long tid;
            if (rsp_parse_tid(&v, vend, &pid, &tid) < 0 || v != vend ||
                tid < 1 || tid > RSP_MAX_VCPUS)
                return stop_error(payload, len, "bad thread id", err);
            s->vcpu = (int)(tid - 1);
        } else if ((klen == 5 && memcmp(p, "watch", 5) == 0) ||
                   (klen == 6 && memcmp(p, "rwatch", 6) == 0) ||
                   (klen == 6 && memcmp(p, "awatch", 6) == 0)) {
            if (rsp_parse_hex(&v, vend, 16, &s->watch_addr) < 0 || v != vend)
                return stop_error(payload, len, "bad watch address", err);
            s->watch = true;
        }
        p = semi ? semi + 1 : end;
    }
    return 0;
}

int rsp_parse_stop(const char *payload, size_t len, struct rsp_stop *stop,
                   struct bm_err *err)
{
    struct rsp_stop s = { .vcpu = -1 };
    const char *p = payload + 1, *end = payload + len;
    uint64_t code;
    if (len < 3 || rsp_parse_hex(&p, payload + 3, 2, &code) < 0 ||
        p != payload + 3)
        return stop_error(payload, len, "no signal or status number", err);
    s.code = (int)code;
    switch (payload[0]) {
    case 'S':
        if (p != end)
            return stop_error(payload, len, "trailing bytes", err);
        break;
    case 'T':
        if (parse_t_fields(p, end, &s, payload, len, err) < 0)
            return -1;
        break;
    case 'W':
    case 'X':
        /* Optional ";process:pid" in multiprocess mode; the VM is gone
         * either way. */
        if (p != end && *p != ';')
            return stop_error(payload, len, "trailing bytes", err);
        s.kind = payload[0] == 'W' ? RSP_STOP_EXITED : RSP_STOP_KILLED;
        break;
    default:
        return stop_error(payload, len, "not a T, S, W or X packet", err);
    }
    *stop = s;
    return 0;
}
