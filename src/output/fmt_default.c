/* fmt_default.c - `-o default`, the human-readable layout of DRAKVUF's
 * deffmt.h: "[PLUGIN]" (name upper-cased), then Key:value pairs separated by
 * single spaces, strings in double quotes. */
#include "output/internal.h"

void enc_default(struct obuf *ob, const char *plugin,
                 const struct item *items, size_t n)
{
    ob_putc(ob, '[');
    for (const char *p = plugin; *p != '\0'; p++) {
        char c = *p;
        ob_putc(ob, (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c);
    }
    ob_putc(ob, ']');
    for (size_t i = 0; i < n; i++) {
        ob_putc(ob, ' ');
        ob_puts(ob, items[i].key);
        ob_putc(ob, ':');
        enc_text_value(ob, &items[i], QUOTE_BACKSLASH);
    }
    ob_putc(ob, '\n');
}
