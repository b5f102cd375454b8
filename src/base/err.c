/* err.c - see err.h. */
#include "base/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void err_vset(struct bm_err *err, const char *fmt, va_list ap)
{
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
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
        err->set = true;
        return;
    }
    char old[BM_ERR_MSG_MAX];
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old);
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
