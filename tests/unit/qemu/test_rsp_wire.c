/* test_rsp_wire.c - GDB packet framing against hostile and unusual bytes:
 * run-length and escapes, bad checksums, NAKs, garbage, oversized and
 * truncated packets, stray stop replies. Each must give the right payload
 * or an error - never a crash, never a hang. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "replay.h"
#include "vmi/qemu/rsp_wire.h"

#define TIMEOUT_MS 2000

static struct replay rep;   /* static: outlives a failed test's frame */
static struct rsp_wire *w;  /* 200 KB: not on the stack */

static void start(const char *text)
{
    if (w == NULL)
        w = malloc(sizeof *w);
    assert_non_null(w);
    int fd = replay_start_text(&rep, text);
    if (fd < 0)
        fail_msg("%s", rep.fail);
    rsp_wire_init(w, fd);
}

static void start_script(struct script *s)
{
    start(s->buf);
    script_free(s);
}

/* Close the client; `clean` says whether the script must have run exactly. */
static void finish(bool clean)
{
    close(w->fd);
    bool ok = replay_finish(&rep);
    if (clean && !ok)
        fail_msg("replay: %s", rep.fail);
}

static void recv_ok(const char *want)
{
    struct bm_err err = BM_ERR_INIT;
    int r = rsp_wire_recv(w, TIMEOUT_MS, &err);
    if (r != 1)
        fail_msg("recv %d: %s", r, bm_err_msg(&err));
    assert_int_equal(w->len, strlen(want));
    assert_memory_equal(w->pkt, want, w->len);
}

static void recv_fails(const char *msg_part)
{
    struct bm_err err = BM_ERR_INIT;
    assert_int_equal(rsp_wire_recv(w, TIMEOUT_MS, &err), -1);
    if (strstr(bm_err_msg(&err), msg_part) == NULL)
        fail_msg("error '%s' lacks '%s'", bm_err_msg(&err), msg_part);
    assert_true(w->broken);
}

static void test_run_length_and_escapes(void **state)
{
    (void)state;
    struct script s = { 0 };
    script_pkt(&s, '<', "0* ");        /* '0' and 32-29 = 3 more */
    script_add(&s, "> +\n");
    script_pkt(&s, '<', "a}]b");       /* ']' ^ 0x20 = '}' */
    script_add(&s, "> +\n");
    script_pkt(&s, '<', "x*\"y");      /* '"' = 34: 5 more */
    script_add(&s, "> +\n");
    script_pkt(&s, '<', "}\x03*!");    /* escaped '#' repeated 4 more */
    script_add(&s, "> +\n");
    start_script(&s);
    recv_ok("0000");
    recv_ok("a}b");
    recv_ok("xxxxxxy");
    recv_ok("#####");
    finish(true);
}

static void test_bad_checksum_is_naked(void **state)
{
    (void)state;
    start("< $S05#00\n> -\n< $S05#b8\n> +\n");
    recv_ok("S05");
    finish(true);
}

static void test_bad_checksum_repeated(void **state)
{
    (void)state;
    start("< $S05#00\n> -\n< $S05#01\n> -\n< $S05#02\n> -\n< $S05#03\n");
    recv_fails("bad checksum");
    finish(true);
}

static void test_oversized_packet(void **state)
{
    (void)state;
    size_t n = RSP_WIRE_MAX + 100;
    char *text = malloc(n + 16);
    assert_non_null(text);
    memcpy(text, "< $", 3);
    memset(text + 3, 'a', n);
    strcpy(text + 3 + n, "\n");
    start(text);
    free(text);
    recv_fails("exceeds");
    finish(false);    /* the server may still be writing: not checked */
}

static void test_run_length_overflows_cap(void **state)
{
    (void)state;
    /* 700 repeats of 97 bytes each: RLE must not write past the buffer. */
    struct script s = { 0 };
    script_add(&s, "< $a");
    for (int i = 0; i < 700; i++)
        script_add(&s, "*~");
    script_add(&s, "#00\n");
    start_script(&s);
    recv_fails("exceeds");
    finish(false);
}

static void test_garbage(void **state)
{
    (void)state;
    start("< hello\n");
    recv_fails("unexpected byte 0x68");
    finish(true);
    /* A QMP greeting is what a wrong socket path would show. */
    start("< {\"QMP\": {}}\\r\\n\n");
    recv_fails("is this a QEMU gdbserver socket");
    finish(true);
}

static void test_bad_framing(void **state)
{
    (void)state;
    static const struct { const char *text, *msg; } cases[] = {
        { "< $*a#00\n", "starts with a run-length" },
        { "< $a*\\x01#00\n", "invalid run-length count 0x01" },
        { "< $a*##00\n", "invalid run-length count 0x23" },
        { "< $a*\\x7f#00\n", "invalid run-length count 0x7f" },
        { "< $OK#zz\n", "non-hex checksum" },
        { "< $O$K#00\n", "inside a packet" },
        { "< $T05thr\nclose\n", "in the middle of a packet" },
        { "close\n", "closed the connection" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        start(cases[i].text);
        recv_fails(cases[i].msg);
        finish(true);
    }
}

static void test_truncated_then_silent(void **state)
{
    (void)state;
    start("< $T05thr\n");
    struct bm_err err = BM_ERR_INIT;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(rsp_wire_recv(w, 150, &err), 0);   /* timeout */
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms >= 140 && ms < 1500);
    assert_false(w->broken);
    finish(true);
}

static void test_send_escapes(void **state)
{
    (void)state;
    /* '#' '$' '}' '*' go out as '}' and the byte ^ 0x20; the checksum
     * covers the escaped bytes. */
    const char raw[] = "a}\x03" "b}\x04" "c}]" "d}\x0a" "e";
    unsigned sum = 0;
    for (const char *p = raw; *p; p++)
        sum += (unsigned char)*p;
    struct script s = { 0 };
    script_add(&s, "> $a}\\x03b}\\x04c}]d}\\x0ae#%02x\n< +\n", sum & 0xff);
    start_script(&s);
    struct bm_err err = BM_ERR_INIT;
    assert_int_equal(rsp_wire_send(w, "a#b$c}d*e", 9, TIMEOUT_MS, &err), 0);
    finish(true);
}

static void test_send_nak(void **state)
{
    (void)state;
    struct bm_err err = BM_ERR_INIT;
    start("> $g#67\n< -\n> $g#67\n< +\n");
    assert_int_equal(rsp_wire_send(w, "g", 1, TIMEOUT_MS, &err), 0);
    finish(true);

    start("> $g#67\n< -\n> $g#67\n< -\n> $g#67\n< -\n> $g#67\n< -\n");
    assert_int_equal(rsp_wire_send(w, "g", 1, TIMEOUT_MS, &err), -1);
    assert_non_null(strstr(bm_err_msg(&err), "rejected a packet 4 times"));
    finish(true);
}

static void test_stray_stop_before_ack(void **state)
{
    (void)state;
    struct bm_err err = BM_ERR_INIT;
    /* QEMU stops a running VM when a client connects and says so first. */
    start("> $?#3f\n< $T02thread:01;#04\n> +\n< +\n");
    assert_int_equal(rsp_wire_send(w, "?", 1, TIMEOUT_MS, &err), 0);
    assert_true(w->have_stray);
    assert_string_equal(w->stray, "T02thread:01;");
    finish(true);

    start("> $?#3f\n< $OK#9a\n> +\n");
    assert_int_equal(rsp_wire_send(w, "?", 1, TIMEOUT_MS, &err), -1);
    assert_non_null(strstr(bm_err_msg(&err), "before its acknowledgement"));
    finish(true);
}

static void test_send_no_ack(void **state)
{
    (void)state;
    struct bm_err err = BM_ERR_INIT;
    start("> $?#3f\n");
    assert_int_equal(rsp_wire_send(w, "?", 1, 150, &err), -1);
    assert_non_null(strstr(bm_err_msg(&err), "no acknowledgement"));
    assert_true(w->broken);
    /* Once broken, nothing more goes out. */
    assert_int_equal(rsp_wire_send(w, "?", 1, 150, NULL), -1);
    finish(true);

    bm_err_clear(&err);
    start("> $?#3f\nclose\n");
    assert_int_equal(rsp_wire_send(w, "?", 1, TIMEOUT_MS, &err), -1);
    assert_non_null(strstr(bm_err_msg(&err), "closed"));
    finish(true);
}

static void test_no_ack_mode(void **state)
{
    (void)state;
    struct bm_err err = BM_ERR_INIT;
    start("> $g#67\n< $OK#9a\n< $S05#00\n");
    w->ack_mode = false;
    assert_int_equal(rsp_wire_send(w, "g", 1, TIMEOUT_MS, &err), 0);
    recv_ok("OK");
    /* Without acks a bad checksum cannot be retransmitted: error. */
    recv_fails("bad checksum");
    finish(true);
}

static void test_snippet(void **state)
{
    (void)state;
    char out[12];
    assert_string_equal(rsp_wire_snippet("ab\x01", 3, out, sizeof out), "ab.");
    assert_string_equal(rsp_wire_snippet("0123456789abcdef", 16, out,
                                         sizeof out), "01234567...");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_length_and_escapes),
        cmocka_unit_test(test_bad_checksum_is_naked),
        cmocka_unit_test(test_bad_checksum_repeated),
        cmocka_unit_test(test_oversized_packet),
        cmocka_unit_test(test_run_length_overflows_cap),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_bad_framing),
        cmocka_unit_test(test_truncated_then_silent),
        cmocka_unit_test(test_send_escapes),
        cmocka_unit_test(test_send_nak),
        cmocka_unit_test(test_stray_stop_before_ack),
        cmocka_unit_test(test_send_no_ack),
        cmocka_unit_test(test_no_ack_mode),
        cmocka_unit_test(test_snippet),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(w);
    return rc;
}
