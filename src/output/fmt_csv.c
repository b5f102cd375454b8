/* fmt_csv.c - `-o csv`, the layout of DRAKVUF's csvfmt.h: the plugin name,
 * one space, then the values only, separated by commas; strings in double
 * quotes (a quote doubled, other unsafe bytes backslash-escaped). */
#include "output/internal.h"

void enc_csv(struct obuf *ob, const char *plugin,
             const struct item *items, size_t n)
{
    ob_puts(ob, plugin);
    ob_putc(ob, ' ');
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            ob_putc(ob, ',');
        enc_text_value(ob, &items[i], QUOTE_DOUBLE);
    }
    ob_putc(ob, '\n');
}
