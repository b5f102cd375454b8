/* test_qmp.c - the QMP client against conversations recorded from QEMU 7.2
 * (tests/unit/data/qemu/qmp-*.txt): parsed results must match what the
 * recorder read with its own parser, and the client must send exactly the
 * recorded bytes. */
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

#define TIMEOUT_MS 3000

static struct replay rep;   /* static: outlives a failed test's frame */

/* OK, E and FAILS: see replay.h */

static struct qmp_conn *open_replay(const char *name)
{
    int fd = replay_start_file(&rep, name);
    if (fd < 0)
        fail_msg("%s", rep.fail);
    struct bm_err err = BM_ERR_INIT;
    struct qmp_conn *c = qmp_adopt(fd, TIMEOUT_MS, &err);
    if (c == NULL)
        fail_msg("qmp_adopt: %s [replay: %s]", bm_err_msg(&err), rep.fail);
    return c;
}

static void close_replay(struct qmp_conn *c)
{
    qmp_close(c);
    if (!replay_finish(&rep))
        fail_msg("replay: %s", rep.fail);
}

static void expect_str(const char *file, const char *key, const char *got)
{
    char *want = replay_expect(file, key);
    if (want == NULL)
        fail_msg("%s: no expectation %s", file, key);
    assert_string_equal(got, want);
    free(want);
}

static const char *event_name(json_object *ev)
{
    json_object *n;
    return json_object_object_get_ex(ev, "event", &n)
           ? json_object_get_string(n) : "";
}

static void test_basic(void **state)
{
    (void)state;
    const char *f = "qmp-basic.txt";
    struct qmp_conn *c = open_replay(f);
    int maj, min, mic;
    qmp_version(c, &maj, &min, &mic);
    assert_int_equal(maj, 7);
    assert_int_equal(min, 2);
    assert_int_equal(mic, 22);

    struct qmp_status st;
    OK(qmp_query_status(qmp_chan(c), &st, E));
    expect_str(f, "status", st.status);
    assert_true(st.running);

    struct qmp_cpu cpus[8];
    size_t n = 0;
    OK(qmp_query_cpus(qmp_chan(c), cpus, 8, &n, E));
    assert_int_equal(n, replay_expect_u64(f, "cpus"));
    for (size_t i = 0; i < n; i++) {
        char key[32];
        assert_int_equal(cpus[i].index, i);
        snprintf(key, sizeof key, "cpu%zu.thread-id", i);
        assert_int_equal(cpus[i].thread_id, replay_expect_u64(f, key));
    }

    struct qmp_memdev devs[4];
    OK(qmp_query_memdevs(qmp_chan(c), devs, 4, &n, E));
    assert_int_equal(n, 1);
    expect_str(f, "memdev0.id", devs[0].id);
    expect_str(f, "memdev0.type", devs[0].type);
    assert_int_equal(devs[0].size, replay_expect_u64(f, "memdev0.size"));
    assert_false(devs[0].share);
    assert_string_equal(devs[0].mem_path, "");   /* anonymous RAM */

    for (int cpu = 0; cpu < 2; cpu++) {
        uint64_t base;
        uint32_t limit;
        char kb[32], kl[32];
        OK(qmp_idt(qmp_chan(c), cpu, &base, &limit, E));
        snprintf(kb, sizeof kb, "idt%d.base", cpu);
        snprintf(kl, sizeof kl, "idt%d.limit", cpu);
        assert_int_equal(base, replay_expect_u64(f, kb));
        assert_int_equal(limit, replay_expect_u64(f, kl));
    }
    uint64_t base;
    uint32_t limit;
    FAILS(qmp_idt(qmp_chan(c), 7, &base, &limit, E), "CPU#7 not available");
    FAILS(qmp_execute(c, "bm-no-such-command", NULL, NULL, E),
          "has not been found (CommandNotFound)");

    /* Events that arrive while waiting for a reply are queued in order. */
    OK(qmp_execute(c, "stop", NULL, NULL, E));
    OK(qmp_execute(c, "cont", NULL, NULL, E));
    json_object *ev;
    assert_int_equal(qmp_next_event(c, 0, &ev, NULL), 1);
    assert_string_equal(event_name(ev), "STOP");
    json_object_put(ev);
    assert_int_equal(qmp_next_event(c, 0, &ev, NULL), 1);
    assert_string_equal(event_name(ev), "RESUME");
    json_object_put(ev);
    assert_int_equal(qmp_next_event(c, 0, &ev, NULL), 0);
    assert_int_equal(qmp_events_dropped(c), 0);

    /* Over a socketpair the peer is this very process. */
    pid_t pid;
    OK(qmp_peer_pid(c, &pid, E));
    assert_int_equal(pid, getpid());
    close_replay(c);
}

static void check_layout(const char *f, struct qmp_conn *c)
{
    struct qmp_ram_range ram[16];
    size_t n = 0;
    OK(qmp_ram_layout(qmp_chan(c), ram, 16, &n, E));
    assert_int_equal(n, replay_expect_u64(f, "ram.count"));
    for (size_t i = 0; i < n; i++) {
        char key[16], got[160];
        snprintf(key, sizeof key, "ram%zu", i);
        snprintf(got, sizeof got, "0x%llx-0x%llx %s @0x%llx",
                 (unsigned long long)ram[i].gpa_start,
                 (unsigned long long)ram[i].gpa_end, ram[i].block,
                 (unsigned long long)ram[i].offset);
        expect_str(f, key, got);
    }
    uint64_t hva;
    char block[QMP_NAME_MAX];
    OK(qmp_gpa2hva(qmp_chan(c), 0x1000, &hva, block, E));
    assert_int_equal(hva, replay_expect_u64(f, "hva.0x1000"));
    expect_str(f, "hva.0x1000.block", block);
    FAILS(qmp_gpa2hva(qmp_chan(c), 0x10000000, &hva, NULL, E),
          "No memory is mapped at address 0x10000000");
}

static void test_layout(void **state)
{
    (void)state;
    const char *f = "qmp-layout.txt";
    struct qmp_conn *c = open_replay(f);
    struct qmp_memdev devs[2];
    size_t n;
    OK(qmp_query_memdevs(qmp_chan(c), devs, 2, &n, E));
    assert_int_equal(n, 1);
    expect_str(f, "memdev0.type", devs[0].type);
    check_layout(f, c);
    close_replay(c);
}

static void test_memory_backend_file(void **state)
{
    (void)state;
    const char *f = "qmp-memfile.txt";
    struct qmp_conn *c = open_replay(f);
    struct qmp_memdev devs[2];
    size_t n;
    OK(qmp_query_memdevs(qmp_chan(c), devs, 2, &n, E));
    assert_int_equal(n, 1);
    expect_str(f, "memdev0.id", devs[0].id);
    expect_str(f, "memdev0.type", devs[0].type);
    expect_str(f, "memdev0.mem-path", devs[0].mem_path);
    assert_true(devs[0].share);
    check_layout(f, c);
    close_replay(c);
}

/* qmp_connect on a real unix socket; the GDB sessions in between produced
 * STOP/RESUME events that arrive before the second reply. */
static void test_connect_and_gdbserver(void **state)
{
    (void)state;
    char dir[] = "/tmp/bm-qmp-XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/qmp.sock", dir);
    if (replay_listen_file(&rep, "qmp-gdbserver.txt", path) < 0)
        fail_msg("%s", rep.fail);
    struct bm_err err = BM_ERR_INIT;
    struct qmp_conn *c = qmp_connect(path, TIMEOUT_MS, &err);
    if (c == NULL)
        fail_msg("%s", bm_err_msg(&err));
    OK(qmp_gdbserver_start(qmp_chan(c), "gdb.sock", E));
    OK(qmp_gdbserver_stop(qmp_chan(c), E));
    json_object *ev;
    int stops = 0, resumes = 0;
    while (qmp_next_event(c, 0, &ev, NULL) == 1) {
        stops += strcmp(event_name(ev), "STOP") == 0;
        resumes += strcmp(event_name(ev), "RESUME") == 0;
        json_object_put(ev);
    }
    assert_true(stops > 0);
    assert_int_equal(stops, resumes);
    FAILS(qmp_gdbserver_start(qmp_chan(c), "a,b", E), "comma");
    FAILS(qmp_gdbserver_start(qmp_chan(c), "a b", E), "blank");
    close_replay(c);
    unlink(path);
    rmdir(dir);

    assert_null(qmp_connect(path, 100, &err));
    assert_non_null(strstr(bm_err_msg(&err), path));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_memory_backend_file),
        cmocka_unit_test(test_connect_and_gdbserver),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
