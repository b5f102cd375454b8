/* fuzz_output.c - escaping of guest strings in all four output formats.
 *
 * The process name (EPROCESS.ImageFileName) and a plugin string field are
 * guest bytes. For each format the encoded event must be exactly one line
 * of printable ASCII, carry exactly the event's fields, and give back the
 * original bytes when decoded the way output.h promises (JSON through
 * json-c, read as Latin-1; default/kv/csv through their escapes).
 *
 * Input: flags (1), process-name length (1), string length (1), method
 * length (1), then the process-name bytes, the string bytes, the method
 * bytes; numbers come from whatever follows.
 */
#include <json-c/json.h>

#include "fuzz.h"
#include "output/output.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ITEMS (12 + OUTPUT_FIELDS_MAX)

struct want {
    const char *key;
    bool is_str;        /* a guest byte string (quoted, escaped) */
    const uint8_t *s;
    size_t len;
};

static size_t take(const uint8_t **p, size_t *left, size_t n)
{
    if (n > *left)
        n = *left;
    *p += n;
    *left -= n;
    return n;
}

/* Decode a quoted string at line[*i] (which is '"') with the text escapes
 * of output.h; csv doubles quotes. Returns the decoded length or -1. */
static long decode_text(const char *line, size_t n, size_t *i, bool csv,
                        uint8_t *out, size_t cap)
{
    size_t o = 0, k = *i + 1;
    for (;;) {
        if (k >= n)
            return -1;
        char c = line[k];
        if (c == '"') {
            if (csv && k + 1 < n && line[k + 1] == '"') {
                if (o >= cap)
                    return -1;
                out[o++] = '"';
                k += 2;
                continue;
            }
            *i = k + 1;
            return (long)o;
        }
        if (o >= cap)
            return -1;
        if (c != '\\') {
            out[o++] = (uint8_t)c;
            k++;
            continue;
        }
        if (k + 1 >= n)
            return -1;
        char e = line[k + 1];
        if (e == '\\' || (e == '"' && !csv)) {
            out[o++] = (uint8_t)e;
            k += 2;
        } else if (e == 'n' || e == 'r') {
            out[o++] = e == 'n' ? '\n' : '\r';
            k += 2;
        } else if (e == 'x' && k + 3 < n) {
            unsigned v = 0;
            for (int j = 2; j <= 3; j++) {
                char h = line[k + j];
                if (h >= '0' && h <= '9')
                    v = v * 16 + (unsigned)(h - '0');
                else if (h >= 'A' && h <= 'F')
                    v = v * 16 + (unsigned)(h - 'A' + 10);
                else
                    return -1;          /* uppercase hex only (output.h) */
            }
            out[o++] = (uint8_t)v;
            k += 4;
        } else {
            return -1;
        }
    }
}

/* default ("[PLUGIN] K:v K:v"), kv ("Plugin=p K=v K=v") and csv ("p v,v"):
 * walk the items in order and compare the strings. */
static void check_text(enum output_format fmt, const char *line, size_t n,
                       const struct want *w, size_t nw)
{
    size_t i = 0;
    if (fmt == OUTPUT_FORMAT_DEFAULT) {
        FUZZ_CHECK(n > 10 && memcmp(line, "[BSODMON]", 9) == 0);
        i = 9;
    } else if (fmt == OUTPUT_FORMAT_KV) {
        FUZZ_CHECK(n > 14 && memcmp(line, "Plugin=bsodmon", 14) == 0);
        i = 14;
    } else {
        FUZZ_CHECK(n > 8 && memcmp(line, "bsodmon ", 8) == 0);
        i = 8;
    }
    for (size_t k = 0; k < nw; k++) {
        if (fmt == OUTPUT_FORMAT_CSV) {
            if (k > 0) {
                FUZZ_CHECK(line[i] == ',');
                i++;
            }
        } else {
            size_t kl = strlen(w[k].key);
            FUZZ_CHECK(line[i] == ' ');
            i++;
            FUZZ_CHECK(i + kl < n && memcmp(line + i, w[k].key, kl) == 0);
            i += kl;
            FUZZ_CHECK(line[i] == (fmt == OUTPUT_FORMAT_KV ? '=' : ':'));
            i++;
        }
        if (line[i] == '"') {
            uint8_t buf[4 * OUTPUT_STR_MAX + 4];
            long got = decode_text(line, n, &i, fmt == OUTPUT_FORMAT_CSV, buf,
                                   sizeof buf);
            FUZZ_CHECK(got >= 0);
            if (w[k].s != NULL) {
                FUZZ_CHECK((size_t)got == w[k].len);
                FUZZ_CHECK(got == 0 || memcmp(buf, w[k].s, (size_t)got) == 0);
            }
        } else {
            /* A bare value: a number or a plain token, never a string. */
            FUZZ_CHECK(!w[k].is_str);
            size_t start = i;
            while (i < n && line[i] != ' ' && line[i] != ',' && line[i] != '\n')
                i++;
            FUZZ_CHECK(i > start);
            if (w[k].s != NULL)     /* a bare token is the bytes themselves */
                FUZZ_CHECK(i - start == w[k].len &&
                           memcmp(line + start, w[k].s, w[k].len) == 0);
        }
    }
    FUZZ_CHECK(i == n - 1 && line[i] == '\n');
}

/* A json-c string read as Latin-1 must be the original bytes. */
static void check_latin1(json_object *v, const uint8_t *s, size_t len)
{
    FUZZ_CHECK(json_object_is_type(v, json_type_string));
    const uint8_t *u = (const uint8_t *)json_object_get_string(v);
    size_t ulen = (size_t)json_object_get_string_len(v), k = 0;
    for (size_t j = 0; j < ulen; k++) {
        unsigned cp;
        if (u[j] < 0x80) {
            cp = u[j];
            j += 1;
        } else {
            FUZZ_CHECK(j + 1 < ulen && (u[j] & 0xe0) == 0xc0 &&
                       (u[j + 1] & 0xc0) == 0x80);
            cp = (unsigned)(u[j] & 0x1f) << 6 | (u[j + 1] & 0x3f);
            j += 2;
        }
        FUZZ_CHECK(cp <= 0xff && k < len && cp == s[k]);
    }
    FUZZ_CHECK(k == len);
}

static void check_json(const char *line, size_t n, const struct want *w,
                       size_t nw)
{
    json_tokener *tok = json_tokener_new();
    FUZZ_CHECK(tok != NULL);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *o = json_tokener_parse_ex(tok, line, (int)n - 1);
    FUZZ_CHECK(o != NULL && json_tokener_get_error(tok) == json_tokener_success);
    FUZZ_CHECK(json_tokener_get_parse_end(tok) == n - 1);
    json_tokener_free(tok);
    FUZZ_CHECK(json_object_is_type(o, json_type_object));
    FUZZ_CHECK((size_t)json_object_object_length(o) == nw + 1);
    json_object *v;
    FUZZ_CHECK(json_object_object_get_ex(o, "Plugin", &v));
    for (size_t k = 0; k < nw; k++) {
        FUZZ_CHECK(json_object_object_get_ex(o, w[k].key, &v));
        if (w[k].s != NULL)
            check_latin1(v, w[k].s, w[k].len);
    }
    json_object_put(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    uint8_t flags = data[0];
    size_t pname_len = data[1] % (OUTPUT_PROCNAME_MAX + 1);
    size_t str_len = data[2] % (OUTPUT_STR_MAX + 1);
    size_t method_len = data[3] % (OUTPUT_TOKEN_MAX + 1);
    const uint8_t *p = data + 4;
    size_t left = size - 4;

    const uint8_t *pname = p;
    pname_len = take(&p, &left, pname_len);
    const uint8_t *str = p;
    str_len = take(&p, &left, str_len);
    char method[OUTPUT_TOKEN_MAX + 1];
    const uint8_t *m = p;
    method_len = take(&p, &left, method_len);
    memcpy(method, m, method_len);
    method[method_len] = '\0';
    method_len = strlen(method);        /* the method is a C string */
    uint8_t nums[48] = { 0 };
    memcpy(nums, p, left < sizeof nums ? left : sizeof nums);

    struct output_field fields[3] = {
        output_hex("BugCheckCode", fuzz_le64(nums + 24)),
        output_str("Note", str_len ? (const char *)str : NULL, str_len),
        output_uint("Count", fuzz_le64(nums + 32)),
    };
    struct output_event ev = {
        .plugin = "bsodmon",
        .timestamp = { .tv_sec = (time_t)(fuzz_le32(nums + 40) & 0x7fffffff),
                       .tv_usec = (suseconds_t)(fuzz_le32(nums + 44) % 1000000) },
        .has_pid = flags & 1, .pid = fuzz_le64(nums),
        .has_ppid = flags & 2, .ppid = fuzz_le64(nums + 8),
        .has_tid = flags & 4, .tid = fuzz_le64(nums + 16),
        .has_user_id = flags & 8, .user_id = fuzz_le32(nums + 40),
        .method = (flags & 16) ? method : NULL,
        .has_event_uid = flags & 32, .event_uid = fuzz_le64(nums + 8),
        .vcpu = fuzz_le32(nums + 4), .cr3 = fuzz_le64(nums + 16),
        .fields = fields, .nfields = (flags & 128) ? 1 : 3,
    };
    if (flags & 64)
        output_set_process_name(&ev, pname, pname_len);

    /* What each format must show, in order (output.h). */
    struct want w[MAX_ITEMS];
    size_t nw = 0;
    w[nw++] = (struct want){ "TimeStamp", false, NULL, 0 };
    if (ev.has_pid)
        w[nw++] = (struct want){ "PID", false, NULL, 0 };
    if (ev.has_ppid)
        w[nw++] = (struct want){ "PPID", false, NULL, 0 };
    if (ev.has_tid)
        w[nw++] = (struct want){ "TID", false, NULL, 0 };
    if (ev.has_user_id)
        w[nw++] = (struct want){ "UserId", false, NULL, 0 };
    if (ev.has_process_name)
        w[nw++] = (struct want){ "ProcessName", true, pname, pname_len };
    if (ev.method != NULL)
        w[nw++] = (struct want){ "Method", false, (const uint8_t *)method,
                                 method_len };
    if (ev.has_event_uid)
        w[nw++] = (struct want){ "EventUID", false, NULL, 0 };
    w[nw++] = (struct want){ "VCPU", false, NULL, 0 };
    w[nw++] = (struct want){ "CR3", false, NULL, 0 };
    w[nw++] = (struct want){ "BugCheckCode", false, NULL, 0 };
    if (ev.nfields == 3) {
        w[nw++] = (struct want){ "Note", true, str, str_len };
        w[nw++] = (struct want){ "Count", false, NULL, 0 };
    }

    static const enum output_format fmts[] = {
        OUTPUT_FORMAT_DEFAULT, OUTPUT_FORMAT_CSV, OUTPUT_FORMAT_KV,
        OUTPUT_FORMAT_JSON,
    };
    for (size_t f = 0; f < sizeof fmts / sizeof fmts[0]; f++) {
        static char line[OUTPUT_LINE_MAX];
        size_t n = 0;
        struct bm_err err = BM_ERR_INIT;
        int rc = output_format_event(fmts[f], &ev, line, sizeof line, &n, &err);
        FUZZ_CHECK(rc == 0);
        FUZZ_CHECK(n > 0 && n < sizeof line && strlen(line) == n);
        /* Exactly one line of printable ASCII. */
        FUZZ_CHECK(line[n - 1] == '\n');
        for (size_t i = 0; i + 1 < n; i++)
            FUZZ_CHECK(line[i] >= 0x20 && line[i] <= 0x7e);
        if (fmts[f] == OUTPUT_FORMAT_JSON) {
            check_json(line, n, w, nw);
        } else {
            /* A method that is not a plain token is quoted like a string. */
            for (size_t k = 0; k < nw; k++)
                if (strcmp(w[k].key, "Method") == 0 &&
                    strspn(method, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP"
                           "QRSTUVWXYZ0123456789_.@$?-") != method_len)
                    w[k].is_str = true;
            check_text(fmts[f], line, n, w, nw);
        }
        /* A buffer one byte short of the line fails cleanly and leaves "". */
        char small[OUTPUT_LINE_MAX];
        struct bm_err err2 = BM_ERR_INIT;
        FUZZ_CHECK(output_format_event(fmts[f], &ev, small, n, NULL, &err2) < 0);
        FUZZ_CHECK(small[0] == '\0' && fuzz_err_ok(&err2));
    }
    return 0;
}
