/* fmt_kv.c - `-o kv`: Key=value pairs separated by single spaces, starting
 * with Plugin=<name>, as the key-value example of spec/bsodmon-plugin.md
 * (DRAKVUF's kvfmt.h leads with the bare name and separates with commas;
 * the spec wins). */
#include "output/internal.h"

void enc_kv(struct obuf *ob, const char *plugin,
            const struct item *items, size_t n)
{
    ob_puts(ob, "Plugin=");
    ob_puts(ob, plugin);                /* an identifier, never quoted */
    for (size_t i = 0; i < n; i++) {
        ob_putc(ob, ' ');
        ob_puts(ob, items[i].key);
        ob_putc(ob, '=');
        enc_text_value(ob, &items[i], QUOTE_BACKSLASH);
    }
    ob_putc(ob, '\n');
}
