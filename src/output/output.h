/* output.h - one event model, four encodings (`-o default|csv|kv|json`).
 *
 * A plugin fills a `struct output_event` (the standard fields, each with a
 * presence flag, then its own fields in order) and hands it to
 * output_write_event(), which encodes it as exactly one line and flushes it.
 * The encodings follow spec/output.md; where it is silent they follow
 * DRAKVUF's src/plugins/output_format/ (deffmt.h, csvfmt.h, kvfmt.h,
 * jsonfmt.h).
 *
 * Field order, in every format (spec/output.md "The event"):
 *   Plugin, TimeStamp, PID, PPID, TID, UserId, ProcessName, Method, EventUID,
 *   VCPU, CR3, then the plugin's fields in the order given.
 * A standard field whose presence flag is false is left out of the line.
 *
 * Value renderings:
 *   TimeStamp  seconds "." 6-digit microseconds (JSON: a string)
 *   integer    decimal (JSON: a number)
 *   hex        "0x" + lowercase hex, no padding (JSON: a string)
 *   string     bytes, escaped per format (see below), always quoted
 *   token      Plugin and Method: printed bare in default/csv/kv when made
 *              only of [A-Za-z0-9_.@$?-], otherwise quoted like a string
 *              (JSON: always a string)
 *
 * Layouts (example: plugin "bsodmon", PID 4, VCPU 0, CR3 4096, then plugin
 * fields A=1 (integer), H=0x50 (hex), B="x" (string)):
 *   default  [BSODMON] TimeStamp:1.000002 PID:4 VCPU:0 CR3:4096 A:1 H:0x50 B:"x"
 *   csv      bsodmon 1.000002,4,0,4096,1,0x50,"x"
 *   kv       Plugin=bsodmon TimeStamp=1.000002 PID=4 VCPU=0 CR3=4096 A=1 H=0x50 B="x"
 *   json     {"Plugin":"bsodmon","TimeStamp":"1.000002","PID":4,"VCPU":0,
 *             "CR3":4096,"A":1,"H":"0x50","B":"x"}   (on one line)
 *
 * String escaping. Every line is one line of printable ASCII whatever bytes
 * a string holds; the original bytes can always be recovered:
 *   default, kv  `"` -> \"   `\` -> \\   CR -> \r   LF -> \n
 *                other bytes < 0x20, 0x7f and bytes >= 0x80 -> \xNN
 *                (two uppercase hex digits, as DRAKVUF's kvfmt.h)
 *   csv          as default/kv, except `"` -> "" (RFC 4180 doubling), so a
 *                CSV reader yields the backslash-escaped text
 *   json         `"` -> \"   `\` -> \\   \b \f \n \r \t, other bytes < 0x20,
 *                0x7f and every byte >= 0x80 -> \u00nn. A JSON string's code
 *                points U+0000..U+00FF are thus the bytes themselves (read it
 *                as Latin-1): ImageFileName is an ANSI byte string, not UTF-8,
 *                so no byte is ever passed through as UTF-8.
 *
 * All strings in an event are bounded (OUTPUT_*_MAX below), so a line never
 * exceeds OUTPUT_LINE_MAX bytes including its newline and terminating NUL.
 */
#ifndef BM_OUTPUT_OUTPUT_H
#define BM_OUTPUT_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/time.h>

#include "base/err.h"

enum output_format {
    OUTPUT_FORMAT_INVALID = -1,
    OUTPUT_FORMAT_DEFAULT = 0,
    OUTPUT_FORMAT_CSV,
    OUTPUT_FORMAT_KV,
    OUTPUT_FORMAT_JSON,
};

/* Bounds on everything an event carries. */
#define OUTPUT_PLUGIN_MAX    32  /* plugin name, [A-Za-z0-9_]+ */
#define OUTPUT_KEY_MAX       32  /* plugin field name, [A-Za-z0-9_]+ */
#define OUTPUT_TOKEN_MAX     64  /* Method */
#define OUTPUT_PROCNAME_MAX  15  /* EPROCESS.ImageFileName is UCHAR[15] */
#define OUTPUT_STR_MAX      128  /* a plugin string field, in bytes */
#define OUTPUT_FIELDS_MAX    24  /* plugin fields per event (bsodmon: 6 + up to 13 of
                                    its analysis) */
#define OUTPUT_DOMAIN_MAX   256  /* Domain: a libvirt domain name, in bytes */

/* Longest line any valid event can produce, newline and NUL included: the
 * worst case is JSON, where a byte becomes at most 6 (\u00nn). 11 is the
 * number of standard fields (Plugin .. CR3). */
#define OUTPUT_LINE_MAX \
    (64 + 6 * OUTPUT_PLUGIN_MAX + 6 * OUTPUT_DOMAIN_MAX + 64 + \
     (11 + OUTPUT_FIELDS_MAX) * (OUTPUT_KEY_MAX + 8 + 6 * OUTPUT_STR_MAX))

enum output_type {
    OUTPUT_UINT,   /* decimal integer */
    OUTPUT_HEX,    /* 0x + lowercase hex */
    OUTPUT_STR,    /* byte string, escaped and quoted */
};

/* One plugin field. `str` need not be NUL-terminated and may hold any byte. */
struct output_field {
    const char *name;
    enum output_type type;
    uint64_t num;          /* OUTPUT_UINT, OUTPUT_HEX */
    const char *str;       /* OUTPUT_STR: str_len bytes (NULL if str_len 0) */
    size_t str_len;        /* <= OUTPUT_STR_MAX */
};

static inline struct output_field output_uint(const char *name, uint64_t v)
{
    return (struct output_field){ .name = name, .type = OUTPUT_UINT, .num = v };
}

static inline struct output_field output_hex(const char *name, uint64_t v)
{
    return (struct output_field){ .name = name, .type = OUTPUT_HEX, .num = v };
}

static inline struct output_field output_str(const char *name,
                                             const char *s, size_t len)
{
    return (struct output_field){ .name = name, .type = OUTPUT_STR,
                                  .str = s, .str_len = len };
}

struct output_event {
    const char *plugin;            /* "bsodmon" */
    /* Host mode: the libvirt domain the event is from, right after Plugin
     * (NUL-terminated; NULL: absent, as for one VM). */
    const char *domain;            /* its name, <= OUTPUT_DOMAIN_MAX bytes */
    const char *domain_uuid;       /* its UUID, a token */
    struct timeval timestamp;      /* host time of the trap; usec < 1000000 */

    bool has_pid, has_ppid, has_tid, has_user_id;
    bool has_process_name, has_event_uid;
    uint64_t pid, ppid, tid;
    uint64_t user_id;              /* session id (PEB.SessionId) */
    uint8_t process_name[OUTPUT_PROCNAME_MAX];   /* raw guest bytes */
    size_t process_name_len;       /* <= OUTPUT_PROCNAME_MAX */
    const char *method;            /* NUL-terminated; NULL: absent */
    uint64_t event_uid;

    uint32_t vcpu;                 /* present unless no_vcpu */
    uint64_t cr3;                  /* present unless no_vcpu */
    bool no_vcpu;                  /* a report that names no vCPU (GUEST_PANICKED) */

    const struct output_field *fields;
    size_t nfields;                /* <= OUTPUT_FIELDS_MAX */
};

/* "default", "csv", "kv" or "json" (exact, case-sensitive); anything else,
 * NULL included, is OUTPUT_FORMAT_INVALID. */
enum output_format output_parse_format(const char *name);

/* The name output_parse_format() accepts for `fmt`, or "invalid". */
const char *output_format_name(enum output_format fmt);

/* Set the process name from up to `len` guest bytes (longer input is cut at
 * OUTPUT_PROCNAME_MAX) and mark it present. Bytes are kept as they are, NULs
 * included: the caller decides where a name ends. */
void output_set_process_name(struct output_event *ev, const void *bytes,
                             size_t len);

/* Encode `ev` as one line ending in "\n", NUL-terminated, into buf[0..len).
 * A buffer of OUTPUT_LINE_MAX bytes always suffices for a valid event.
 * Returns 0 and stores the line length (without the NUL) in *out_len (may be
 * NULL); -1 if the event is invalid (a bound exceeded, a bad name) or `buf`
 * too small, in which case buf holds an empty string when len > 0. */
int output_format_event(enum output_format fmt, const struct output_event *ev,
                        char *buf, size_t len, size_t *out_len,
                        struct bm_err *err);

/* Encode `ev` and write it to `out` with one fwrite, then fflush, so the line
 * has reached a pipe reader before this returns. -1 on an invalid event or a
 * failed write/flush (errno-based message). */
int output_write_event(FILE *out, enum output_format fmt,
                       const struct output_event *ev, struct bm_err *err);

#endif
