/* test_output.c - exact lines of the four encodings, field order, absent
 * fields, bounds, validation and the flushed write. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "output/output.h"
#include "example.h"

static char line[OUTPUT_LINE_MAX];

static const char *fmt_line(enum output_format fmt, const struct output_event *ev)
{
    struct bm_err e = BM_ERR_INIT;
    size_t n = 0;
    int rc = output_format_event(fmt, ev, line, sizeof line, &n, &e);
    if (rc != 0)
        fail_msg("output_format_event: %s", bm_err_msg(&e));
    assert_int_equal(n, strlen(line));
    return line;
}

/* ---- the spec's example ---------------------------------------------- */

#define FULL_DEFAULT \
    "[BSODMON] TimeStamp:1234567890.123456 PID:1234 PPID:456 TID:789 UserId:1 " \
    "ProcessName:\"evil.exe\" Method:KeBugCheck2 EventUID:0x1 VCPU:0 CR3:456789 " \
    "BugCheckCode:0x50 BugCheckName:\"PAGE_FAULT_IN_NONPAGED_AREA\" " \
    "BugCheckParameter1:0xfffff80012345678 BugCheckParameter2:0x0 " \
    "BugCheckParameter3:0xfffff80087654321 BugCheckParameter4:0x2\n"
#define FULL_CSV \
    "bsodmon 1234567890.123456,1234,456,789,1,\"evil.exe\",KeBugCheck2,0x1,0,456789," \
    "0x50,\"PAGE_FAULT_IN_NONPAGED_AREA\",0xfffff80012345678,0x0," \
    "0xfffff80087654321,0x2\n"
#define FULL_KV \
    "Plugin=bsodmon TimeStamp=1234567890.123456 PID=1234 PPID=456 TID=789 UserId=1 " \
    "ProcessName=\"evil.exe\" Method=KeBugCheck2 EventUID=0x1 VCPU=0 CR3=456789 " \
    "BugCheckCode=0x50 BugCheckName=\"PAGE_FAULT_IN_NONPAGED_AREA\" " \
    "BugCheckParameter1=0xfffff80012345678 BugCheckParameter2=0x0 " \
    "BugCheckParameter3=0xfffff80087654321 BugCheckParameter4=0x2\n"
#define FULL_JSON \
    "{\"Plugin\":\"bsodmon\",\"TimeStamp\":\"1234567890.123456\",\"PID\":1234," \
    "\"PPID\":456,\"TID\":789,\"UserId\":1,\"ProcessName\":\"evil.exe\"," \
    "\"Method\":\"KeBugCheck2\",\"EventUID\":\"0x1\",\"VCPU\":0,\"CR3\":456789," \
    "\"BugCheckCode\":\"0x50\",\"BugCheckName\":\"PAGE_FAULT_IN_NONPAGED_AREA\"," \
    "\"BugCheckParameter1\":\"0xfffff80012345678\",\"BugCheckParameter2\":\"0x0\"," \
    "\"BugCheckParameter3\":\"0xfffff80087654321\",\"BugCheckParameter4\":\"0x2\"}\n"

static void test_example_full(void **state)
{
    (void)state;
    struct output_event ev;
    struct output_field f[6];
    example_full(&ev, f);
    assert_string_equal(fmt_line(OUTPUT_FORMAT_DEFAULT, &ev), FULL_DEFAULT);
    assert_string_equal(fmt_line(OUTPUT_FORMAT_CSV, &ev), FULL_CSV);
    assert_string_equal(fmt_line(OUTPUT_FORMAT_KV, &ev), FULL_KV);
    assert_string_equal(fmt_line(OUTPUT_FORMAT_JSON, &ev), FULL_JSON);
}

/* Without standard fields kv and json are the spec's examples verbatim
 * (json compacted onto one line). */
static void test_example_bare(void **state)
{
    (void)state;
    struct output_event ev;
    struct output_field f[6];
    example_bare(&ev, f);
    assert_string_equal(fmt_line(OUTPUT_FORMAT_KV, &ev),
        "Plugin=bsodmon TimeStamp=1234567890.123456 VCPU=0 CR3=456789 "
        "BugCheckCode=0x50 BugCheckName=\"PAGE_FAULT_IN_NONPAGED_AREA\" "
        "BugCheckParameter1=0xfffff80012345678 BugCheckParameter2=0x0 "
        "BugCheckParameter3=0xfffff80087654321 BugCheckParameter4=0x2\n");
    assert_string_equal(fmt_line(OUTPUT_FORMAT_JSON, &ev),
        "{\"Plugin\":\"bsodmon\",\"TimeStamp\":\"1234567890.123456\",\"VCPU\":0,"
        "\"CR3\":456789,\"BugCheckCode\":\"0x50\","
        "\"BugCheckName\":\"PAGE_FAULT_IN_NONPAGED_AREA\","
        "\"BugCheckParameter1\":\"0xfffff80012345678\",\"BugCheckParameter2\":\"0x0\","
        "\"BugCheckParameter3\":\"0xfffff80087654321\",\"BugCheckParameter4\":\"0x2\"}\n");
    assert_string_equal(fmt_line(OUTPUT_FORMAT_DEFAULT, &ev),
        "[BSODMON] TimeStamp:1234567890.123456 VCPU:0 CR3:456789 BugCheckCode:0x50 "
        "BugCheckName:\"PAGE_FAULT_IN_NONPAGED_AREA\" "
        "BugCheckParameter1:0xfffff80012345678 BugCheckParameter2:0x0 "
        "BugCheckParameter3:0xfffff80087654321 BugCheckParameter4:0x2\n");
    assert_string_equal(fmt_line(OUTPUT_FORMAT_CSV, &ev),
        "bsodmon 1234567890.123456,0,456789,0x50,\"PAGE_FAULT_IN_NONPAGED_AREA\","
        "0xfffff80012345678,0x0,0xfffff80087654321,0x2\n");

    /* The spec's pretty-printed JSON example, as json-c sees it. */
    json_object *want = json_tokener_parse(
        "{ \"Plugin\": \"bsodmon\", \"TimeStamp\": \"1234567890.123456\", \"VCPU\": 0,"
        "  \"CR3\": 456789, \"BugCheckCode\": \"0x50\","
        "  \"BugCheckName\": \"PAGE_FAULT_IN_NONPAGED_AREA\","
        "  \"BugCheckParameter1\": \"0xfffff80012345678\", \"BugCheckParameter2\": \"0x0\","
        "  \"BugCheckParameter3\": \"0xfffff80087654321\", \"BugCheckParameter4\": \"0x2\" }");
    json_object *got = json_tokener_parse(fmt_line(OUTPUT_FORMAT_JSON, &ev));
    assert_non_null(want);
    assert_non_null(got);
    assert_string_equal(json_object_to_json_string_ext(got, JSON_C_TO_STRING_PLAIN),
                        json_object_to_json_string_ext(want, JSON_C_TO_STRING_PLAIN));
    json_object_put(want);
    json_object_put(got);
}

/* JSON keys in order, with the spec's types. */
static void test_json_order_and_types(void **state)
{
    (void)state;
    struct output_event ev;
    struct output_field f[6];
    example_full(&ev, f);
    static const struct { const char *key; json_type type; } want[] = {
        { "Plugin", json_type_string }, { "TimeStamp", json_type_string },
        { "PID", json_type_int }, { "PPID", json_type_int },
        { "TID", json_type_int }, { "UserId", json_type_int },
        { "ProcessName", json_type_string }, { "Method", json_type_string },
        { "EventUID", json_type_string }, { "VCPU", json_type_int },
        { "CR3", json_type_int }, { "BugCheckCode", json_type_string },
        { "BugCheckName", json_type_string },
        { "BugCheckParameter1", json_type_string },
        { "BugCheckParameter2", json_type_string },
        { "BugCheckParameter3", json_type_string },
        { "BugCheckParameter4", json_type_string },
    };
    json_object *o = json_tokener_parse(fmt_line(OUTPUT_FORMAT_JSON, &ev));
    assert_non_null(o);
    size_t i = 0;
    json_object_object_foreach(o, key, val) {
        assert_true(i < sizeof want / sizeof want[0]);
        assert_string_equal(key, want[i].key);
        assert_int_equal(json_object_get_type(val), want[i].type);
        i++;
    }
    assert_int_equal(i, sizeof want / sizeof want[0]);
    json_object_put(o);
}

/* Absent standard fields are left out, in every format. */
static void test_absent_fields(void **state)
{
    (void)state;
    struct output_event ev;
    struct output_field f[6];
    example_full(&ev, f);
    ev.has_ppid = false;
    ev.has_process_name = false;
    ev.method = NULL;
    ev.nfields = 1;
    assert_string_equal(fmt_line(OUTPUT_FORMAT_DEFAULT, &ev),
        "[BSODMON] TimeStamp:1234567890.123456 PID:1234 TID:789 UserId:1 "
        "EventUID:0x1 VCPU:0 CR3:456789 BugCheckCode:0x50\n");
    assert_string_equal(fmt_line(OUTPUT_FORMAT_CSV, &ev),
        "bsodmon 1234567890.123456,1234,789,1,0x1,0,456789,0x50\n");
    assert_string_equal(fmt_line(OUTPUT_FORMAT_KV, &ev),
        "Plugin=bsodmon TimeStamp=1234567890.123456 PID=1234 TID=789 UserId=1 "
        "EventUID=0x1 VCPU=0 CR3=456789 BugCheckCode=0x50\n");
    assert_string_equal(fmt_line(OUTPUT_FORMAT_JSON, &ev),
        "{\"Plugin\":\"bsodmon\",\"TimeStamp\":\"1234567890.123456\",\"PID\":1234,"
        "\"TID\":789,\"UserId\":1,\"EventUID\":\"0x1\",\"VCPU\":0,\"CR3\":456789,"
        "\"BugCheckCode\":\"0x50\"}\n");

    /* Only the other half present. */
    example_full(&ev, f);
    ev.has_pid = ev.has_tid = ev.has_user_id = ev.has_event_uid = false;
    ev.nfields = 0;
    assert_string_equal(fmt_line(OUTPUT_FORMAT_KV, &ev),
        "Plugin=bsodmon TimeStamp=1234567890.123456 PPID=456 ProcessName=\"evil.exe\" "
        "Method=KeBugCheck2 VCPU=0 CR3=456789\n");
    assert_string_equal(fmt_line(OUTPUT_FORMAT_CSV, &ev),
        "bsodmon 1234567890.123456,456,\"evil.exe\",KeBugCheck2,0,456789\n");
}

/* Number renderings at the edges. */
static void test_numbers(void **state)
{
    (void)state;
    struct output_field f[3] = {
        output_hex("H", UINT64_MAX), output_uint("U", UINT64_MAX),
        output_hex("Z", 0),
    };
    struct output_event ev = {
        .plugin = "p_1", .timestamp = { 0, 5 }, .vcpu = UINT32_MAX,
        .cr3 = 0x1aB000, .has_event_uid = true, .event_uid = 0xABCDEF,
        .has_pid = true, .pid = 0, .fields = f, .nfields = 3,
    };
    assert_string_equal(fmt_line(OUTPUT_FORMAT_KV, &ev),
        "Plugin=p_1 TimeStamp=0.000005 PID=0 EventUID=0xabcdef VCPU=4294967295 "
        "CR3=1748992 H=0xffffffffffffffff U=18446744073709551615 Z=0x0\n");
    assert_string_equal(fmt_line(OUTPUT_FORMAT_DEFAULT, &ev),
        "[P_1] TimeStamp:0.000005 PID:0 EventUID:0xabcdef VCPU:4294967295 "
        "CR3:1748992 H:0xffffffffffffffff U:18446744073709551615 Z:0x0\n");
    assert_string_equal(fmt_line(OUTPUT_FORMAT_JSON, &ev),
        "{\"Plugin\":\"p_1\",\"TimeStamp\":\"0.000005\",\"PID\":0,"
        "\"EventUID\":\"0xabcdef\",\"VCPU\":4294967295,\"CR3\":1748992,"
        "\"H\":\"0xffffffffffffffff\",\"U\":18446744073709551615,\"Z\":\"0x0\"}\n");
    ev.timestamp.tv_sec = 1700000000;
    ev.timestamp.tv_usec = 999999;
    assert_string_equal(fmt_line(OUTPUT_FORMAT_CSV, &ev),
        "p_1 1700000000.999999,0,0xabcdef,4294967295,1748992,"
        "0xffffffffffffffff,18446744073709551615,0x0\n");
}

/* Method is bare when it is a plain token, quoted and escaped otherwise. */
static void test_method_token(void **state)
{
    (void)state;
    struct output_event ev;
    struct output_field f[6];
    example_bare(&ev, f);
    ev.nfields = 0;
    ev.method = "Ke Bug\"Check\n";
    assert_string_equal(fmt_line(OUTPUT_FORMAT_KV, &ev),
        "Plugin=bsodmon TimeStamp=1234567890.123456 Method=\"Ke Bug\\\"Check\\n\" "
        "VCPU=0 CR3=456789\n");
    assert_string_equal(fmt_line(OUTPUT_FORMAT_CSV, &ev),
        "bsodmon 1234567890.123456,\"Ke Bug\"\"Check\\n\",0,456789\n");
    assert_string_equal(fmt_line(OUTPUT_FORMAT_JSON, &ev),
        "{\"Plugin\":\"bsodmon\",\"TimeStamp\":\"1234567890.123456\","
        "\"Method\":\"Ke Bug\\\"Check\\n\",\"VCPU\":0,\"CR3\":456789}\n");
    ev.method = "";
    assert_string_equal(fmt_line(OUTPUT_FORMAT_DEFAULT, &ev),
        "[BSODMON] TimeStamp:1234567890.123456 Method:\"\" VCPU:0 CR3:456789\n");
    ev.method = "?KeBugCheck2@@$x.y-z";
    assert_string_equal(fmt_line(OUTPUT_FORMAT_DEFAULT, &ev),
        "[BSODMON] TimeStamp:1234567890.123456 Method:?KeBugCheck2@@$x.y-z VCPU:0 "
        "CR3:456789\n");
}

/* The largest valid event fits OUTPUT_LINE_MAX in every format, and a buffer
 * one byte too small is refused without being overrun. */
static void test_worst_case_bound(void **state)
{
    (void)state;
    static char val[OUTPUT_FIELDS_MAX][OUTPUT_STR_MAX];
    static char names[OUTPUT_FIELDS_MAX][OUTPUT_KEY_MAX + 1];
    struct output_field f[OUTPUT_FIELDS_MAX];
    char plugin[OUTPUT_PLUGIN_MAX + 1];
    char method[OUTPUT_TOKEN_MAX + 1];
    memset(plugin, 'p', OUTPUT_PLUGIN_MAX);
    plugin[OUTPUT_PLUGIN_MAX] = '\0';
    memset(method, '\x01', OUTPUT_TOKEN_MAX);
    method[OUTPUT_TOKEN_MAX] = '\0';
    for (int i = 0; i < OUTPUT_FIELDS_MAX; i++) {
        memset(val[i], '\x01', OUTPUT_STR_MAX);
        memset(names[i], 'k', OUTPUT_KEY_MAX);
        names[i][0] = (char)('A' + i);
        names[i][OUTPUT_KEY_MAX] = '\0';
        f[i] = output_str(names[i], val[i], OUTPUT_STR_MAX);
    }
    struct output_event ev = {
        .plugin = plugin, .timestamp = { INT64_MAX, 999999 },
        .has_pid = true, .has_ppid = true, .has_tid = true, .has_user_id = true,
        .pid = UINT64_MAX, .ppid = UINT64_MAX, .tid = UINT64_MAX,
        .user_id = UINT64_MAX, .method = method, .has_event_uid = true,
        .event_uid = UINT64_MAX, .vcpu = UINT32_MAX, .cr3 = UINT64_MAX,
        .fields = f, .nfields = OUTPUT_FIELDS_MAX,
    };
    uint8_t name[OUTPUT_PROCNAME_MAX];
    memset(name, 0xff, sizeof name);
    output_set_process_name(&ev, name, sizeof name);
    /* The host mode's longest domain name, every byte escaped. */
    static char dom[OUTPUT_DOMAIN_MAX + 1], uuid[OUTPUT_TOKEN_MAX + 1];
    memset(dom, '\x01', OUTPUT_DOMAIN_MAX);
    memset(uuid, '\x01', OUTPUT_TOKEN_MAX);
    ev.domain = dom;
    ev.domain_uuid = uuid;

    for (int fmt = OUTPUT_FORMAT_DEFAULT; fmt <= OUTPUT_FORMAT_JSON; fmt++) {
        struct bm_err e = BM_ERR_INIT;
        size_t n = 0;
        assert_int_equal(output_format_event((enum output_format)fmt, &ev, line,
                                             sizeof line, &n, &e), 0);
        assert_true(n + 1 <= OUTPUT_LINE_MAX);
        assert_int_equal(line[n - 1], '\n');

        char *exact = malloc(n + 1);
        assert_non_null(exact);
        assert_int_equal(output_format_event((enum output_format)fmt, &ev, exact,
                                             n + 1, NULL, &e), 0);
        assert_memory_equal(exact, line, n + 1);
        free(exact);

        char *small = malloc(n);    /* no room for the NUL: ASan checks bounds */
        assert_non_null(small);
        assert_int_equal(output_format_event((enum output_format)fmt, &ev, small,
                                             n, &n, &e), -1);
        assert_int_equal(small[0], '\0');
        assert_int_equal(n, 0);
        assert_non_null(strstr(bm_err_msg(&e), "does not fit"));
        free(small);
    }

    /* json: this event parses too. */
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(output_format_event(OUTPUT_FORMAT_JSON, &ev, line,
                                         sizeof line, NULL, &e), 0);
    json_object *o = json_tokener_parse(line);
    assert_non_null(o);
    json_object_put(o);

    /* A zero-sized buffer is refused and never written. */
    bm_err_clear(&e);
    assert_int_equal(output_format_event(OUTPUT_FORMAT_KV, &ev, NULL, 0, NULL, &e), -1);
}

/* The host mode: Domain and DomainUUID right after Plugin, in every format;
 * a report with no vCPU (GUEST_PANICKED) has no VCPU and CR3. */
static void test_domain_fields(void **state)
{
    (void)state;
    struct output_event ev;
    struct output_field f[6];
    example_bare(&ev, f);
    ev.domain = "win10 \"lab\"";
    ev.domain_uuid = "6c75dfdf-8230-4fdb-b949-891ed24448a3";
    assert_string_equal(fmt_line(OUTPUT_FORMAT_JSON, &ev),
        "{\"Plugin\":\"bsodmon\",\"Domain\":\"win10 \\\"lab\\\"\","
        "\"DomainUUID\":\"6c75dfdf-8230-4fdb-b949-891ed24448a3\","
        "\"TimeStamp\":\"1234567890.123456\",\"VCPU\":0,"
        "\"CR3\":456789,\"BugCheckCode\":\"0x50\","
        "\"BugCheckName\":\"PAGE_FAULT_IN_NONPAGED_AREA\","
        "\"BugCheckParameter1\":\"0xfffff80012345678\",\"BugCheckParameter2\":\"0x0\","
        "\"BugCheckParameter3\":\"0xfffff80087654321\",\"BugCheckParameter4\":\"0x2\"}\n");
    static const struct {
        enum output_format fmt;
        const char *prefix;
    } want[] = {
        { OUTPUT_FORMAT_KV, "Plugin=bsodmon Domain=\"win10 \\\"lab\\\"\" "
                            "DomainUUID=6c75dfdf-8230-4fdb-b949-891ed24448a3 TimeStamp=" },
        { OUTPUT_FORMAT_DEFAULT, "[BSODMON] Domain:\"win10 \\\"lab\\\"\" "
                                 "DomainUUID:6c75dfdf-8230-4fdb-b949-891ed24448a3 TimeStamp:" },
        { OUTPUT_FORMAT_CSV, "bsodmon \"win10 \"\"lab\"\"\",6c75dfdf-8230-4fdb-b949-891ed24448a3,"
                             "1234567890.123456," },
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const char *got = fmt_line(want[i].fmt, &ev);
        if (strncmp(got, want[i].prefix, strlen(want[i].prefix)) != 0)
            fail_msg("got '%s', want it to start '%s'", got, want[i].prefix);
    }
    ev.no_vcpu = true;
    const char *j = fmt_line(OUTPUT_FORMAT_JSON, &ev);
    assert_null(strstr(j, "VCPU"));
    assert_null(strstr(j, "CR3"));
}

static void expect_invalid(const struct output_event *ev, const char *msg_part)
{
    struct bm_err e = BM_ERR_INIT;
    line[0] = 'x';
    assert_int_equal(output_format_event(OUTPUT_FORMAT_JSON, ev, line,
                                         sizeof line, NULL, &e), -1);
    assert_int_equal(line[0], '\0');
    if (strstr(bm_err_msg(&e), msg_part) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", bm_err_msg(&e), msg_part);
}

static void test_invalid_events(void **state)
{
    (void)state;
    struct output_event ev;
    struct output_field f[OUTPUT_FIELDS_MAX + 1];
    char big[OUTPUT_STR_MAX + 1] = { 0 };

    expect_invalid(NULL, "no event");

    example_full(&ev, f);
    ev.plugin = NULL;
    expect_invalid(&ev, "plugin name");
    ev.plugin = "bsod mon";
    expect_invalid(&ev, "plugin name");
    ev.plugin = "";
    expect_invalid(&ev, "plugin name");
    ev.plugin = "abcdefghijklmnopqrstuvwxyz0123456";   /* 33 */
    expect_invalid(&ev, "plugin name");

    example_full(&ev, f);
    ev.timestamp.tv_usec = 1000000;
    expect_invalid(&ev, "timestamp");
    ev.timestamp.tv_usec = -1;
    expect_invalid(&ev, "timestamp");
    ev.timestamp.tv_usec = 0;
    ev.timestamp.tv_sec = -1;
    expect_invalid(&ev, "timestamp");

    example_full(&ev, f);
    ev.process_name_len = OUTPUT_PROCNAME_MAX + 1;
    expect_invalid(&ev, "process name");

    example_full(&ev, f);
    char longm[OUTPUT_TOKEN_MAX + 2];
    memset(longm, 'M', sizeof longm - 1);
    longm[sizeof longm - 1] = '\0';
    ev.method = longm;
    expect_invalid(&ev, "method");

    example_full(&ev, f);
    ev.nfields = OUTPUT_FIELDS_MAX + 1;
    expect_invalid(&ev, "fields");
    ev.nfields = 1;
    ev.fields = NULL;
    expect_invalid(&ev, "no field array");

    example_full(&ev, f);
    f[2].name = "Bug=Check";
    expect_invalid(&ev, "field 2");
    f[2].name = NULL;
    expect_invalid(&ev, "field 2");

    example_full(&ev, f);
    f[1] = output_str("BugCheckName", big, sizeof big);
    expect_invalid(&ev, "more than");
    f[1] = output_str("BugCheckName", NULL, 3);
    expect_invalid(&ev, "no bytes");
    f[1] = output_str("BugCheckName", NULL, 0);     /* empty string: fine */
    assert_non_null(strstr(fmt_line(OUTPUT_FORMAT_KV, &ev), " BugCheckName=\"\" "));
    f[1].type = (enum output_type)42;
    expect_invalid(&ev, "unknown type");

    struct bm_err e = BM_ERR_INIT;
    example_full(&ev, f);
    assert_int_equal(output_format_event(OUTPUT_FORMAT_INVALID, &ev, line,
                                         sizeof line, NULL, &e), -1);
    assert_int_equal(output_format_event((enum output_format)7, &ev, line,
                                         sizeof line, NULL, NULL), -1);
    assert_int_equal(output_format_event(OUTPUT_FORMAT_KV, &ev, NULL, 10, NULL, NULL), -1);
}

static void test_parse_format(void **state)
{
    (void)state;
    assert_int_equal(output_parse_format("default"), OUTPUT_FORMAT_DEFAULT);
    assert_int_equal(output_parse_format("csv"), OUTPUT_FORMAT_CSV);
    assert_int_equal(output_parse_format("kv"), OUTPUT_FORMAT_KV);
    assert_int_equal(output_parse_format("json"), OUTPUT_FORMAT_JSON);
    assert_int_equal(output_parse_format("JSON"), OUTPUT_FORMAT_INVALID);
    assert_int_equal(output_parse_format("jsonl"), OUTPUT_FORMAT_INVALID);
    assert_int_equal(output_parse_format(""), OUTPUT_FORMAT_INVALID);
    assert_int_equal(output_parse_format(NULL), OUTPUT_FORMAT_INVALID);
    for (int fmt = OUTPUT_FORMAT_DEFAULT; fmt <= OUTPUT_FORMAT_JSON; fmt++)
        assert_int_equal(output_parse_format(output_format_name((enum output_format)fmt)), fmt);
    assert_string_equal(output_format_name(OUTPUT_FORMAT_INVALID), "invalid");
    assert_string_equal(output_format_name((enum output_format)9), "invalid");
}

/* The line is in the pipe as soon as output_write_event returns, although
 * the stream is fully buffered and never closed. */
static void test_write_flushes(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    FILE *out = fdopen(p[1], "w");
    assert_non_null(out);
    static char fullbuf[BUFSIZ];
    setvbuf(out, fullbuf, _IOFBF, sizeof fullbuf);
    assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);

    struct output_event ev;
    struct output_field f[6];
    example_full(&ev, f);
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(output_write_event(out, OUTPUT_FORMAT_KV, &ev, &e), 0);
    char got[4096];
    ssize_t n = read(p[0], got, sizeof got - 1);
    assert_int_equal(n, (ssize_t)strlen(FULL_KV));
    got[n] = '\0';
    assert_string_equal(got, FULL_KV);

    assert_int_equal(output_write_event(out, OUTPUT_FORMAT_JSON, &ev, &e), 0);
    n = read(p[0], got, sizeof got - 1);
    assert_int_equal(n, (ssize_t)strlen(FULL_JSON));

    /* An invalid event writes nothing. */
    ev.plugin = "no spaces";
    assert_int_equal(output_write_event(out, OUTPUT_FORMAT_KV, &ev, &e), -1);
    assert_int_equal(read(p[0], got, sizeof got), -1);
    assert_int_equal(errno, EAGAIN);

    fclose(out);
    close(p[0]);
}

/* A failed write is reported with its cause. */
static void test_write_error(void **state)
{
    (void)state;
    FILE *out = fopen("/dev/full", "w");
    if (out == NULL)
        skip();
    struct output_event ev;
    struct output_field f[6];
    example_full(&ev, f);
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(output_write_event(out, OUTPUT_FORMAT_JSON, &ev, &e), -1);
    assert_non_null(strstr(bm_err_msg(&e), "bsodmon event"));
    assert_non_null(strstr(bm_err_msg(&e), strerror(ENOSPC)));
    fclose(out);

    bm_err_clear(&e);
    assert_int_equal(output_write_event(NULL, OUTPUT_FORMAT_JSON, &ev, &e), -1);
    assert_non_null(strstr(bm_err_msg(&e), "no output stream"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example_full),
        cmocka_unit_test(test_example_bare),
        cmocka_unit_test(test_json_order_and_types),
        cmocka_unit_test(test_absent_fields),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_method_token),
        cmocka_unit_test(test_worst_case_bound),
        cmocka_unit_test(test_invalid_events),
        cmocka_unit_test(test_parse_format),
        cmocka_unit_test(test_write_flushes),
        cmocka_unit_test(test_write_error),
        cmocka_unit_test(test_domain_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
