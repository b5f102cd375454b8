/* test_libvirt.c - the libvirt channel's reply handling against replies
 * recorded from libvirt 9.0's QEMU pass-through (record-libvirt ->
 * tests/unit/data/libvirt/replies.txt), and against hostile replies.
 *
 * A replay channel answers each command with the recorded reply string, run
 * through lv_parse_reply exactly as the libvirt channel does after
 * virDomainQemuMonitorCommand returns; the typed QMP helpers run on top. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replay.h"
#include "vmi/qemu/libvirt.h"
#include "vmi/qemu/lvhost.h"
#include "vmi/qemu/qmp.h"

#define MAX_REPLIES 32

struct lv_replay {
    struct qemu_chan chan;
    size_t n;
    json_object *req[MAX_REPLIES];
    char *reply[MAX_REPLIES];
    size_t asked;
};

static struct lv_replay rp;
static struct { const char *fail; } rep = { "none (libvirt replies)" }; /* for OK() in replay.h */

static int replay_exec(struct qemu_chan *ch, const char *cmd, json_object *args, json_object **ret,
                       struct bm_err *err)
{
    struct lv_replay *r = (struct lv_replay *)ch;
    json_object *req = json_object_new_object();
    json_object_object_add(req, "execute", json_object_new_string(cmd));
    if (args != NULL)
        json_object_object_add(req, "arguments", json_object_get(args));
    int rc = bm_err_set(err, "no recorded reply to '%s'", json_object_to_json_string(req));
    for (size_t i = 0; i < r->n; i++)
        if (json_object_equal(req, r->req[i])) {
            bm_err_clear(err);
            r->asked++;
            rc = lv_parse_reply(r->reply[i], strlen(r->reply[i]), cmd, ret, err);
            break;
        }
    json_object_put(req);
    return rc;
}

static void replay_close(struct qemu_chan *ch) { (void)ch; }

static const struct qemu_chan_ops replay_ops = { replay_exec, replay_close };

static int load(void **state)
{
    (void)state;
    const char *dir = getenv("TESTDATA_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/libvirt/replies.txt", dir ? dir : "tests/unit/data");
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    memset(&rp, 0, sizeof rp);
    rp.chan.ops = &replay_ops;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0) {
        if (len > 0 && line[len - 1] == '\n')
            line[--len] = '\0';
        if (strncmp(line, "> ", 2) == 0 && rp.n < MAX_REPLIES)
            rp.req[rp.n] = json_tokener_parse(line + 2);
        else if (strncmp(line, "< ", 2) == 0 && rp.n < MAX_REPLIES && rp.req[rp.n] != NULL)
            rp.reply[rp.n++] = strdup(line + 2);
    }
    free(line);
    fclose(f);
    return rp.n >= 10 ? 0 : -1;
}

static int unload(void **state)
{
    (void)state;
    for (size_t i = 0; i < rp.n; i++) {
        json_object_put(rp.req[i]);
        free(rp.reply[i]);
    }
    return 0;
}

static void test_recorded_queries(void **state)
{
    (void)state;
    struct qemu_chan *c = &rp.chan;
    struct qmp_status st;
    OK(qmp_query_status(c, &st, E));
    assert_true(st.running);
    assert_string_equal(st.status, "running");

    struct qmp_cpu cpus[8];
    size_t n = 0;
    OK(qmp_query_cpus(c, cpus, 8, &n, E));
    assert_int_equal(n, 2);
    assert_int_equal(cpus[0].index, 0);
    assert_int_equal(cpus[1].index, 1);
    assert_true(cpus[0].thread_id > 0 && cpus[1].thread_id > cpus[0].thread_id);

    struct qmp_memdev devs[4];
    OK(qmp_query_memdevs(c, devs, 4, &n, E));
    assert_int_equal(n, 1);
    assert_string_equal(devs[0].id, "pc.ram");
    assert_string_equal(devs[0].type, "memory-backend-ram");
    assert_int_equal(devs[0].size, 256u << 20);
}

static void test_recorded_hmp(void **state)
{
    (void)state;
    struct qemu_chan *c = &rp.chan;
    char path[256];
    OK(qmp_chardev_path(c, "charmonitor", path, sizeof path, E));
    assert_true(strncmp(path, "/var/lib/libvirt/qemu/domain-", 29) == 0);
    assert_string_equal(path + strlen(path) - 13, "/monitor.sock");
    /* The serial port is listed as disconnected, not as a unix path. */
    FAILS(qmp_chardev_path(c, "charserial0", path, sizeof path, E), "not a unix socket");
    FAILS(qmp_chardev_path(c, "nosuch", path, sizeof path, E), "no chardev 'nosuch'");

    struct qmp_ram_range r[16];
    size_t n = 0;
    OK(qmp_ram_layout(c, r, 16, &n, E));
    assert_true(n >= 2);
    assert_int_equal(r[0].gpa_start, 0);
    uint64_t hva = 0;
    OK(qmp_gpa2hva(c, 0x100000, &hva, NULL, E));
    assert_true(hva != 0 && (hva & 0xfff) == 0);
    uint64_t base;
    uint32_t limit;
    OK(qmp_idt(c, 0, &base, &limit, E));
    /* libvirt reports success for HMP commands that failed: the text
     * decides. */
    FAILS(qmp_gdbserver_start(c, "/nonexistent-dir/g.sock", E), "Failed to bind socket");
    char *text = NULL;
    OK(qmp_hmp(c, "no-such-hmp-command", &text, E));
    assert_non_null(strstr(text, "unknown command"));
    free(text);
    FAILS(chan_execute(c, "bm-no-such-command", NULL, NULL, E), "CommandNotFound");
    FAILS(chan_execute(c, "query-never-recorded", NULL, NULL, E), "no recorded reply");
}

static void test_hostile_replies(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *msg;
    } cases[] = {
        { "", "empty reply" },
        { "{\"return\":", "truncated" },
        { "[1,2]", "not a QMP reply object" },
        { "\"text\"", "not a QMP reply object" },
        { "{}", "neither 'return' nor 'error'" },
        { "{\"id\":\"libvirt-1\"}", "neither 'return' nor 'error'" },
        { "{\"return\":{}} trailing", "bytes after the JSON value" },
        { "{\"return\":{}}{\"return\":{}}", "bytes after the JSON value" },
        { "{\"error\":{}}", "? (no error class)" },
        { "{\"error\":5}", "neither 'return' nor 'error'" },
        { "{\"return\":\"\xff\xfe\"}", "not JSON" },
        { "nonsense", "not JSON" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_object *ret = NULL;
        FAILS(lv_parse_reply(cases[i].text, strlen(cases[i].text), "x", &ret, E), cases[i].msg);
        assert_null(ret);
    }
    /* Nesting deeper than QMP_MAX_DEPTH. */
    char deep[2 * (QMP_MAX_DEPTH + 8) + 16];
    size_t k = 0;
    k += (size_t)snprintf(deep, sizeof deep, "{\"return\":");
    for (int i = 0; i < QMP_MAX_DEPTH + 4; i++)
        deep[k++] = '[';
    for (int i = 0; i < QMP_MAX_DEPTH + 4; i++)
        deep[k++] = ']';
    deep[k++] = '}';
    deep[k] = '\0';
    FAILS(lv_parse_reply(deep, k, "x", NULL, E), "not JSON");
    /* A length over the cap is refused before it is parsed. */
    FAILS(lv_parse_reply("{}", (size_t)5 << 20, "x", NULL, E), "exceeds");
    json_object *ret = NULL;
    OK(lv_parse_reply("{\"return\":{\"a\":1},\"id\":\"libvirt-9\"}\n", 36, "x", &ret, E));
    assert_true(json_object_is_type(ret, json_type_object));
    json_object_put(ret);
}

static void test_cmdline(void **state)
{
    (void)state;
    static const char a[] = "qemu-system-x86_64\0-name\0guest=win10,debug-threads=on\0-S";
    static const char b[] = "qemu\0-name\0guest=a,,b\0";
    static const char c[] = "qemu\0-name\0guest=win100\0";
    static const char d[] = "qemu\0-name";
    static const char e[] = "qemu\0-name\0win10\0";
    assert_true(lv_cmdline_names(a, sizeof a, "win10"));
    assert_false(lv_cmdline_names(a, sizeof a, "win1"));
    assert_true(lv_cmdline_names(b, sizeof b, "a,b"));
    assert_false(lv_cmdline_names(b, sizeof b, "a"));
    assert_false(lv_cmdline_names(c, sizeof c, "win10"));
    assert_false(lv_cmdline_names(d, sizeof d - 1, "win10"));
    assert_false(lv_cmdline_names(e, sizeof e, "win10"));
    assert_false(lv_cmdline_names("", 0, "x"));
}

static void test_chardev_text(void **state)
{
    (void)state;
    char p[64];
    FAILS(qmp_parse_chardev_path("charmonitor: filename=unix:,server=on\r\n", "charmonitor", p,
                                 sizeof p, E), "no usable absolute path");
    FAILS(qmp_parse_chardev_path("charmonitor: filename=unix:rel/m.sock\r\n", "charmonitor", p,
                                 sizeof p, E), "no usable absolute path");
    FAILS(qmp_parse_chardev_path("charmonitor: filename=unix:/a\x01/m.sock\r\n", "charmonitor",
                                 p, sizeof p, E), "control character");
    char longp[200] = "charmonitor: filename=unix:/";
    memset(longp + strlen(longp), 'a', 100);
    FAILS(qmp_parse_chardev_path(longp, "charmonitor", p, sizeof p, E), "no usable absolute path");
    /* An id is matched whole, not as a prefix of another. */
    FAILS(qmp_parse_chardev_path("charmonitorX: filename=unix:/x/m.sock\r\n", "charmonitor", p,
                                 sizeof p, E), "no chardev");
    OK(qmp_parse_chardev_path("x: filename=pty\r\ncharmonitor: filename=unix:/d/m.sock\n",
                              "charmonitor", p, sizeof p, E));
    assert_string_equal(p, "/d/m.sock");
}

/* GUEST_PANICKED's data as QEMU 7.2 sends it (qapi GuestPanicInformation:
 * a "type" discriminator; hyper-v's arg1..arg5 are uint64). */
static void test_panic_details(void **state)
{
    (void)state;
    struct lvhost_panic p;
    OK(lvhost_parse_panic("{\"action\": \"pause\", \"info\": {\"type\": \"hyper-v\", "
                          "\"arg1\": 209, \"arg2\": 18446744073709551615, \"arg3\": 2, "
                          "\"arg4\": 0, \"arg5\": 18446735277616529408}}", &p, E));
    assert_string_equal(p.source, "hyper-v");
    assert_string_equal(p.action, "pause");
    assert_true(p.has_args);
    assert_int_equal(p.args[0], 0xd1);
    assert_int_equal(p.args[1], UINT64_MAX);
    assert_int_equal(p.args[4], 0xfffff80000000000ull);
    OK(lvhost_parse_panic("{\"action\":\"pause\"}", &p, E));   /* pvpanic: no info */
    assert_string_equal(p.source, "pvpanic");
    assert_false(p.has_args);
    OK(lvhost_parse_panic(NULL, &p, E));
    assert_string_equal(p.source, "pvpanic");
    OK(lvhost_parse_panic("{\"info\":{\"type\":\"hyper-v\",\"arg1\":1}}", &p, E));
    assert_false(p.has_args);          /* arg2..arg5 missing: no code made up */
    OK(lvhost_parse_panic("{\"info\":{\"type\":\"s390\",\"core\":0}}", &p, E));
    assert_string_equal(p.source, "s390");
    OK(lvhost_parse_panic("{\"info\":{\"type\":\"hyper-v\",\"arg1\":\"x\",\"arg2\":1,"
                          "\"arg3\":1,\"arg4\":1,\"arg5\":1}}", &p, E));
    assert_false(p.has_args);
    FAILS(lvhost_parse_panic("[1]", &p, E), "not a JSON object");
    FAILS(lvhost_parse_panic("{\"action\":", &p, E), "not a JSON object");
    char big[5000];
    memset(big, ' ', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    FAILS(lvhost_parse_panic(big, &p, E), "exceed");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recorded_queries),
        cmocka_unit_test(test_recorded_hmp),
        cmocka_unit_test(test_hostile_replies),
        cmocka_unit_test(test_cmdline),
        cmocka_unit_test(test_chardev_text),
        cmocka_unit_test(test_panic_details),
    };
    return cmocka_run_group_tests(tests, load, unload);
}
