/* fuzz_qmp_conn.c - the QMP client against a fuzzed QEMU: greeting and
 * capability negotiation (qmp_adopt), then a program of typed queries and
 * HMP commands chosen by the input, then the queued events.
 *
 * The server is a thread on a socketpair that sends the input's bytes and
 * closes its sending side, so no call waits for more than EOF; everything
 * the client sends is drained.
 *
 * Input: n (1), n operation bytes (see enum op), then the server's bytes.
 * The seeds (tests/fuzz/make-corpus) replay the recorded conversations of
 * tests/unit/data/qemu/qmp-*.txt with the same calls.
 */
#include "fuzz.h"
#include "vmi/qemu/qmp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum op {
    OP_STATUS, OP_CPUS, OP_MEMDEVS, OP_IDT0, OP_IDT1, OP_IDT7, OP_NO_SUCH,
    OP_STOP, OP_CONT, OP_GDB_START, OP_GDB_STOP, OP_RAM_LAYOUT, OP_GPA_1000,
    OP_GPA_10000000, OP_EVENT, OP_COUNT
};

static bool name_ok(const char *s, size_t cap)
{
    return strnlen(s, cap) < cap;
}

static int run_op(struct qmp_conn *c, enum op op, struct bm_err *err)
{
    int r = 0;
    size_t n = 99;
    switch (op) {
    case OP_STATUS: {
        struct qmp_status st;
        r = qmp_query_status(qmp_chan(c), &st, err);
        if (r == 0)
            FUZZ_CHECK(name_ok(st.status, sizeof st.status));
        return r;
    }
    case OP_CPUS: {
        struct qmp_cpu cpus[8];
        r = qmp_query_cpus(qmp_chan(c), cpus, 8, &n, err);
        if (r == 0) {
            FUZZ_CHECK(n >= 1 && n <= 8);
            for (size_t i = 0; i < n; i++)
                FUZZ_CHECK(cpus[i].index >= 0 && cpus[i].thread_id > 0);
        }
        return r;
    }
    case OP_MEMDEVS: {
        static struct qmp_memdev devs[4];
        r = qmp_query_memdevs(qmp_chan(c), devs, 4, &n, err);
        if (r == 0) {
            FUZZ_CHECK(n <= 4);
            for (size_t i = 0; i < n; i++)
                FUZZ_CHECK(name_ok(devs[i].id, sizeof devs[i].id) &&
                           name_ok(devs[i].type, sizeof devs[i].type) &&
                           name_ok(devs[i].mem_path, sizeof devs[i].mem_path));
        }
        return r;
    }
    case OP_IDT0:
    case OP_IDT1:
    case OP_IDT7: {
        uint64_t base;
        uint32_t limit;
        int vcpu = op == OP_IDT0 ? 0 : op == OP_IDT1 ? 1 : 7;
        return qmp_idt(qmp_chan(c), vcpu, &base, &limit, err);
    }
    case OP_NO_SUCH:
    case OP_STOP:
    case OP_CONT: {
        json_object *ret = NULL;
        const char *cmd = op == OP_NO_SUCH ? "bm-no-such-command"
                          : op == OP_STOP ? "stop" : "cont";
        r = qmp_execute(c, cmd, NULL, &ret, err);
        json_object_put(ret);
        return r;
    }
    case OP_GDB_START:
        return qmp_gdbserver_start(qmp_chan(c), "gdb.sock", err);
    case OP_GDB_STOP:
        return qmp_gdbserver_stop(qmp_chan(c), err);
    case OP_RAM_LAYOUT: {
        struct qmp_ram_range ranges[8];
        r = qmp_ram_layout(qmp_chan(c), ranges, 8, &n, err);
        if (r == 0) {
            FUZZ_CHECK(n >= 1 && n <= 8);
            for (size_t i = 0; i < n; i++)
                FUZZ_CHECK(ranges[i].gpa_start < ranges[i].gpa_end &&
                           name_ok(ranges[i].block, QMP_NAME_MAX));
        }
        return r;
    }
    case OP_GPA_1000:
    case OP_GPA_10000000: {
        uint64_t hva;
        char block[QMP_NAME_MAX];
        r = qmp_gpa2hva(qmp_chan(c), op == OP_GPA_1000 ? 0x1000 : 0x10000000, &hva,
                        block, err);
        if (r == 0)
            FUZZ_CHECK(name_ok(block, QMP_NAME_MAX));
        return r;
    }
    case OP_EVENT: {
        json_object *ev = NULL;
        r = qmp_next_event(c, 0, &ev, err);
        if (r == 1)
            FUZZ_CHECK(json_object_is_type(ev, json_type_object));
        json_object_put(ev);
        return r < 0 ? -1 : 0;
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
    struct qmp_conn *c = qmp_adopt(fd, 4000, &err);
    fuzz_note("adopt", c ? 0 : -1, &err);
    if (c == NULL) {
        FUZZ_CHECK(fuzz_err_ok(&err));  /* qmp_adopt closed fd */
        fuzz_peer_finish(&peer);
        return 0;
    }
    int major, minor, micro;
    qmp_version(c, &major, &minor, &micro);
    for (size_t i = 0; i < nops; i++) {
        struct bm_err oerr = BM_ERR_INIT;
        int rc = run_op(c, (enum op)(ops[i] % OP_COUNT), &oerr);
        char step[16];
        snprintf(step, sizeof step, "op %u", ops[i] % OP_COUNT);
        fuzz_note(step, rc, &oerr);
        if (rc < 0)
            FUZZ_CHECK(fuzz_err_ok(&oerr));
    }
    /* Drain the event queue: bounded, never more than it holds. */
    for (int i = 0; i <= QMP_EVENT_QUEUE; i++) {
        json_object *ev = NULL;
        struct bm_err eerr = BM_ERR_INIT;
        int r = qmp_next_event(c, 0, &ev, &eerr);
        json_object_put(ev);
        if (r <= 0)
            break;
    }
    qmp_close(c);
    fuzz_peer_finish(&peer);
    return 0;
}
