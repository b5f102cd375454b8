/* rsp_parse.h - parsers of GDB stub payloads (internal to the RSP client;
 * rsp_parse_stop is public in rsp.h). Each takes explicit bounds and never
 * reads past them. */
#ifndef BM_VMI_QEMU_RSP_PARSE_H
#define BM_VMI_QEMU_RSP_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "vmi/qemu/rsp.h"

/* Size of the 'g' reply of QEMU 7.2 for x86-64 (integer registers, x87,
 * SSE, mxcsr). Larger replies are accepted: the offsets we use come first. */
#define RSP_G_BYTES 608

/* 1..maxdigits hex digits at *p (< end); advances *p. */
int rsp_parse_hex(const char **p, const char *end, unsigned maxdigits,
                  uint64_t *out);
/* n bytes from the first 2n hex characters. */
int rsp_decode_hex(const char *hex, size_t hexlen, uint8_t *out, size_t n);
/* "p<pid>.<tid>", "<tid>" or "-1" (tid -1); *pid 0 in the plain form. */
int rsp_parse_tid(const char **p, const char *end, unsigned *pid, long *tid);

size_t rsp_reg_size(int regnum);
size_t rsp_reg_offset(int regnum);
int rsp_parse_regs(const char *hex, size_t hexlen, struct rsp_regs *regs,
                   struct bm_err *err);
/* A 'p' reply: exactly the register's size in hex. */
int rsp_parse_reg(const char *hex, size_t hexlen, int regnum, uint64_t *val);

#endif
