/* test_escape.c - hostile process names: whatever bytes the guest put in
 * EPROCESS.ImageFileName, every format yields exactly one line of printable
 * ASCII, json-c parses the JSON line, no field can be forged, and the bytes
 * can be recovered exactly. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "output/output.h"
#include "example.h"

static const struct { const char *label; const char *bytes; size_t len; } hostile[] = {
    { "quote", "a\"b", 3 },
    { "backslash", "a\\b", 3 },
    { "newline", "evil\nPID=1", 10 },
    { "carriage return", "e\r[BSODMON] x", 13 },
    { "NUL inside", "ev\0il.exe", 9 },
    { "DEL", "a\x7f" "b", 3 },
    { "high bytes", "\x80\xff\xc3\xa9\xe2\x80\xa8\xc2\x85", 9 },
    { "15 bytes, no terminator", "abcdefghijklmno", 15 },
    { "json breaker", "\",\"PID\":1,\"x\":\"", 15 },
    { "kv breaker", "x\" PID=1 y=\"", 12 },
    { "csv breaker", "a\",1,\"b", 7 },
    { "backslash quote", "\\\"", 2 },
    { "tab and escape", "\t\x1b[31m", 6 },
    { "empty", "", 0 },
    { "invalid utf-8", "\xc3\x28\xed\xa0\x80\xf8", 6 },
};
#define NHOSTILE (sizeof hostile / sizeof hostile[0])

static char line[OUTPUT_LINE_MAX];
static char ref[OUTPUT_LINE_MAX];

static void format(enum output_format fmt, const struct output_event *ev, char *buf)
{
    struct bm_err e = BM_ERR_INIT;
    if (output_format_event(fmt, ev, buf, OUTPUT_LINE_MAX, NULL, &e) != 0)
        fail_msg("output_format_event: %s", bm_err_msg(&e));
}

/* One line: printable ASCII then a single '\n' at the end. */
static void assert_one_line(const char *s)
{
    size_t n = strlen(s);
    assert_true(n > 0);
    assert_int_equal(s[n - 1], '\n');
    for (size_t i = 0; i + 1 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c > 0x7e)
            fail_msg("byte 0x%02x at %zu in \"%s\"", c, i, s);
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;                           /* lowercase is not what we emit */
}

/* Decode a quoted text string at *p (default/kv: \" ; csv: ""), advance *p
 * past the closing quote. Returns the byte count, or -1 if malformed. */
static long unquote_text(const char **p, char *out, size_t cap, bool csv)
{
    const char *s = *p;
    size_t n = 0;
    if (*s++ != '"')
        return -1;
    for (;;) {
        char c = *s++;
        if (c == '\0' || n >= cap)
            return -1;
        if (c == '"') {
            if (csv && *s == '"') {
                out[n++] = '"';
                s++;
                continue;
            }
            break;
        }
        if (c != '\\') {
            out[n++] = c;
            continue;
        }
        c = *s++;
        switch (c) {
        case '\\': out[n++] = '\\'; break;
        case 'n': out[n++] = '\n'; break;
        case 'r': out[n++] = '\r'; break;
        case '"':
            if (csv)
                return -1;               /* csv doubles quotes instead */
            out[n++] = '"';
            break;
        case 'x': {
            int hi = hexval(s[0]), lo = hi < 0 ? -1 : hexval(s[1]);
            if (lo < 0)
                return -1;
            unsigned char b = (unsigned char)(hi << 4 | lo);
            if (b >= 0x20 && b < 0x7f && b != '\\' && b != '"')
                return -1;               /* printable bytes are never escaped */
            out[n++] = (char)b;
            s += 2;
            break;
        }
        default:
            return -1;
        }
    }
    *p = s;
    return (long)n;
}

/* Check a text line: `line` equals `ref` (the same event named "X") except
 * for the quoted name, which decodes to the original bytes. */
static void check_text(const char *label, enum output_format fmt, const char *key,
                       const char *bytes, size_t len)
{
    const char *a = strstr(ref, key);
    assert_non_null(a);
    size_t prefix = (size_t)(a - ref) + strlen(key);
    if (strncmp(line, ref, prefix) != 0)
        fail_msg("%s (%s): prefix differs:\n%s%s", label,
                 output_format_name(fmt), line, ref);
    const char *p = line + prefix;
    char got[OUTPUT_PROCNAME_MAX * 4];
    long n = unquote_text(&p, got, sizeof got, fmt == OUTPUT_FORMAT_CSV);
    if (n < 0)
        fail_msg("%s (%s): malformed string in %s", label,
                 output_format_name(fmt), line);
    assert_int_equal(n, len);
    assert_memory_equal(got, bytes, len);
    /* The rest of the line is untouched: nothing was forged. */
    const char *rest_ref = ref + prefix + strlen("\"X\"");
    if (strcmp(p, rest_ref) != 0)
        fail_msg("%s (%s): suffix differs:\n%s%s", label,
                 output_format_name(fmt), line, ref);
}

/* Parse the JSON line strictly and compare ProcessName with the bytes read
 * as Latin-1, and every other member with the reference line. */
static void check_json(const char *label, const char *bytes, size_t len)
{
    struct json_tokener *tok = json_tokener_new();
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    size_t n = strlen(line) - 1;                 /* without the newline */
    json_object *o = json_tokener_parse_ex(tok, line, (int)n);
    if (o == NULL || json_tokener_get_error(tok) != json_tokener_success ||
        (size_t)json_tokener_get_parse_end(tok) != n)
        fail_msg("%s: not one JSON value: %s", label, line);
    json_tokener_free(tok);

    json_object *name;
    assert_true(json_object_object_get_ex(o, "ProcessName", &name));
    char want[OUTPUT_PROCNAME_MAX * 2];
    size_t wn = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)bytes[i];
        if (c < 0x80) {
            want[wn++] = (char)c;
        } else {
            want[wn++] = (char)(0xc0 | c >> 6);
            want[wn++] = (char)(0x80 | (c & 0x3f));
        }
    }
    assert_int_equal(json_object_get_string_len(name), wn);
    assert_memory_equal(json_object_get_string(name), want, wn);

    json_object *r = json_tokener_parse(ref);
    assert_non_null(r);
    assert_int_equal(json_object_object_length(o), json_object_object_length(r));
    json_object_object_foreach(r, key, val) {
        json_object *v;
        assert_true(json_object_object_get_ex(o, key, &v));
        if (strcmp(key, "ProcessName") != 0)
            assert_string_equal(json_object_to_json_string(v),
                                json_object_to_json_string(val));
    }
    json_object_put(r);
    json_object_put(o);
}

static void check_name(const char *label, const char *bytes, size_t len)
{
    struct output_event ev;
    struct output_field f[6];
    example_full(&ev, f);
    static const struct { enum output_format fmt; const char *key; } fmts[] = {
        { OUTPUT_FORMAT_DEFAULT, " ProcessName:" },
        { OUTPUT_FORMAT_CSV, "," },               /* first string value */
        { OUTPUT_FORMAT_KV, " ProcessName=" },
        { OUTPUT_FORMAT_JSON, NULL },
    };
    for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++) {
        output_set_process_name(&ev, "X", 1);
        format(fmts[i].fmt, &ev, ref);
        output_set_process_name(&ev, bytes, len);
        format(fmts[i].fmt, &ev, line);
        assert_one_line(line);
        if (fmts[i].fmt == OUTPUT_FORMAT_JSON) {
            check_json(label, bytes, len);
        } else if (fmts[i].fmt == OUTPUT_FORMAT_CSV) {
            /* ProcessName is the 5th comma-separated value after the time. */
            const char *a = ref;
            for (int c = 0; c < 5; c++)
                a = strchr(a, ',') + 1;
            char key[64];
            size_t k = (size_t)(a - ref);
            assert_true(k < sizeof key);
            memcpy(key, ref, k);
            key[k] = '\0';
            check_text(label, fmts[i].fmt, key, bytes, len);
        } else {
            check_text(label, fmts[i].fmt, fmts[i].key, bytes, len);
        }
    }
}

static void test_hostile_names(void **state)
{
    (void)state;
    for (size_t i = 0; i < NHOSTILE; i++) {
        assert_true(hostile[i].len <= OUTPUT_PROCNAME_MAX);
        check_name(hostile[i].label, hostile[i].bytes, hostile[i].len);
    }
}

/* Every byte value, 15 at a time, in every position. */
static void test_every_byte(void **state)
{
    (void)state;
    char name[OUTPUT_PROCNAME_MAX];
    for (unsigned start = 0; start < 256; start++) {
        for (size_t i = 0; i < sizeof name; i++)
            name[i] = (char)((start + i * 17) & 0xff);
        check_name("every byte", name, sizeof name);
    }
}

/* The exact escapes, per format. */
static void test_exact_escapes(void **state)
{
    (void)state;
    struct output_event ev;
    struct output_field f[6];
    example_bare(&ev, f);
    ev.nfields = 0;
    output_set_process_name(&ev, "q\"b\\n\nr\r\0\x7f\x80\xff\t", 13);
    struct bm_err e = BM_ERR_INIT;

    assert_int_equal(output_format_event(OUTPUT_FORMAT_KV, &ev, line, sizeof line, NULL, &e), 0);
    assert_string_equal(line, "Plugin=bsodmon TimeStamp=1234567890.123456 "
        "ProcessName=\"q\\\"b\\\\n\\nr\\r\\x00\\x7F\\x80\\xFF\\x09\" VCPU=0 CR3=456789\n");
    assert_int_equal(output_format_event(OUTPUT_FORMAT_DEFAULT, &ev, line, sizeof line, NULL, &e), 0);
    assert_string_equal(line, "[BSODMON] TimeStamp:1234567890.123456 "
        "ProcessName:\"q\\\"b\\\\n\\nr\\r\\x00\\x7F\\x80\\xFF\\x09\" VCPU:0 CR3:456789\n");
    assert_int_equal(output_format_event(OUTPUT_FORMAT_CSV, &ev, line, sizeof line, NULL, &e), 0);
    assert_string_equal(line, "bsodmon 1234567890.123456,"
        "\"q\"\"b\\\\n\\nr\\r\\x00\\x7F\\x80\\xFF\\x09\",0,456789\n");
    assert_int_equal(output_format_event(OUTPUT_FORMAT_JSON, &ev, line, sizeof line, NULL, &e), 0);
    assert_string_equal(line, "{\"Plugin\":\"bsodmon\",\"TimeStamp\":\"1234567890.123456\","
        "\"ProcessName\":\"q\\\"b\\\\n\\nr\\r\\u0000\\u007f\\u0080\\u00ff\\t\","
        "\"VCPU\":0,\"CR3\":456789}\n");

    /* \b and \f have short JSON forms; other control bytes are \u00nn. */
    output_set_process_name(&ev, "\b\f\x01\x1f", 4);
    assert_int_equal(output_format_event(OUTPUT_FORMAT_JSON, &ev, line, sizeof line, NULL, &e), 0);
    assert_non_null(strstr(line, "\"ProcessName\":\"\\b\\f\\u0001\\u001f\""));
}

/* A hostile plugin string field (not only the process name) is escaped the
 * same way. */
static void test_hostile_field(void **state)
{
    (void)state;
    struct output_event ev;
    struct output_field f[6];
    example_bare(&ev, f);
    f[1] = output_str("BugCheckName", "A\nB\"C\xe9", 6);
    ev.nfields = 2;
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(output_format_event(OUTPUT_FORMAT_KV, &ev, line, sizeof line, NULL, &e), 0);
    assert_string_equal(line, "Plugin=bsodmon TimeStamp=1234567890.123456 VCPU=0 "
        "CR3=456789 BugCheckCode=0x50 BugCheckName=\"A\\nB\\\"C\\xE9\"\n");
    assert_int_equal(output_format_event(OUTPUT_FORMAT_JSON, &ev, line, sizeof line, NULL, &e), 0);
    assert_one_line(line);
    json_object *o = json_tokener_parse(line);
    assert_non_null(o);
    json_object *v;
    assert_true(json_object_object_get_ex(o, "BugCheckName", &v));
    assert_string_equal(json_object_get_string(v), "A\nB\"C\xc3\xa9");
    json_object_put(o);
}

/* output_set_process_name keeps at most 15 bytes. */
static void test_set_process_name_cuts(void **state)
{
    (void)state;
    struct output_event ev;
    struct output_field f[6];
    example_bare(&ev, f);
    ev.nfields = 0;
    output_set_process_name(&ev, "0123456789abcdefXYZ", 19);
    assert_true(ev.has_process_name);
    assert_int_equal(ev.process_name_len, OUTPUT_PROCNAME_MAX);
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(output_format_event(OUTPUT_FORMAT_CSV, &ev, line, sizeof line, NULL, &e), 0);
    assert_string_equal(line, "bsodmon 1234567890.123456,\"0123456789abcde\",0,456789\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostile_names),
        cmocka_unit_test(test_every_byte),
        cmocka_unit_test(test_exact_escapes),
        cmocka_unit_test(test_hostile_field),
        cmocka_unit_test(test_set_process_name_cuts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
