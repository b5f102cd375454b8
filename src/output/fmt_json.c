/* fmt_json.c - `-o json`: one compact JSON object per line, keys in event
 * order. As DRAKVUF's jsonfmt.h: integers are numbers, TimeStamp and hex
 * values are strings ("0x" + lowercase hex), strings are quoted. */
#include "output/internal.h"

#include <string.h>

void enc_json(struct obuf *ob, const char *plugin,
              const struct item *items, size_t n)
{
    ob_puts(ob, "{\"Plugin\":");
    esc_json(ob, plugin, strlen(plugin));
    for (size_t i = 0; i < n; i++) {
        const struct item *it = &items[i];
        ob_putc(ob, ',');
        esc_json(ob, it->key, strlen(it->key));
        ob_putc(ob, ':');
        switch (it->kind) {
        case ITEM_UINT:
            ob_uint(ob, it->num);
            break;
        case ITEM_HEX:
            ob_putc(ob, '"');
            ob_hex(ob, it->num);
            ob_putc(ob, '"');
            break;
        case ITEM_TIME:
            ob_putc(ob, '"');
            ob_time(ob, it->tv);
            ob_putc(ob, '"');
            break;
        case ITEM_TOKEN:
        case ITEM_STR:
            esc_json(ob, it->str, it->len);
            break;
        }
    }
    ob_puts(ob, "}\n");
}
