/* log.c - see log.h. */
#include "base/log.h"

#include <stdio.h>

static _Thread_local char tag[160];

void bm_log_set_tag(const char *t)
{
    snprintf(tag, sizeof tag, "%s", t != NULL ? t : "");
}

void bm_vlog(const char *fmt, va_list ap)
{
    char line[2048];
    int n = vsnprintf(line, sizeof line, fmt, ap);
    if (n < 0)
        return;
    flockfile(stderr);
    fprintf(stderr, "bsodmon: %s%s%s\n", tag, tag[0] ? ": " : "", line);
    funlockfile(stderr);
}

void bm_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bm_vlog(fmt, ap);
    va_end(ap);
}
