/* test_qmp_hostile.c - the QMP client against peers that are not QMP or
 * misbehave: wrong greetings, silence, a socket closed mid-reply, oversized
 * or too deeply nested messages, invalid JSON and UTF-8, error and stale
 * replies, an event flood, and replies of the wrong shape. Each must give
 * an error (or the right result) - never a crash, never a hang. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "replay.h"
#include "vmi/qemu/qmp.h"

#define TIMEOUT_MS 2000

static struct replay rep;   /* static: outlives a failed test's frame */

/* OK, E and FAILS: see replay.h */

static const char greeting[] =
    "< {\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, "
    "\"major\": 7}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}\\r\\n\n"
    "> {\"execute\":\"qmp_capabilities\",\"id\":1}\\n\n"
    "< {\"return\": {}, \"id\": 1}\\r\\n\n";

static void adopt_fails(const char *text, int timeout_ms, const char *part)
{
    int fd = replay_start_text(&rep, text);
    if (fd < 0)
        fail_msg("%s", rep.fail);
    struct bm_err err = BM_ERR_INIT;
    struct qmp_conn *c = qmp_adopt(fd, timeout_ms, &err);
    assert_null(c);          /* qmp_adopt closed fd: the server sees EOF */
    if (strstr(bm_err_msg(&err), part) == NULL)
        fail_msg("'%s' lacks '%s'", bm_err_msg(&err), part);
    replay_finish(&rep);
}

static void test_not_qmp(void **state)
{
    (void)state;
    adopt_fails("< $T02thread:01;#04\n", TIMEOUT_MS,
                "is not a QMP socket (it sent '$T02thread:01;#04')");
    adopt_fails("< QEMU 7.2.22 monitor - type 'help' for more information"
                "\\r\\n(qemu)\\x20\n", TIMEOUT_MS,
                "is not a QMP socket (it sent 'QEMU 7.2.22 monitor");
    adopt_fails("< {\"hello\": 1}\\r\\n\n", TIMEOUT_MS,
                "is not a QMP socket (its greeting has no QMP version");
    adopt_fails("< {\"QMP\": {\"version\": 1}}\\r\\n\n", TIMEOUT_MS,
                "its greeting has no QMP version");
    adopt_fails("< [1]\\r\\n\n", TIMEOUT_MS, "is not a QMP socket");
    adopt_fails("", 150, "no QMP greeting from the QMP connection on fd");
    adopt_fails("close\n", TIMEOUT_MS, "no QMP greeting: ");
    struct bm_err err = BM_ERR_INIT;
    assert_null(qmp_adopt(-1, 10, &err));
}

static void test_capabilities_refused(void **state)
{
    (void)state;
    adopt_fails("< {\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, "
                "\"minor\": 0, \"major\": 9}}, \"capabilities\": []}}\\r\\n\n"
                "> {\"execute\":\"qmp_capabilities\",\"id\":1}\\n\n"
                "< {\"error\": {\"class\": \"GenericError\", \"desc\": "
                "\"Capabilities negotiation is already complete\"}, "
                "\"id\": 1}\\r\\n\n", TIMEOUT_MS,
                "'qmp_capabilities' failed on the QMP connection on fd");
}

static struct qmp_conn *start(struct script *s, int timeout_ms)
{
    int fd = replay_start_text(&rep, s->buf);
    script_free(s);
    if (fd < 0)
        fail_msg("%s", rep.fail);
    struct bm_err err = BM_ERR_INIT;
    struct qmp_conn *c = qmp_adopt(fd, timeout_ms, &err);
    if (c == NULL)
        fail_msg("%s [replay: %s]", bm_err_msg(&err), rep.fail);
    return c;
}

static void finish(struct qmp_conn *c, bool clean)
{
    qmp_close(c);
    bool ok = replay_finish(&rep);
    if (clean && !ok)
        fail_msg("replay: %s", rep.fail);
}

/* One query-status (id 2) answered by `reply`, which must fail with
 * `part`. */
static void status_fails(const char *reply, const char *part, bool clean)
{
    struct script s = { 0 };
    script_add(&s, "%s> {\"execute\":\"query-status\",\"id\":2}\\n\n%s",
               greeting, reply);
    struct qmp_conn *c = start(&s, TIMEOUT_MS);
    struct qmp_status st;
    FAILS(qmp_query_status(qmp_chan(c), &st, E), part);
    finish(c, clean);
}

static void test_broken_replies(void **state)
{
    (void)state;
    status_fails("< {\"return\": {\"sta\nclose\n",
                 "closed by QEMU in the middle of a message", true);
    status_fails("close\n", "was closed by QEMU", true);
    status_fails("< }}}\n", "invalid JSON", true);
    status_fails("< {\"return\": \"\\xff\\xfe\", \"id\": 2}\\r\\n\n",
                 "invalid JSON", true);
    status_fails("< \\x00\\x00\n", "invalid JSON", true);
    status_fails("< 42\\r\\n\n", "not an object", true);
    status_fails("< {\"return\": {\"status\": 5, \"running\": true}, "
                 "\"id\": 2}\\r\\n\n", "lacks status", true);
    status_fails("< {\"return\": {\"status\": \"running\"}, \"id\": 2}\\r\\n\n",
                 "lacks 'running'", true);
    status_fails("< {\"return\": {\"status\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\", \"running\": "
                 "true}, \"id\": 2}\\r\\n\n", "longer than 63", true);
    /* QEMU answers without an id when it could not parse the request. */
    status_fails("< {\"error\": {\"class\": \"GenericError\", \"desc\": "
                 "\"JSON parse error\"}}\\r\\n\n",
                 "failed on the QMP connection on fd", true);
    status_fails("< {\"error\": 7, \"id\": 2}\\r\\n\n", "no error class",
                 true);
}

static void test_limits(void **state)
{
    (void)state;
    struct script s = { 0 };
    script_add(&s, "< {\"return\": ");
    for (int i = 0; i < QMP_MAX_DEPTH + 8; i++)
        script_add(&s, "[");
    script_add(&s, "\n");
    status_fails(s.buf, "nesting too deep", false);
    script_free(&s);

    size_t n = QMP_MAX_MESSAGE + 64;
    char *big = malloc(n + 64);
    assert_non_null(big);
    strcpy(big, "< {\"return\": \"");
    memset(big + strlen(big), 'a', n);
    strcpy(big + strlen("< {\"return\": \"") + n, "\"}\\r\\n\n");
    status_fails(big, "exceeds", false);
    free(big);
}

static void test_stale_and_late_replies(void **state)
{
    (void)state;
    struct script s = { 0 };
    script_add(&s, "%s", greeting);
    script_add(&s, "> {\"execute\":\"query-status\",\"id\":2}\\n\n");
    /* no answer in time; the next command gets the late one first */
    script_add(&s, "> {\"execute\":\"query-status\",\"id\":3}\\n\n");
    script_add(&s, "< {\"return\": {\"status\": \"paused\", \"running\": "
               "false}, \"id\": 2}\\r\\n\n");
    script_add(&s, "< {\"return\": {}, \"id\": \"3\"}\\r\\n\n");
    script_add(&s, "< {\"greeting\": \"unknown message\"}\\r\\n\n");
    script_add(&s, "< {\"return\": {\"status\": \"running\", \"running\": "
               "true}, \"id\": 3}\\r\\n\n");
    struct qmp_conn *c = start(&s, TIMEOUT_MS);
    struct qmp_status st;
    qmp_set_timeout(c, 150);
    FAILS(qmp_query_status(qmp_chan(c), &st, E), "no reply to QMP command "
          "'query-status'");
    qmp_set_timeout(c, TIMEOUT_MS);
    OK(qmp_query_status(qmp_chan(c), &st, E));
    assert_string_equal(st.status, "running");
    finish(c, true);
}

static void test_event_flood(void **state)
{
    (void)state;
    struct script s = { 0 };
    script_add(&s, "%s> {\"execute\":\"stop\",\"id\":2}\\n\n", greeting);
    for (int i = 0; i < QMP_EVENT_QUEUE + 6; i++)
        script_add(&s, "< {\"event\": \"E%d\", \"data\": {}}\\r\\n\n", i);
    script_add(&s, "< {\"event\": \"HUGE\", \"data\": \"");
    for (int i = 0; i < QMP_MAX_EVENT / 64 + 1; i++)
        script_add(&s, "%064d", i);
    script_add(&s, "\"}\\r\\n\n");
    script_add(&s, "< {\"return\": {}, \"id\": 2}\\r\\n\n");
    script_add(&s, "< {\"event\": \"LATE\"}\\r\\n\n");
    struct qmp_conn *c = start(&s, TIMEOUT_MS);
    OK(qmp_execute(c, "stop", NULL, NULL, E));
    /* the 6 oldest go, and the oversized one */
    assert_int_equal(qmp_events_dropped(c), 7);
    json_object *ev, *name;
    for (int i = 6; i < QMP_EVENT_QUEUE + 6; i++) {
        char want[16];
        snprintf(want, sizeof want, "E%d", i);
        assert_int_equal(qmp_next_event(c, 0, &ev, NULL), 1);
        assert_true(json_object_object_get_ex(ev, "event", &name));
        assert_string_equal(json_object_get_string(name), want);
        json_object_put(ev);
    }
    assert_int_equal(qmp_next_event(c, TIMEOUT_MS, &ev, NULL), 1);
    json_object_put(ev);
    assert_int_equal(qmp_next_event(c, 50, &ev, NULL), 0);
    finish(c, true);
}

/* QEMU 7.2 can write an event to a newly accepted client before its
 * greeting (the soak met a GUEST_PANICKED first): the event is kept, the
 * greeting still found. Endless events instead of a greeting are refused. */
static void test_event_before_greeting(void **state)
{
    (void)state;
    struct script s = { 0 };
    script_add(&s, "< {\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, "
               "\"event\": \"GUEST_PANICKED\", \"data\": {\"action\": "
               "\"pause\"}}\\r\\n\n%s", greeting);
    struct qmp_conn *c = start(&s, TIMEOUT_MS);
    int major, minor, micro;
    qmp_version(c, &major, &minor, &micro);
    assert_int_equal(major, 7);
    assert_int_equal(micro, 22);
    json_object *ev, *name;
    assert_int_equal(qmp_next_event(c, 0, &ev, NULL), 1);
    assert_true(json_object_object_get_ex(ev, "event", &name));
    assert_string_equal(json_object_get_string(name), "GUEST_PANICKED");
    json_object_put(ev);
    finish(c, true);

    struct script t = { 0 };
    for (int i = 0; i < QMP_EVENT_QUEUE + 1; i++)
        script_add(&t, "< {\"event\": \"E%d\"}\\r\\n\n", i);
    adopt_fails(t.buf, TIMEOUT_MS, "is not a QMP socket (its greeting has "
                "no QMP version");
    script_free(&t);
}

/* Typed helpers refuse replies of the wrong shape. */
static void test_wrong_shapes(void **state)
{
    (void)state;
    static const struct { const char *cmd, *reply, *msg; } cases[] = {
        { "query-cpus-fast", "[]", "no vCPUs" },
        { "query-cpus-fast", "{}", "no vCPUs" },
        { "query-cpus-fast", "[{\"cpu-index\": 0, \"thread-id\": \"x\"}]",
          "no valid cpu-index and thread-id" },
        { "query-cpus-fast", "[{\"cpu-index\": -1, \"thread-id\": 5}]",
          "no valid cpu-index" },
        { "query-cpus-fast", "[{\"cpu-index\": 0, \"thread-id\": 1}, "
          "{\"cpu-index\": 1, \"thread-id\": 2}, {\"cpu-index\": 2, "
          "\"thread-id\": 3}]", "more than 2" },
        { "query-memdev", "[{\"id\": \"a/b\", \"size\": 1, \"share\": "
          "false}]", "odd memdev id" },
        { "query-memdev", "[{\"size\": 1, \"share\": false}]",
          "lacks memdev id" },
        { "query-memdev", "[{\"id\": \"m\", \"share\": false}]",
          "lacks size or share" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct script s = { 0 };
        script_add(&s, "%s> {\"execute\":\"%s\",\"id\":2}\\n\n"
                   "< {\"return\": %s, \"id\": 2}\\r\\n\n", greeting,
                   cases[i].cmd, cases[i].reply);
        struct qmp_conn *c = start(&s, TIMEOUT_MS);
        size_t n;
        if (strcmp(cases[i].cmd, "query-cpus-fast") == 0) {
            struct qmp_cpu cpus[2];
            FAILS(qmp_query_cpus(qmp_chan(c), cpus, 2, &n, E), cases[i].msg);
        } else {
            struct qmp_memdev devs[2];
            FAILS(qmp_query_memdevs(qmp_chan(c), devs, 2, &n, E), cases[i].msg);
        }
        finish(c, true);
    }

    struct script s = { 0 };
    script_add(&s, "%s> {\"execute\":\"human-monitor-command\",\"arguments\":"
               "{\"command-line\":\"gdbserver unix:/x/g.sock,server=on,"
               "wait=off\"},\"id\":2}\\n\n"
               "< {\"return\": \"duplicate yank instance\\\\r\\\\nCould not "
               "open gdbserver\\\\r\\\\n\", \"id\": 2}\\r\\n\n"
               "> {\"execute\":\"human-monitor-command\",\"arguments\":"
               "{\"command-line\":\"info mtree -f\"},\"id\":3}\\n\n"
               "< {\"return\": {}, \"id\": 3}\\r\\n\n", greeting);
    struct qmp_conn *c = start(&s, TIMEOUT_MS);
    struct qmp_ram_range r[2];
    size_t n;
    FAILS(qmp_gdbserver_start(qmp_chan(c), "/x/g.sock", E), "duplicate yank instance");
    FAILS(qmp_ram_layout(qmp_chan(c), r, 2, &n, E), "returned no text");
    FAILS(qmp_idt(qmp_chan(c), -1, NULL, NULL, E), "no vCPU -1");
    finish(c, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_not_qmp),
        cmocka_unit_test(test_capabilities_refused),
        cmocka_unit_test(test_broken_replies),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_stale_and_late_replies),
        cmocka_unit_test(test_event_flood),
        cmocka_unit_test(test_event_before_greeting),
        cmocka_unit_test(test_wrong_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
