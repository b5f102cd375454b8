/* internal.h - shared by the output encoders; not part of the public API.
 *
 * output.c turns an event into an ordered list of items (key + typed value,
 * absent standard fields already dropped); each encoder only lays the items
 * out. Field order therefore lives in one place (output_items()).
 */
#ifndef BM_OUTPUT_INTERNAL_H
#define BM_OUTPUT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "output/output.h"

/* A bounded output buffer: appends past the end set `overflow` and are
 * dropped, so encoders never check sizes themselves. */
struct obuf {
    char *p;
    size_t size;     /* of the caller's buffer */
    size_t cap;      /* bytes usable for text; one more is kept for the NUL */
    size_t len;
    bool overflow;
};

void ob_init(struct obuf *ob, char *buf, size_t size);
void ob_putc(struct obuf *ob, char c);
void ob_putn(struct obuf *ob, const char *s, size_t n);
void ob_puts(struct obuf *ob, const char *s);
void ob_uint(struct obuf *ob, uint64_t v);        /* decimal */
void ob_hex(struct obuf *ob, uint64_t v);         /* 0x + lowercase */
void ob_time(struct obuf *ob, const struct timeval *tv); /* s.uuuuuu */
/* NUL-terminate; an overflowed buffer becomes the empty string. */
void ob_finish(struct obuf *ob);

enum item_kind {
    ITEM_UINT,
    ITEM_HEX,
    ITEM_TIME,
    ITEM_STR,     /* bytes, always quoted */
    ITEM_TOKEN,   /* bare when a plain token (text formats), else as STR */
};

struct item {
    const char *key;
    enum item_kind kind;
    uint64_t num;
    const struct timeval *tv;
    const char *str;
    size_t len;
};

#define OUTPUT_ITEMS_MAX (12 + OUTPUT_FIELDS_MAX)   /* Domain .. CR3 + fields */

/* How a quote character is escaped inside a quoted text string. */
enum quote_style { QUOTE_BACKSLASH, QUOTE_DOUBLE };

/* `"` + escaped bytes + `"` for default/kv (QUOTE_BACKSLASH) or csv
 * (QUOTE_DOUBLE); see output.h for the rules. */
void esc_text(struct obuf *ob, const char *s, size_t n, enum quote_style q);
/* `"` + JSON-escaped bytes + `"`, bytes >= 0x80 as \u00nn. */
void esc_json(struct obuf *ob, const char *s, size_t n);
/* True if s[0..n) is non-empty and only [A-Za-z0-9_.@$?-]. */
bool esc_is_token(const char *s, size_t n);

/* Text value of an item for default/csv/kv, with the given quote style. */
void enc_text_value(struct obuf *ob, const struct item *it, enum quote_style q);

void enc_default(struct obuf *ob, const char *plugin,
                 const struct item *items, size_t n);
void enc_csv(struct obuf *ob, const char *plugin,
             const struct item *items, size_t n);
void enc_kv(struct obuf *ob, const char *plugin,
            const struct item *items, size_t n);
void enc_json(struct obuf *ob, const char *plugin,
              const struct item *items, size_t n);

#endif
