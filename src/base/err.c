/* err.c - see err.h. */
#include "base/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Messages quote hostile bytes (guest names, socket and profile text), so
 * every control character becomes '?': a message stays one line and cannot
 * forge another in a log (found by tests/fuzz/fuzz_winkernel). */
static void one_line(char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
}

static void err_vset(struct bm_err *err, const char *fmt, va_list ap)
{
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    one_line(err->msg);
    err->set = true;
}

int bm_err_set(struct bm_err *err, const char *fmt, ...)
{
    if (err == NULL || err->set)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    err_vset(err, fmt, ap);
    va_end(ap);
    return -1;
}

int bm_err_sys(struct bm_err *err, int errnum, const char *fmt, ...)
{
    if (err == NULL || err->set)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    err_vset(err, fmt, ap);
    va_end(ap);
    size_t len = strlen(err->msg);
    snprintf(err->msg + len, sizeof err->msg - len, ": %s", strerror(errnum));
    one_line(err->msg);
    return -1;
}

void bm_err_prefix(struct bm_err *err, const char *fmt, ...)
{
    if (err == NULL)
        return;
    char prefix[BM_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    if (!err->set) {
        snprintf(err->msg, sizeof err->msg, "%s", prefix);
        one_line(err->msg);
        err->set = true;
        return;
    }
    char old[BM_ERR_MSG_MAX];
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old);
    one_line(err->msg);
}

void bm_err_clear(struct bm_err *err)
{
    if (err != NULL) {
        err->set = false;
        err->msg[0] = '\0';
    }
}

const char *bm_err_msg(const struct bm_err *err)
{
    return (err != NULL && err->set) ? err->msg : "unknown error";
}
