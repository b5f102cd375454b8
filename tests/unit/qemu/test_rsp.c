/* test_rsp.c - the GDB stub client against conversations recorded from
 * QEMU 7.2 (tests/unit/data/qemu/rsp-*.txt): results must match what the
 * recorder read, and the client must send exactly the recorded bytes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "replay.h"
#include "vmi/qemu/rsp.h"

#define TIMEOUT_MS 3000

/* The replay in progress, so a failing call can show what the fake server
 * saw (e.g. which bytes the client sent instead of the recorded ones). */
static struct replay *current;

static struct rsp_conn *open_replay(struct replay *r, const char *name)
{
    current = r;
    int fd = replay_start_file(r, name);
    if (fd < 0)
        fail_msg("%s", r->fail);
    struct bm_err err = BM_ERR_INIT;
    struct rsp_conn *c = rsp_adopt(fd, TIMEOUT_MS, &err);
    assert_non_null(c);
    if (rsp_handshake(c, &err) < 0)
        fail_msg("handshake: %s", bm_err_msg(&err));
    return c;
}

static void close_replay(struct replay *r, struct rsp_conn *c)
{
    rsp_close(c);
    if (!replay_finish(r))
        fail_msg("replay: %s", r->fail);
}

/* OK(f(..., E)) as in replay.h, but naming the replay in progress. */
#undef OK
#undef E
#define OK(call)                                                    \
    do {                                                            \
        struct bm_err e_ = BM_ERR_INIT;                             \
        if ((call) < 0)                                             \
            fail_msg("%s: %s [replay: %s]", #call, bm_err_msg(&e_), \
                     current ? current->fail : "");                 \
    } while (0)
#define E (&e_)

static void check_regs(const char *file, int vcpu, const struct rsp_regs *g)
{
    static const struct { const char *name; int reg; } keys[] = {
        { "rax", RSP_REG_RAX }, { "rsp", RSP_REG_RSP },
        { "rip", RSP_REG_RIP }, { "eflags", RSP_REG_EFLAGS },
        { "cs", RSP_REG_CS }, { "fs_base", RSP_REG_FS_BASE },
        { "gs_base", RSP_REG_GS_BASE }, { "k_gs_base", RSP_REG_K_GS_BASE },
        { "cr0", RSP_REG_CR0 }, { "cr3", RSP_REG_CR3 },
        { "cr4", RSP_REG_CR4 }, { "efer", RSP_REG_EFER },
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char key[32];
        snprintf(key, sizeof key, "vcpu%d.%s", vcpu, keys[i].name);
        assert_int_equal(g->r[keys[i].reg], replay_expect_u64(file, key));
    }
}

static void test_handshake_and_registers(void **state)
{
    (void)state;
    const char *f = "rsp-handshake.txt";
    static struct replay r;   /* outlives a failed test's frame */
    struct rsp_conn *c = open_replay(&r, f);
    assert_int_equal(rsp_vcpu_count(c), replay_expect_u64(f, "vcpus"));
    assert_true(rsp_multiprocess(c));
    assert_true(rsp_ack_mode(c));      /* QEMU 7.2 refuses QStartNoAckMode */
    assert_false(rsp_running(c));
    assert_int_equal(rsp_last_stop(c)->kind, RSP_STOP_SIGNAL);
    assert_int_equal(rsp_last_stop(c)->code, 5);
    assert_int_equal(rsp_last_stop(c)->vcpu, 0);

    struct rsp_regs g0, g1;
    uint64_t v;
    OK(rsp_read_regs(c, 0, &g0, E));
    check_regs(f, 0, &g0);
    OK(rsp_read_regs(c, 1, &g1, E));
    check_regs(f, 1, &g1);
    assert_int_equal(g0.rip, g0.r[RSP_REG_RIP]);

    OK(rsp_read_reg(c, 1, RSP_REG_CR0, &v, E));
    assert_int_equal(v, replay_expect_u64(f, "p.vcpu1.cr0"));
    OK(rsp_read_reg(c, 1, RSP_REG_CS, &v, E));
    assert_int_equal(v, replay_expect_u64(f, "p.vcpu1.cs"));
    OK(rsp_read_reg(c, 0, RSP_REG_RIP, &v, E));
    assert_int_equal(v, g0.rip);

    /* Refused locally: no bytes go out (the replay would notice). */
    struct bm_err err = BM_ERR_INIT;
    assert_int_equal(rsp_read_reg(c, 0, 0x40, &v, &err), -1);
    assert_non_null(strstr(bm_err_msg(&err), "register number 64"));
    bm_err_clear(&err);
    assert_int_equal(rsp_read_regs(c, 2, &g0, &err), -1);
    assert_non_null(strstr(bm_err_msg(&err), "no vCPU 2"));

    OK(rsp_detach(c, E));
    assert_int_equal(rsp_read_regs(c, 0, &g0, &err), -1);
    close_replay(&r, c);
}

static void test_physical_memory(void **state)
{
    (void)state;
    const char *f = "rsp-memory.txt";
    static struct replay r;   /* outlives a failed test's frame */
    struct rsp_conn *c = open_replay(&r, f);
    OK(rsp_set_phys_mode(c, true, E));
    assert_true(rsp_phys_mode(c));

    uint8_t ivt[0x40], bios[0x900];
    size_t done = 0;
    OK(rsp_read_mem(c, 0, ivt, sizeof ivt, &done, E));
    assert_int_equal(done, sizeof ivt);
    char *want = replay_expect(f, "ivt");
    assert_non_null(want);
    char hex[2 * sizeof ivt + 1];
    for (size_t i = 0; i < sizeof ivt; i++)
        snprintf(hex + 2 * i, 3, "%02x", ivt[i]);
    assert_string_equal(hex, want);
    free(want);

    /* 0x900 bytes go out as 0x800 + 0x100 (QEMU refuses more than 0x800). */
    OK(rsp_read_mem(c, 0xf0000, bios, sizeof bios, NULL, E));
    uint32_t sum = 0;
    for (size_t i = 0; i < sizeof bios; i++)
        sum += bios[i];
    assert_int_equal(sum, replay_expect_u64(f, "bios.sum"));

    uint8_t pattern[16], back[16];
    for (int i = 0; i < 16; i++)
        pattern[i] = (uint8_t)(0xa0 + i);
    OK(rsp_write_mem(c, 0x500000, pattern, sizeof pattern, NULL, E));
    OK(rsp_read_mem(c, 0x500000, back, sizeof back, NULL, E));
    assert_memory_equal(back, pattern, sizeof pattern);

    OK(rsp_set_phys_mode(c, false, E));
    assert_false(rsp_phys_mode(c));
    OK(rsp_detach(c, E));
    close_replay(&r, c);
}

/* Waits the way the monitor's event loop does: poll the fd, then ask. */
static void poll_for_stop(struct rsp_conn *c, struct rsp_stop *s)
{
    for (int i = 0; i < 50; i++) {
        struct bm_err err = BM_ERR_INIT;
        int r = rsp_poll_stop(c, s, &err);
        if (r < 0)
            fail_msg("rsp_poll_stop: %s", bm_err_msg(&err));
        if (r == 1)
            return;
        struct pollfd pfd = { .fd = rsp_fd(c), .events = POLLIN };
        poll(&pfd, 1, 100);
    }
    fail_msg("no stop reply");
}

static void test_breakpoints(void **state)
{
    (void)state;
    const char *f = "rsp-break.txt";
    static struct replay r;   /* outlives a failed test's frame */
    struct rsp_conn *c = open_replay(&r, f);
    struct rsp_stop s;
    struct rsp_regs g;
    uint8_t vec[4];
    OK(rsp_set_phys_mode(c, true, E));
    OK(rsp_read_mem(c, 0x20, vec, sizeof vec, NULL, E));
    OK(rsp_set_phys_mode(c, false, E));
    uint64_t lin = (uint64_t)(vec[2] | vec[3] << 8) * 16 + (vec[0] | vec[1] << 8);
    assert_int_equal(lin, replay_expect_u64(f, "handler"));

    OK(rsp_bp_insert(c, lin, RSP_BP_HW, E));
    OK(rsp_bp_insert(c, lin, RSP_BP_HW, E));   /* already there: no packet */
    assert_int_equal(rsp_bp_count(c), 1);
    OK(rsp_continue(c, E));
    assert_true(rsp_running(c));
    assert_int_equal(rsp_wait_stop(c, &s, TIMEOUT_MS, NULL), 1);
    assert_int_equal(s.kind, RSP_STOP_SIGNAL);
    assert_int_equal(s.code, replay_expect_u64(f, "hw.signal"));
    assert_int_equal(s.vcpu, replay_expect_u64(f, "hw.vcpu"));
    assert_false(s.watch);
    OK(rsp_read_regs(c, s.vcpu, &g, E));
    assert_int_equal(g.rip, replay_expect_u64(f, "hw.rip"));

    /* Continuing over an inserted breakpoint stops at once (TCG). */
    OK(rsp_continue(c, E));
    poll_for_stop(c, &s);
    OK(rsp_read_regs(c, s.vcpu, &g, E));
    assert_int_equal(g.rip, replay_expect_u64(f, "rehit.rip"));

    OK(rsp_bp_remove(c, lin, RSP_BP_HW, E));
    OK(rsp_bp_insert(c, lin, RSP_BP_SW, E));
    OK(rsp_continue(c, E));
    assert_int_equal(rsp_wait_stop(c, &s, TIMEOUT_MS, NULL), 1);
    assert_int_equal(s.code, replay_expect_u64(f, "sw.signal"));
    OK(rsp_bp_remove_all(c, E));
    assert_int_equal(rsp_bp_count(c), 0);

    OK(rsp_continue(c, E));
    struct bm_err err = BM_ERR_INIT;
    assert_int_equal(rsp_read_regs(c, 0, &g, &err), -1);  /* running */
    assert_non_null(strstr(bm_err_msg(&err), "running"));
    OK(rsp_interrupt(c, E));
    assert_int_equal(rsp_wait_stop(c, &s, TIMEOUT_MS, NULL), 1);
    assert_int_equal(s.code, replay_expect_u64(f, "intr.signal"));
    bm_err_clear(&err);
    assert_int_equal(rsp_interrupt(c, &err), -1);          /* stopped */

    OK(rsp_step(c, 0, &s, E));
    assert_int_equal(s.code, replay_expect_u64(f, "step.signal"));
    assert_int_equal(s.vcpu, replay_expect_u64(f, "step.vcpu"));
    OK(rsp_detach(c, E));
    close_replay(&r, c);
}

/* vmi_run_to's batches as QEMU answered them (rsp-follow.txt): the
 * breakpoint lifted and a further one inserted with the continue of one
 * vCPU in one write, the replies read without acks (an ack would reach
 * QEMU while the vCPU runs and stop the VM), then the stop there; the
 * bookkeeping follows. */
static void test_batch_follow(void **state)
{
    (void)state;
    const char *f = "rsp-follow.txt";
    static struct replay r;
    struct rsp_conn *c = open_replay(&r, f);
    struct rsp_stop s;
    uint8_t vec[4];
    uint64_t rip;
    OK(rsp_set_phys_mode(c, true, E));
    OK(rsp_read_mem(c, 0x20, vec, sizeof vec, NULL, E));
    OK(rsp_set_phys_mode(c, false, E));
    uint64_t lin = (uint64_t)(vec[2] | vec[3] << 8) * 16 + (vec[0] | vec[1] << 8);
    uint64_t nxt = replay_expect_u64(f, "next");
    assert_int_equal(lin, replay_expect_u64(f, "handler"));
    OK(rsp_bp_insert(c, lin, RSP_BP_HW, E));
    OK(rsp_continue(c, E));
    assert_int_equal(rsp_wait_stop(c, &s, TIMEOUT_MS, NULL), 1);
    OK(rsp_bp_remove(c, lin, RSP_BP_HW, E));
    OK(rsp_step(c, s.vcpu, &s, E));
    OK(rsp_read_reg(c, s.vcpu, RSP_REG_RIP, &rip, E));
    assert_int_equal(rip, replay_expect_u64(f, "next.ip"));
    OK(rsp_bp_insert(c, lin, RSP_BP_HW, E));
    OK(rsp_continue(c, E));
    assert_int_equal(rsp_wait_stop(c, &s, TIMEOUT_MS, NULL), 1);
    int vcpu = s.vcpu;
    assert_int_equal(vcpu, replay_expect_u64(f, "vcpu"));

    const struct rsp_bp_op run[] = { { lin, RSP_BP_HW, false }, { nxt, RSP_BP_HW, true } };
    OK(rsp_bp_batch(c, run, 2, vcpu, E));
    assert_true(rsp_running(c));
    assert_false(rsp_bp_has(c, lin, RSP_BP_HW));
    assert_true(rsp_bp_has(c, nxt, RSP_BP_HW));
    assert_int_equal(rsp_wait_stop(c, &s, TIMEOUT_MS, NULL), 1);
    assert_int_equal(s.code, replay_expect_u64(f, "follow.signal"));
    assert_int_equal(s.vcpu, replay_expect_u64(f, "follow.vcpu"));
    OK(rsp_read_reg(c, s.vcpu, RSP_REG_RIP, &rip, E));
    assert_int_equal(rip, replay_expect_u64(f, "follow.rip"));

    const struct rsp_bp_op back[] = { { nxt, RSP_BP_HW, false }, { lin, RSP_BP_HW, true } };
    OK(rsp_bp_batch(c, back, 2, RSP_RESUME_ALL, E));
    assert_true(rsp_running(c));
    assert_int_equal(rsp_bp_count(c), 1);
    assert_int_equal(rsp_wait_stop(c, &s, TIMEOUT_MS, NULL), 1);
    assert_int_equal(s.code, replay_expect_u64(f, "back.signal"));
    OK(rsp_bp_remove(c, lin, RSP_BP_HW, E));
    OK(rsp_detach(c, E));
    close_replay(&r, c);
}

/* rsp_connect on a real unix socket, then the recorded handshake. */
static void test_connect_path(void **state)
{
    (void)state;
    char dir[] = "/tmp/bm-rsp-XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/gdb.sock", dir);
    static struct replay r;   /* outlives a failed test's frame */
    current = &r;
    if (replay_listen_file(&r, "rsp-handshake.txt", path) < 0)
        fail_msg("%s", r.fail);
    struct bm_err err = BM_ERR_INIT;
    struct rsp_conn *c = rsp_connect(path, TIMEOUT_MS, &err);
    if (c == NULL)
        fail_msg("%s", bm_err_msg(&err));
    OK(rsp_handshake(c, E));
    struct rsp_regs g;
    OK(rsp_read_regs(c, 0, &g, E));
    OK(rsp_read_regs(c, 1, &g, E));
    uint64_t v;
    OK(rsp_read_reg(c, 1, RSP_REG_CR0, &v, E));
    OK(rsp_read_reg(c, 1, RSP_REG_CS, &v, E));
    OK(rsp_read_reg(c, 0, RSP_REG_RIP, &v, E));
    OK(rsp_detach(c, E));
    close_replay(&r, c);
    unlink(path);
    rmdir(dir);

    assert_null(rsp_connect(path, 100, &err));
    assert_non_null(strstr(bm_err_msg(&err), path));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_and_registers),
        cmocka_unit_test(test_physical_memory),
        cmocka_unit_test(test_breakpoints),
        cmocka_unit_test(test_batch_follow),
        cmocka_unit_test(test_connect_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
