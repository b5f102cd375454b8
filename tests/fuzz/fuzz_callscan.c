/* fuzz_callscan.c - the KeBugCheckEx call decoder (callscan_find_bugcheck2)
 * over fuzzed machine code.
 *
 * Input: 8 bytes little-endian virtual address of the code, then the code
 * (as read from a hostile guest's kernel image).
 */
#include "fuzz.h"
#include "win/callscan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8)
        return 0;
    uint64_t va = fuzz_le64(data);
    const uint8_t *code = data + 8;
    size_t len = size - 8;

    struct callscan_result r;
    struct bm_err err = BM_ERR_INIT;
    int rc = callscan_find_bugcheck2(code, len, va, &r, &err);
    fuzz_note("callscan", rc, &err);
    if (rc == 0) {
        FUZZ_CHECK(!err.set);
        FUZZ_CHECK(r.ncalls >= 1 && r.ncalls <= CALLSCAN_MAX_BYTES);
        FUZZ_CHECK(r.target_calls >= 1 && r.target_calls <= r.ncalls);
        /* The chosen call and the end lie in the decoded bytes, the call
         * before the end. (Prefixed forms such as 48 e8 or 66 e8 exist, so
         * the opcode byte is not checked here.) */
        size_t limit = len < CALLSCAN_MAX_BYTES ? len : CALLSCAN_MAX_BYTES;
        uint64_t call_off = r.call_va - va, end_off = r.end_va - va;
        FUZZ_CHECK(call_off < end_off);
        FUZZ_CHECK(end_off < limit);
    } else {
        FUZZ_CHECK(fuzz_err_ok(&err));
    }
    return 0;
}
