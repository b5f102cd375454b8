/* err.h - error reporting for every layer.
 *
 * Library code never prints. A function that can fail returns a status
 * (0 on success, -1 on failure, or NULL) and takes a `struct bm_err *` as its
 * last parameter. The first message set wins, so the deepest cause survives
 * while callers may add context with bm_err_prefix(). Messages are one
 * phrase, no trailing newline: what failed, on which input, and what the user
 * can do about it. `err` may be NULL when the caller does not care.
 * Messages often quote hostile bytes, so every control character in one
 * (newline included) is stored as '?': a message is always a single line.
 */
#ifndef BM_BASE_ERR_H
#define BM_BASE_ERR_H

#include <stdbool.h>
#include <stddef.h>

#define BM_ERR_MSG_MAX 512

struct bm_err {
    bool set;
    char msg[BM_ERR_MSG_MAX];
};

#define BM_ERR_INIT { false, { 0 } }

/* Record a message unless one is already recorded. Always returns -1 so a
 * caller can write `return bm_err_set(err, "...")`. */
int bm_err_set(struct bm_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* As bm_err_set, appending ": strerror(errnum)". */
int bm_err_sys(struct bm_err *err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Put "context: " in front of the recorded message (or set it if none). */
void bm_err_prefix(struct bm_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void bm_err_clear(struct bm_err *err);

/* The recorded message, or "unknown error". Never NULL. */
const char *bm_err_msg(const struct bm_err *err);

#endif
