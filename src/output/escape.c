/* escape.c - string escaping for the four encodings (rules in output.h).
 *
 * Every byte that could end a line, confuse a parser or not be valid UTF-8
 * becomes an ASCII escape, so a guest-chosen process name can neither split
 * an event in two nor forge fields, and the original bytes stay recoverable.
 */
#include "output/internal.h"

static const char hexup[] = "0123456789ABCDEF";
static const char hexlo[] = "0123456789abcdef";

bool esc_is_token(const char *s, size_t n)
{
    if (s == NULL || n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9') || c == '_' || c == '.' ||
                  c == '@' || c == '$' || c == '?' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

void esc_text(struct obuf *ob, const char *s, size_t n, enum quote_style q)
{
    ob_putc(ob, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"') {
            ob_puts(ob, q == QUOTE_DOUBLE ? "\"\"" : "\\\"");
        } else if (c == '\\') {
            ob_puts(ob, "\\\\");
        } else if (c == '\n') {
            ob_puts(ob, "\\n");
        } else if (c == '\r') {
            ob_puts(ob, "\\r");
        } else if (c < 0x20 || c >= 0x7f) {
            char e[4] = { '\\', 'x', hexup[c >> 4], hexup[c & 0xf] };
            ob_putn(ob, e, sizeof e);
        } else {
            ob_putc(ob, (char)c);
        }
    }
    ob_putc(ob, '"');
}

void esc_json(struct obuf *ob, const char *s, size_t n)
{
    ob_putc(ob, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"':  ob_puts(ob, "\\\""); break;
        case '\\': ob_puts(ob, "\\\\"); break;
        case '\b': ob_puts(ob, "\\b"); break;
        case '\f': ob_puts(ob, "\\f"); break;
        case '\n': ob_puts(ob, "\\n"); break;
        case '\r': ob_puts(ob, "\\r"); break;
        case '\t': ob_puts(ob, "\\t"); break;
        default:
            if (c < 0x20 || c >= 0x7f) {
                /* Latin-1: code point U+00nn for byte nn (output.h). */
                char e[6] = { '\\', 'u', '0', '0', hexlo[c >> 4], hexlo[c & 0xf] };
                ob_putn(ob, e, sizeof e);
            } else {
                ob_putc(ob, (char)c);
            }
        }
    }
    ob_putc(ob, '"');
}

void enc_text_value(struct obuf *ob, const struct item *it, enum quote_style q)
{
    switch (it->kind) {
    case ITEM_UINT:
        ob_uint(ob, it->num);
        break;
    case ITEM_HEX:
        ob_hex(ob, it->num);
        break;
    case ITEM_TIME:
        ob_time(ob, it->tv);
        break;
    case ITEM_TOKEN:
        /* Bare when a plain token, else quoted like any string. */
        if (esc_is_token(it->str, it->len))
            ob_putn(ob, it->str, it->len);
        else
            esc_text(ob, it->str, it->len, q);
        break;
    case ITEM_STR:
        esc_text(ob, it->str, it->len, q);
        break;
    }
}
