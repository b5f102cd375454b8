/* output.c - event validation, field order, and the write that must reach
 * the reader before anything else happens (spec/output.md "The event"). */
#include "output/output.h"
#include "output/internal.h"

#include <errno.h>
#include <string.h>

static const char *const format_names[] = {
    [OUTPUT_FORMAT_DEFAULT] = "default",
    [OUTPUT_FORMAT_CSV] = "csv",
    [OUTPUT_FORMAT_KV] = "kv",
    [OUTPUT_FORMAT_JSON] = "json",
};
#define NFORMATS (sizeof format_names / sizeof format_names[0])

enum output_format output_parse_format(const char *name)
{
    /* DRAKVUF matches prefixes and silently falls back to default on
     * anything else; a typo here should be an error, not a format change. */
    if (name == NULL)
        return OUTPUT_FORMAT_INVALID;
    for (size_t i = 0; i < NFORMATS; i++)
        if (strcmp(name, format_names[i]) == 0)
            return (enum output_format)i;
    return OUTPUT_FORMAT_INVALID;
}

const char *output_format_name(enum output_format fmt)
{
    if (fmt < 0 || (size_t)fmt >= NFORMATS)
        return "invalid";
    return format_names[fmt];
}

void output_set_process_name(struct output_event *ev, const void *bytes,
                             size_t len)
{
    if (len > OUTPUT_PROCNAME_MAX)
        len = OUTPUT_PROCNAME_MAX;
    if (len > 0)
        memcpy(ev->process_name, bytes, len);
    ev->process_name_len = len;
    ev->has_process_name = true;
}

/* [A-Za-z0-9_]{1,max}: plugin and field names are ours, and are printed bare. */
static bool is_identifier(const char *s, size_t max)
{
    if (s == NULL)
        return false;
    size_t n = strnlen(s, max + 1);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

static int validate(const struct output_event *ev, struct bm_err *err)
{
    if (ev == NULL)
        return bm_err_set(err, "output: no event given");
    if (!is_identifier(ev->plugin, OUTPUT_PLUGIN_MAX))
        return bm_err_set(err, "output: plugin name is not an identifier "
                          "([A-Za-z0-9_], 1 to %d characters)", OUTPUT_PLUGIN_MAX);
    if (ev->timestamp.tv_sec < 0 || ev->timestamp.tv_usec < 0 ||
        ev->timestamp.tv_usec >= 1000000)
        return bm_err_set(err, "output: %s event timestamp %lld.%lld is out of "
                          "range (seconds >= 0, 0 <= microseconds < 1000000)",
                          ev->plugin, (long long)ev->timestamp.tv_sec,
                          (long long)ev->timestamp.tv_usec);
    if (ev->has_process_name && ev->process_name_len > OUTPUT_PROCNAME_MAX)
        return bm_err_set(err, "output: %s event process name is %zu bytes, "
                          "more than %d", ev->plugin, ev->process_name_len,
                          OUTPUT_PROCNAME_MAX);
    if (ev->domain != NULL && strnlen(ev->domain, OUTPUT_DOMAIN_MAX + 1) > OUTPUT_DOMAIN_MAX)
        return bm_err_set(err, "output: %s event domain name is longer than %d bytes",
                          ev->plugin, OUTPUT_DOMAIN_MAX);
    if (ev->domain_uuid != NULL && strnlen(ev->domain_uuid, OUTPUT_TOKEN_MAX + 1) > OUTPUT_TOKEN_MAX)
        return bm_err_set(err, "output: %s event domain UUID is longer than %d bytes",
                          ev->plugin, OUTPUT_TOKEN_MAX);
    if (ev->method != NULL && strnlen(ev->method, OUTPUT_TOKEN_MAX + 1) > OUTPUT_TOKEN_MAX)
        return bm_err_set(err, "output: %s event method name is longer than %d "
                          "bytes", ev->plugin, OUTPUT_TOKEN_MAX);
    if (ev->nfields > OUTPUT_FIELDS_MAX)
        return bm_err_set(err, "output: %s event has %zu fields, more than %d",
                          ev->plugin, ev->nfields, OUTPUT_FIELDS_MAX);
    if (ev->nfields > 0 && ev->fields == NULL)
        return bm_err_set(err, "output: %s event has %zu fields but no field "
                          "array", ev->plugin, ev->nfields);
    for (size_t i = 0; i < ev->nfields; i++) {
        const struct output_field *f = &ev->fields[i];
        if (!is_identifier(f->name, OUTPUT_KEY_MAX))
            return bm_err_set(err, "output: %s event field %zu has a name that "
                              "is not an identifier ([A-Za-z0-9_], 1 to %d "
                              "characters)", ev->plugin, i, OUTPUT_KEY_MAX);
        switch (f->type) {
        case OUTPUT_UINT:
        case OUTPUT_HEX:
            break;
        case OUTPUT_STR:
            if (f->str_len > OUTPUT_STR_MAX)
                return bm_err_set(err, "output: %s event field %s is %zu bytes, "
                                  "more than %d", ev->plugin, f->name,
                                  f->str_len, OUTPUT_STR_MAX);
            if (f->str == NULL && f->str_len > 0)
                return bm_err_set(err, "output: %s event field %s has a length "
                                  "but no bytes", ev->plugin, f->name);
            break;
        default:
            return bm_err_set(err, "output: %s event field %s has unknown type "
                              "%d", ev->plugin, f->name, (int)f->type);
        }
    }
    return 0;
}

static void add_num(struct item *items, size_t *n, const char *key,
                    enum item_kind kind, uint64_t v)
{
    items[(*n)++] = (struct item){ .key = key, .kind = kind, .num = v };
}

static void add_str(struct item *items, size_t *n, const char *key,
                    enum item_kind kind, const char *s, size_t len)
{
    items[(*n)++] = (struct item){ .key = key, .kind = kind, .str = s, .len = len };
}

/* The one place the field order lives (spec/output.md "The event"). */
static size_t event_items(const struct output_event *ev, struct item *items)
{
    size_t n = 0;
    if (ev->domain != NULL)
        add_str(items, &n, "Domain", ITEM_STR, ev->domain, strlen(ev->domain));
    if (ev->domain_uuid != NULL)
        add_str(items, &n, "DomainUUID", ITEM_TOKEN, ev->domain_uuid, strlen(ev->domain_uuid));
    items[n++] = (struct item){ .key = "TimeStamp", .kind = ITEM_TIME,
                                .tv = &ev->timestamp };
    if (ev->has_pid)
        add_num(items, &n, "PID", ITEM_UINT, ev->pid);
    if (ev->has_ppid)
        add_num(items, &n, "PPID", ITEM_UINT, ev->ppid);
    if (ev->has_tid)
        add_num(items, &n, "TID", ITEM_UINT, ev->tid);
    if (ev->has_user_id)
        add_num(items, &n, "UserId", ITEM_UINT, ev->user_id);
    if (ev->has_process_name)
        add_str(items, &n, "ProcessName", ITEM_STR,
                (const char *)ev->process_name, ev->process_name_len);
    if (ev->method != NULL)
        add_str(items, &n, "Method", ITEM_TOKEN, ev->method, strlen(ev->method));
    if (ev->has_event_uid)
        add_num(items, &n, "EventUID", ITEM_HEX, ev->event_uid);
    if (!ev->no_vcpu) {
        add_num(items, &n, "VCPU", ITEM_UINT, ev->vcpu);
        add_num(items, &n, "CR3", ITEM_UINT, ev->cr3);
    }
    for (size_t i = 0; i < ev->nfields; i++) {
        const struct output_field *f = &ev->fields[i];
        if (f->type == OUTPUT_STR)
            add_str(items, &n, f->name, ITEM_STR, f->str, f->str_len);
        else
            add_num(items, &n, f->name,
                    f->type == OUTPUT_HEX ? ITEM_HEX : ITEM_UINT, f->num);
    }
    return n;
}

int output_format_event(enum output_format fmt, const struct output_event *ev,
                        char *buf, size_t len, size_t *out_len,
                        struct bm_err *err)
{
    if (buf != NULL && len > 0)
        buf[0] = '\0';
    if (out_len != NULL)
        *out_len = 0;
    if (fmt < 0 || (size_t)fmt >= NFORMATS)
        return bm_err_set(err, "output: unknown output format %d", (int)fmt);
    if (validate(ev, err) != 0)
        return -1;
    if (buf == NULL && len > 0)
        return bm_err_set(err, "output: no buffer given");

    struct item items[OUTPUT_ITEMS_MAX];
    size_t n = event_items(ev, items);

    struct obuf ob;
    ob_init(&ob, buf, len);
    switch (fmt) {
    case OUTPUT_FORMAT_DEFAULT: enc_default(&ob, ev->plugin, items, n); break;
    case OUTPUT_FORMAT_CSV:     enc_csv(&ob, ev->plugin, items, n); break;
    case OUTPUT_FORMAT_KV:      enc_kv(&ob, ev->plugin, items, n); break;
    case OUTPUT_FORMAT_JSON:    enc_json(&ob, ev->plugin, items, n); break;
    case OUTPUT_FORMAT_INVALID: break;       /* rejected above */
    }
    ob_finish(&ob);
    if (ob.overflow)
        return bm_err_set(err, "output: %s line of a %s event does not fit in "
                          "%zu bytes (a buffer of OUTPUT_LINE_MAX = %d always "
                          "does)", output_format_name(fmt), ev->plugin, len,
                          OUTPUT_LINE_MAX);
    if (out_len != NULL)
        *out_len = ob.len;
    return 0;
}

int output_write_event(FILE *out, enum output_format fmt,
                       const struct output_event *ev, struct bm_err *err)
{
    char line[OUTPUT_LINE_MAX];
    size_t n;
    if (output_format_event(fmt, ev, line, sizeof line, &n, err) != 0)
        return -1;
    if (out == NULL)
        return bm_err_set(err, "output: no output stream given");
    /* One line whole, whatever other threads write (the host mode). */
    flockfile(out);
    int rc = 0;
    errno = 0;
    if (fwrite(line, 1, n, out) != n) {
        int e = errno != 0 ? errno : EIO;
        clearerr(out);
        rc = bm_err_sys(err, e, "output: writing the %s event", ev->plugin);
    }
    errno = 0;
    if (rc == 0 && fflush(out) != 0) {
        int e = errno != 0 ? errno : EIO;
        clearerr(out);
        rc = bm_err_sys(err, e, "output: flushing the %s event", ev->plugin);
    }
    funlockfile(out);
    return rc;
}
