/* obuf.c - bounded append buffer for the encoders (see internal.h). */
#include "output/internal.h"

#include <string.h>

void ob_init(struct obuf *ob, char *buf, size_t size)
{
    ob->p = buf;
    ob->size = size;
    ob->cap = size > 0 ? size - 1 : 0;
    ob->len = 0;
    ob->overflow = size == 0;
}

void ob_putn(struct obuf *ob, const char *s, size_t n)
{
    if (ob->overflow || n > ob->cap - ob->len) {
        ob->overflow = true;
        return;
    }
    memcpy(ob->p + ob->len, s, n);
    ob->len += n;
}

void ob_putc(struct obuf *ob, char c)
{
    ob_putn(ob, &c, 1);
}

void ob_puts(struct obuf *ob, const char *s)
{
    ob_putn(ob, s, strlen(s));
}

void ob_uint(struct obuf *ob, uint64_t v)
{
    char tmp[20];                       /* 2^64-1 has 20 digits */
    size_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    ob_putn(ob, tmp + i, sizeof tmp - i);
}

void ob_hex(struct obuf *ob, uint64_t v)
{
    static const char digits[] = "0123456789abcdef";
    char tmp[18];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = digits[v & 0xf];
        v >>= 4;
    } while (v != 0);
    tmp[--i] = 'x';
    tmp[--i] = '0';
    ob_putn(ob, tmp + i, sizeof tmp - i);
}

void ob_time(struct obuf *ob, const struct timeval *tv)
{
    /* output_format_event() has checked 0 <= tv_sec and 0 <= tv_usec < 1e6. */
    ob_uint(ob, (uint64_t)tv->tv_sec);
    char frac[7];
    uint64_t us = (uint64_t)tv->tv_usec;
    frac[0] = '.';
    for (int i = 6; i >= 1; i--) {
        frac[i] = (char)('0' + us % 10);
        us /= 10;
    }
    ob_putn(ob, frac, sizeof frac);
}

void ob_finish(struct obuf *ob)
{
    if (ob->p == NULL || ob->size == 0)
        return;
    ob->p[ob->overflow ? 0 : ob->len] = '\0';
}
