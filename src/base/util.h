/* util.h - small helpers every layer uses: a monotonic clock for
 * deadlines, and a printable excerpt of hostile bytes for messages. */
#ifndef BM_BASE_UTIL_H
#define BM_BASE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

/* Milliseconds on CLOCK_MONOTONIC. */
int64_t bm_now_ms(void);

/* Milliseconds left until `deadline` (bm_now_ms() based), clamped to
 * 0..1000000 so it fits poll()'s timeout. */
int bm_ms_left(int64_t deadline);

/* Up to max-1 bytes of `p` with every non-printable byte as '.', and "..."
 * when cut (if max >= 4): safe to quote guest or socket bytes in a one-line
 * message. Never writes out[max] or beyond; max 0 returns "". */
const char *bm_excerpt(const char *p, size_t len, char *out, size_t max);

/* Value of a hex digit, or -1. */
int bm_hexdigit(int c);

/* Send all of buf on a stream socket (non-blocking sends, poll for room)
 * before `deadline`; `peer` names the other end in errors. */
int bm_send_all(int fd, const void *buf, size_t len, int64_t deadline, const char *peer,
                struct bm_err *err);

/* The first number of a "Field:" line of /proc/PID/status (for Uid and
 * Gid: the real id). 0, or -1 when the process or the field is not there. */
int bm_proc_status_num(int pid, const char *field, long *out);

#endif
