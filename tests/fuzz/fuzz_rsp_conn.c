/* fuzz_rsp_conn.c - the whole GDB stub client (rsp_conn) against a fuzzed
 * stub: handshake (qSupported, QStartNoAckMode, target.xml, '?', thread
 * list, vCont?), then a program of client calls chosen by the input.
 *
 * The stub is a thread on a socketpair that sends the input's bytes and
 * closes its sending side, so no call waits for more than EOF; everything
 * the client sends is drained.
 *
 * Input: n (1), n operation bytes (see ops[]), then the stub's bytes. The
 * seeds (tests/fuzz/make-corpus) replay the recorded conversations of
 * tests/unit/data/qemu/rsp-*.txt with the same calls.
 */
#include "fuzz.h"
#include "vmi/qemu/rsp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum op {
    OP_REGS0, OP_REGS1, OP_REG_1_CR0, OP_REG_1_CS, OP_REG_0_RIP, OP_DETACH,
    OP_PHYS1, OP_PHYS0, OP_MEM_20_4, OP_MEM_0_40, OP_MEM_F0000_900,
    OP_WRITE_500000, OP_MEM_500000, OP_BP_HW, OP_BP_HW_DEL, OP_BP_SW,
    OP_BP_SW_DEL, OP_CONT, OP_WAIT, OP_INTR, OP_STEP0, OP_POLL, OP_BP_ALL_DEL,
    OP_REG_BAD, OP_BATCH_RUN0, OP_BATCH_ALL, OP_BATCH, OP_COUNT
};

static void check_state(struct rsp_conn *c)
{
    FUZZ_CHECK(rsp_vcpu_count(c) >= 0 && rsp_vcpu_count(c) <= RSP_MAX_VCPUS);
    FUZZ_CHECK(rsp_bp_count(c) <= RSP_MAX_BREAKPOINTS);
    const struct rsp_stop *s = rsp_last_stop(c);
    FUZZ_CHECK(s->vcpu >= -1 && s->vcpu < RSP_MAX_VCPUS);
    FUZZ_CHECK(s->code >= 0 && s->code <= 255);
}

static int run_op(struct rsp_conn *c, enum op op, struct bm_err *err)
{
    struct rsp_regs regs;
    struct rsp_stop st;
    uint64_t v;
    uint8_t buf[0x900];
    size_t done = 12345;
    int r;
    switch (op) {
    case OP_REGS0:       return rsp_read_regs(c, 0, &regs, err);
    case OP_REGS1:       return rsp_read_regs(c, 1, &regs, err);
    case OP_REG_1_CR0:   return rsp_read_reg(c, 1, RSP_REG_CR0, &v, err);
    case OP_REG_1_CS:    return rsp_read_reg(c, 1, RSP_REG_CS, &v, err);
    case OP_REG_0_RIP:   return rsp_read_reg(c, 0, RSP_REG_RIP, &v, err);
    case OP_REG_BAD:     return rsp_read_reg(c, 0, 0x40, &v, err);
    case OP_DETACH:      return rsp_detach(c, err);
    case OP_PHYS1:       return rsp_set_phys_mode(c, true, err);
    case OP_PHYS0:       return rsp_set_phys_mode(c, false, err);
    case OP_MEM_20_4:
        r = rsp_read_mem(c, 0x20, buf, 4, &done, err);
        FUZZ_CHECK(r == 0 ? done == 4 : done < 4);
        return r;
    case OP_MEM_0_40:
        r = rsp_read_mem(c, 0, buf, 0x40, &done, err);
        FUZZ_CHECK(r == 0 ? done == 0x40 : done < 0x40);
        return r;
    case OP_MEM_F0000_900:
        r = rsp_read_mem(c, 0xf0000, buf, 0x900, &done, err);
        FUZZ_CHECK(r == 0 ? done == 0x900 : done < 0x900);
        return r;
    case OP_MEM_500000:
        r = rsp_read_mem(c, 0x500000, buf, 0x10, &done, err);
        FUZZ_CHECK(r == 0 ? done == 0x10 : done < 0x10);
        return r;
    case OP_WRITE_500000:
        for (int i = 0; i < 16; i++)
            buf[i] = (uint8_t)(0xa0 + i);
        r = rsp_write_mem(c, 0x500000, buf, 16, &done, err);
        FUZZ_CHECK(r == 0 ? done == 16 : done < 16);
        return r;
    case OP_BP_HW:       return rsp_bp_insert(c, 0xffea5, RSP_BP_HW, err);
    case OP_BP_HW_DEL:   return rsp_bp_remove(c, 0xffea5, RSP_BP_HW, err);
    case OP_BP_SW:       return rsp_bp_insert(c, 0xffea5, RSP_BP_SW, err);
    case OP_BP_SW_DEL:   return rsp_bp_remove(c, 0xffea5, RSP_BP_SW, err);
    case OP_BP_ALL_DEL:  return rsp_bp_remove_all(c, err);
    case OP_CONT:        return rsp_continue(c, err);
    case OP_INTR:        return rsp_interrupt(c, err);
    case OP_STEP0:       return rsp_step(c, 0, &st, err);
    case OP_WAIT:
    case OP_POLL:
        /* The stub has closed or will: a stop or an error, never 0 after
         * EOF. Poll may see "nothing yet" before the bytes arrive. */
        r = rsp_wait_stop(c, &st, op == OP_WAIT ? 4000 : 0, err);
        if (r == 1)
            FUZZ_CHECK(st.vcpu >= -1 && st.vcpu < RSP_MAX_VCPUS);
        return r < 0 ? -1 : 0;
    case OP_BATCH_RUN0:
    case OP_BATCH_ALL:
    case OP_BATCH: {
        /* run_to's and resume's batches: replies read without acks when
         * the vCPUs run on. */
        static const struct rsp_bp_op b[3] = {
            { 0xffea5, RSP_BP_HW, false }, { 0xffeb0, RSP_BP_HW, true }, { 0xffec0, RSP_BP_HW, true },
        };
        size_t before = rsp_bp_count(c);
        bool was_running = rsp_running(c);
        r = rsp_bp_batch(c, b, 3, op == OP_BATCH_RUN0 ? 0 : op == OP_BATCH_ALL ? RSP_RESUME_ALL
                                                      : RSP_RESUME_NONE, err);
        FUZZ_CHECK(rsp_bp_count(c) <= before + 2);
        if (op == OP_BATCH)
            FUZZ_CHECK(rsp_running(c) == was_running);  /* no resume asked for */
        return r;
    }
    case OP_COUNT:
        break;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t nops = data[0] % 32;
    if (size < 1 + nops)
        return 0;
    const uint8_t *ops = data + 1;
    struct fuzz_peer peer;
    int fd = fuzz_peer_start(&peer, data + 1 + nops, size - 1 - nops);
    struct bm_err err = BM_ERR_INIT;
    struct rsp_conn *c = rsp_adopt(fd, 4000, &err);
    FUZZ_CHECK(c != NULL);

    struct bm_err herr = BM_ERR_INIT;
    int hrc = rsp_handshake(c, &herr);
    fuzz_note("handshake", hrc, &herr);
    if (hrc == 0) {
        FUZZ_CHECK(rsp_vcpu_count(c) >= 1);
        FUZZ_CHECK(!rsp_running(c));
    } else {
        FUZZ_CHECK(fuzz_err_ok(&herr));
    }
    check_state(c);
    for (size_t i = 0; i < nops; i++) {
        struct bm_err oerr = BM_ERR_INIT;
        int rc = run_op(c, (enum op)(ops[i] % OP_COUNT), &oerr);
        char step[16];
        snprintf(step, sizeof step, "op %u", ops[i] % OP_COUNT);
        fuzz_note(step, rc, &oerr);
        if (rc < 0)
            FUZZ_CHECK(fuzz_err_ok(&oerr));
        check_state(c);
    }
    rsp_close(c);       /* closes fd: the stub thread ends */
    fuzz_peer_finish(&peer);
    return 0;
}
