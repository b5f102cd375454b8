/* test_rsp_hostile.c - the GDB stub client against stubs that differ from
 * QEMU 7.2 or misbehave: plain (non-multiprocess) thread ids, no-ack mode,
 * a non-x86 target, bad thread lists, error replies, odd stop replies,
 * timeouts and a socket closed mid-reply. Also the stop-reply parser. */
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

#define TIMEOUT_MS 2000

static struct replay rep;   /* static: outlives a failed test's frame */

/* OK, E and FAILS: see replay.h */

/* A minimal handshake as QEMU would answer it, minus target.xml. */
static void handshake(struct script *s, bool mp)
{
    script_exchange(s, "qSupported:multiprocess+;hwbreak+;xmlRegisters=i386",
                    mp ? "PacketSize=1000;vContSupported+;multiprocess+"
                       : "PacketSize=1000;vContSupported+");
    script_exchange(s, "QStartNoAckMode", "");
    script_exchange(s, "?", mp ? "T05thread:p01.01;" : "T05thread:01;");
    script_exchange(s, "qfThreadInfo", mp ? "mp01.01,p01.02" : "m01,02");
    script_exchange(s, "qsThreadInfo", "l");
    script_exchange(s, "vCont?", "vCont;c;C;s;S");
}

static struct rsp_conn *start(struct script *s, int timeout_ms)
{
    int fd = replay_start_text(&rep, s->buf);
    script_free(s);
    if (fd < 0)
        fail_msg("%s", rep.fail);
    struct rsp_conn *c = rsp_adopt(fd, timeout_ms, NULL);
    assert_non_null(c);
    return c;
}

static struct rsp_conn *start_stopped(struct script *s, bool mp)
{
    struct rsp_conn *c = start(s, TIMEOUT_MS);
    OK(rsp_handshake(c, E));
    assert_int_equal(rsp_multiprocess(c), mp);
    return c;
}

static void finish(struct rsp_conn *c, bool clean)
{
    rsp_close(c);
    bool ok = replay_finish(&rep);
    if (clean && !ok)
        fail_msg("replay: %s", rep.fail);
}

static void test_plain_mode_and_layout(void **state)
{
    (void)state;
    /* A 608-byte block where every register has its own value, so a wrong
     * offset or size shows. */
    uint8_t raw[608];
    uint64_t want[RSP_REG_COUNT];
    memset(raw, 0xee, sizeof raw);
    size_t off = 0;
    for (int i = 0; i < RSP_REG_COUNT; i++) {
        size_t n = (i == RSP_REG_EFLAGS ||
                    (i >= RSP_REG_CS && i <= RSP_REG_GS)) ? 4 : 8;
        uint64_t v = 0x8070605040302000ull + (uint64_t)i;
        want[i] = n == 8 ? v : (v & 0xffffffffu);
        for (size_t b = 0; b < n; b++)
            raw[off + b] = (uint8_t)(v >> (8 * b));
        off += n;
    }
    assert_int_equal(off, 236);   /* measured: st0 starts at 236 */
    char hex[2 * sizeof raw + 1];
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);

    struct script s = { 0 };
    handshake(&s, false);
    script_exchange(&s, "Hg2", "OK");
    script_exchange(&s, "g", hex);
    script_exchange(&s, "D", "OK");   /* plain 'D' without multiprocess */
    struct rsp_conn *c = start_stopped(&s, false);
    assert_int_equal(rsp_vcpu_count(c), 2);
    struct rsp_regs g;
    OK(rsp_read_regs(c, 1, &g, E));
    for (int i = 0; i < RSP_REG_COUNT; i++)
        assert_int_equal(g.r[i], want[i]);
    assert_int_equal(g.fs_base, want[RSP_REG_FS_BASE]);
    assert_int_equal(g.k_gs_base, want[RSP_REG_K_GS_BASE]);
    assert_int_equal(g.cr3, want[RSP_REG_CR3]);
    assert_int_equal(g.efer, want[RSP_REG_EFER]);
    OK(rsp_detach(c, E));
    finish(c, true);
}

static void test_no_ack_mode_accepted(void **state)
{
    (void)state;
    struct script s = { 0 };
    script_exchange(&s, "qSupported:multiprocess+;hwbreak+;xmlRegisters=i386",
                    "PacketSize=1000;multiprocess+");
    script_exchange(&s, "QStartNoAckMode", "OK");  /* that reply is acked */
    script_pkt(&s, '>', "?");
    script_pkt(&s, '<', "S05");
    script_pkt(&s, '>', "qfThreadInfo");
    script_pkt(&s, '<', "mp01.01");
    script_pkt(&s, '>', "qsThreadInfo");
    script_pkt(&s, '<', "l");
    script_pkt(&s, '>', "vCont?");
    script_pkt(&s, '<', "");
    script_pkt(&s, '>', "c");         /* no vCont: plain continue */
    script_pkt(&s, '<', "T05thread:p01.01;");
    struct rsp_conn *c = start_stopped(&s, true);
    assert_false(rsp_ack_mode(c));
    assert_int_equal(rsp_last_stop(c)->vcpu, -1);   /* S names no thread */
    struct rsp_stop st;
    OK(rsp_continue(c, E));
    assert_int_equal(rsp_wait_stop(c, &st, TIMEOUT_MS, NULL), 1);
    assert_int_equal(st.vcpu, 0);
    FAILS(rsp_step(c, 0, &st, E), "vCont;s");
    finish(c, true);
}

static void handshake_fails(struct script *s, const char *part)
{
    struct rsp_conn *c = start(s, TIMEOUT_MS);
    FAILS(rsp_handshake(c, E), part);
    finish(c, false);
}

static void test_handshake_refusals(void **state)
{
    (void)state;
    struct script s = { 0 };
    script_exchange(&s, "qSupported:multiprocess+;hwbreak+;xmlRegisters=i386",
                    "PacketSize=1000;qXfer:features:read+;multiprocess+");
    script_exchange(&s, "QStartNoAckMode", "");
    script_exchange(&s, "qXfer:features:read:target.xml:0,800",
                    "l<target><architecture>aarch64</architecture></target>");
    handshake_fails(&s, "not x86-64");

    static const char *const lists[][2] = {
        { "mp01.01,p01.01", "duplicate" },
        { "mp01.00", "bad or duplicate" },
        { "mp01.101", "bad or duplicate" },   /* beyond RSP_MAX_VCPUS */
        { "mzz", "bad or duplicate" },
        { "mp01.01;", "listing threads" },
        { "E01", "listing threads" },
    };
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        struct script t = { 0 };
        script_exchange(&t, "qSupported:multiprocess+;hwbreak+;"
                        "xmlRegisters=i386", "multiprocess+");
        script_exchange(&t, "QStartNoAckMode", "");
        script_exchange(&t, "?", "T05thread:p01.01;");
        script_exchange(&t, "qfThreadInfo", lists[i][0]);
        handshake_fails(&t, lists[i][1]);
    }

    /* A thread list that never ends is cut off. */
    struct script u = { 0 };
    script_exchange(&u, "qSupported:multiprocess+;hwbreak+;xmlRegisters=i386",
                    "multiprocess+");
    script_exchange(&u, "QStartNoAckMode", "");
    script_exchange(&u, "?", "T05thread:p01.01;");
    for (int i = 1; i <= 257; i++) {
        char m[32];
        snprintf(m, sizeof m, "mp01.%x", i);
        script_exchange(&u, i == 1 ? "qfThreadInfo" : "qsThreadInfo", m);
    }
    handshake_fails(&u, "bad or duplicate");

    struct script v = { 0 };
    script_exchange(&v, "qSupported:multiprocess+;hwbreak+;xmlRegisters=i386",
                    "multiprocess+");
    script_exchange(&v, "QStartNoAckMode", "E01");
    handshake_fails(&v, "QStartNoAckMode: GDB stub error E01");
}

static void test_error_replies(void **state)
{
    (void)state;
    char big[2 * 0x800 + 1];
    memset(big, '0', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    struct script s = { 0 };
    handshake(&s, true);
    script_exchange(&s, "Hgp1.1", "OK");
    script_exchange(&s, "g", "0011");
    script_exchange(&s, "g", "E14");
    script_exchange(&s, "g", "");
    script_exchange(&s, "m1000,800", big);
    script_exchange(&s, "m1800,800", "E14");
    script_exchange(&s, "m0,4", "001122");          /* short */
    script_exchange(&s, "m0,4", "0011zz33");        /* not hex */
    script_exchange(&s, "Z1,1000,1", "E22");
    script_exchange(&s, "Z1,1000,1", "");
    script_exchange(&s, "Z0,2000,1", "OK");
    script_exchange(&s, "Z1,3000,1", "OK");
    script_exchange(&s, "z1,3000,1", "E22");
    script_exchange(&s, "z0,2000,1", "OK");
    script_exchange(&s, "qqemu.Supported", "sstepbits;sstep");
    struct rsp_conn *c = start_stopped(&s, true);
    struct rsp_regs g;
    uint8_t buf[0x1000];
    size_t done = 99;
    FAILS(rsp_read_regs(c, 0, &g, E), "not the 608-byte");
    FAILS(rsp_read_regs(c, 0, &g, E), "reading registers: GDB stub error E14");
    FAILS(rsp_read_regs(c, 0, &g, E), "not supported");
    FAILS(rsp_read_mem(c, 0x1000, buf, sizeof buf, &done, E), "E14");
    assert_int_equal(done, 0x800);   /* the first packet made it */
    FAILS(rsp_read_mem(c, 0, buf, 4, &done, E), "unexpected reply '001122'");
    assert_int_equal(done, 0);
    FAILS(rsp_read_mem(c, 0, buf, 4, NULL, E), "unexpected reply");
    FAILS(rsp_read_mem(c, UINT64_MAX, buf, 2, NULL, E), "wraps");
    FAILS(rsp_bp_insert(c, 0x1000, RSP_BP_HW, E), "E22");
    FAILS(rsp_bp_insert(c, 0x1000, RSP_BP_HW, E), "not supported");
    assert_int_equal(rsp_bp_count(c), 0);
    OK(rsp_bp_insert(c, 0x2000, RSP_BP_SW, E));
    OK(rsp_bp_insert(c, 0x3000, RSP_BP_HW, E));
    /* One removal fails: the other is still tried, both are forgotten. */
    FAILS(rsp_bp_remove_all(c, E), "E22");
    assert_int_equal(rsp_bp_count(c), 0);
    FAILS(rsp_set_phys_mode(c, true, E), "no physical memory mode");
    finish(c, true);
}

static void test_breakpoint_table_full(void **state)
{
    (void)state;
    struct script s = { 0 };
    handshake(&s, true);
    for (int i = 0; i < RSP_MAX_BREAKPOINTS; i++) {
        char z[40];
        snprintf(z, sizeof z, "Z1,%x,1", 0x1000 + i);
        script_exchange(&s, z, "OK");
    }
    struct rsp_conn *c = start_stopped(&s, true);
    for (int i = 0; i < RSP_MAX_BREAKPOINTS; i++)
        OK(rsp_bp_insert(c, 0x1000 + (uint64_t)i, RSP_BP_HW, E));
    FAILS(rsp_bp_insert(c, 0x9999, RSP_BP_HW, E), "too many breakpoints");
    FAILS(rsp_bp_insert(c, 0x9999, (enum rsp_bp_kind)7, E), "unknown");
    finish(c, true);
}

static void test_stop_replies(void **state)
{
    (void)state;
    struct script s = { 0 };
    handshake(&s, true);
    script_pkt(&s, '>', "vCont;c");
    script_add(&s, "< +\n");
    script_pkt(&s, '<', "T05thread:p01.02;watch:0000000000000528;");
    script_add(&s, "> +\n");
    script_pkt(&s, '>', "vCont;c");
    /* The stop reply arrives in two parts, 300 ms apart. */
    script_add(&s, "< +\n< $T05thr\npause 300\n< ead:p01.02;#07\n> +\n");
    script_pkt(&s, '>', "vCont;c");
    script_add(&s, "< +\n");
    script_pkt(&s, '<', "W00;process:1");
    script_add(&s, "> +\n");
    struct rsp_conn *c = start_stopped(&s, true);
    struct rsp_stop st;
    struct rsp_regs g;
    OK(rsp_continue(c, E));
    assert_int_equal(rsp_wait_stop(c, &st, TIMEOUT_MS, NULL), 1);
    assert_int_equal(st.vcpu, 1);
    assert_true(st.watch);
    assert_int_equal(st.watch_addr, 0x528);

    OK(rsp_continue(c, E));
    /* While running, everything but interrupt/poll/wait is refused
     * without a byte going out (QEMU would drop it and stop the VM). */
    FAILS(rsp_read_regs(c, 0, &g, E), "running");
    FAILS(rsp_bp_insert(c, 1, RSP_BP_HW, E), "running");
    FAILS(rsp_read_mem(c, 0, &g, 8, NULL, E), "running");
    FAILS(rsp_detach(c, E), "running");
    FAILS(rsp_continue(c, E), "running");
    struct pollfd pfd = { .fd = rsp_fd(c), .events = POLLIN };
    assert_int_equal(poll(&pfd, 1, TIMEOUT_MS), 1);
    struct bm_err e0 = BM_ERR_INIT;
    assert_int_equal(rsp_poll_stop(c, &st, &e0), 0);   /* only a part */
    assert_true(rsp_running(c));
    assert_int_equal(poll(&pfd, 1, TIMEOUT_MS), 1);
    int r = 0;
    for (int i = 0; i < 20 && r == 0; i++) {
        struct bm_err err = BM_ERR_INIT;
        r = rsp_wait_stop(c, &st, 100, &err);
        assert_int_not_equal(r, -1);
    }
    assert_int_equal(r, 1);
    assert_int_equal(st.vcpu, 1);
    assert_false(rsp_running(c));
    FAILS(rsp_wait_stop(c, &st, 10, E), "stopped");

    OK(rsp_continue(c, E));
    assert_int_equal(rsp_wait_stop(c, &st, TIMEOUT_MS, NULL), 1);
    assert_int_equal(st.kind, RSP_STOP_EXITED);
    assert_int_equal(st.code, 0);
    assert_int_equal(st.vcpu, -1);
    finish(c, true);
}

static void test_unknown_vcpu_in_stop(void **state)
{
    (void)state;
    struct script s = { 0 };
    handshake(&s, true);
    script_pkt(&s, '>', "vCont;c");
    script_add(&s, "< +\n");
    script_pkt(&s, '<', "T05thread:p01.09;");
    script_add(&s, "> +\n");
    struct rsp_conn *c = start_stopped(&s, true);
    struct rsp_stop st;
    OK(rsp_continue(c, E));
    FAILS(rsp_wait_stop(c, &st, TIMEOUT_MS, E), "unknown vCPU 8");
    FAILS(rsp_wait_stop(c, &st, TIMEOUT_MS, E), "unusable");
    finish(c, true);
}

static void test_timeouts_and_eof(void **state)
{
    (void)state;
    struct script s = { 0 };
    handshake(&s, true);
    script_pkt(&s, '>', "Hgp1.1");
    script_add(&s, "< +\n");                /* ...and then nothing */
    struct rsp_conn *c = start_stopped(&s, true);
    struct rsp_regs g;
    rsp_set_timeout(c, 150);
    FAILS(rsp_read_regs(c, 0, &g, E), "no reply from the GDB stub to "
          "'Hgp1.1' within 150 ms");
    FAILS(rsp_read_regs(c, 0, &g, E), "unusable");
    finish(c, true);

    struct script t = { 0 };
    handshake(&t, true);
    script_exchange(&t, "Hgp1.1", "OK");
    script_pkt(&t, '>', "g");
    script_add(&t, "< +\n< $00000000\nclose\n");
    c = start_stopped(&t, true);
    FAILS(rsp_read_regs(c, 0, &g, E), "middle of a packet");
    finish(c, true);

    struct script u = { 0 };
    handshake(&u, true);
    script_pkt(&u, '>', "vCont;s:p1.2");
    script_add(&u, "< +\n");                /* a halted vCPU never steps */
    c = start_stopped(&u, true);
    rsp_set_timeout(c, 150);
    struct rsp_stop st;
    FAILS(rsp_step(c, 1, &st, E), "did not complete a single step");
    finish(c, true);
}

static void test_parse_stop(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int kind, code, vcpu;
    } good[] = {
        { "T05thread:p01.01;", RSP_STOP_SIGNAL, 5, 0 },
        { "T05thread:02;", RSP_STOP_SIGNAL, 5, 1 },
        { "T02thread:p01.02", RSP_STOP_SIGNAL, 2, 1 },   /* no final ';' */
        { "T05hwbreak:;thread:p1.1;core:0;06:0000;", RSP_STOP_SIGNAL, 5, 0 },
        { "T05", RSP_STOP_SIGNAL, 5, -1 },
        { "S11", RSP_STOP_SIGNAL, 0x11, -1 },
        { "W00", RSP_STOP_EXITED, 0, -1 },
        { "W01;process:1", RSP_STOP_EXITED, 1, -1 },
        { "X09;process:1", RSP_STOP_KILLED, 9, -1 },
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        struct rsp_stop st;
        struct bm_err err = BM_ERR_INIT;
        if (rsp_parse_stop(good[i].in, strlen(good[i].in), &st, &err) < 0)
            fail_msg("%s: %s", good[i].in, bm_err_msg(&err));
        assert_int_equal(st.kind, good[i].kind);
        assert_int_equal(st.code, good[i].code);
        assert_int_equal(st.vcpu, good[i].vcpu);
    }
    static const char *const bad[] = {
        "", "T", "T5", "T5x", "Tzz", "Q05", "S05x", "W00x", "OK", "E22",
        "T05thread:;", "T05thread:p01.00;", "T05thread:p1.101;",
        "T05thread:p01;", "T05thread:-1;", "T05thread", "T05watch:zz;",
        "T05thread:p01.01x;", "T05watch:11111111111111111;",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct rsp_stop st;
        struct bm_err err = BM_ERR_INIT;
        if (rsp_parse_stop(bad[i], strlen(bad[i]), &st, &err) != -1)
            fail_msg("'%s' was accepted", bad[i]);
        assert_non_null(strstr(bm_err_msg(&err), "bad stop reply"));
    }
    /* Bounded by len, not by NUL: a truncated view must not be read on. */
    struct rsp_stop st;
    assert_int_equal(rsp_parse_stop("T05thread:p01.01;", 2, &st, NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_mode_and_layout),
        cmocka_unit_test(test_no_ack_mode_accepted),
        cmocka_unit_test(test_handshake_refusals),
        cmocka_unit_test(test_error_replies),
        cmocka_unit_test(test_breakpoint_table_full),
        cmocka_unit_test(test_stop_replies),
        cmocka_unit_test(test_unknown_vcpu_in_stop),
        cmocka_unit_test(test_timeouts_and_eof),
        cmocka_unit_test(test_parse_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
