/* callscan.c - see callscan.h. Decoding is capstone's; this file only
 * applies the rule to its output. */
#include "win/callscan.h"

#include "win/csapi.h"

#include <inttypes.h>
#include <stdbool.h>
#include <string.h>

#define X86_MAX_INSN 15

/* Instructions after which KeBugCheckEx's straight-line code cannot go on. */
static bool ends_function(const cs_insn *insn, uint64_t at)
{
    switch (insn->id) {
    case X86_INS_RET:
    case X86_INS_RETF:
    case X86_INS_RETFQ:
    case X86_INS_INT3:
    case X86_INS_HLT:
    case X86_INS_UD2:
        return true;
    case X86_INS_JMP: {
        const cs_x86 *x = &insn->detail->x86;
        return x->op_count == 1 && x->operands[0].type == X86_OP_IMM &&
               (uint64_t)x->operands[0].imm == at;       /* jmp $ */
    }
    default:
        return false;
    }
}

/* The target of a direct `call rel32`, or false for any other instruction
 * (indirect calls through registers or memory, e.g. guard dispatch). */
static bool direct_call_target(const cs_insn *insn, uint64_t *target)
{
    if (insn->id != X86_INS_CALL)
        return false;
    const cs_x86 *x = &insn->detail->x86;
    if (x->opcode[0] != 0xe8 || x->op_count != 1 || x->operands[0].type != X86_OP_IMM)
        return false;
    *target = (uint64_t)x->operands[0].imm;
    return true;
}

int callscan_find_bugcheck2(const uint8_t *code, size_t len, uint64_t va,
                            struct callscan_result *out, struct bm_err *err)
{
    memset(out, 0, sizeof *out);
    size_t limit = len < CALLSCAN_MAX_BYTES ? len : CALLSCAN_MAX_BYTES;
    const struct cs_api *cs = cs_api(err);
    if (cs == NULL) {
        bm_err_prefix(err, "KeBugCheckEx scan");
        return -1;
    }
    csh h;
    if (cs->cs_open(CS_ARCH_X86, CS_MODE_64, &h) != CS_ERR_OK)
        return bm_err_set(err, "KeBugCheckEx scan: capstone could not start");
    cs->cs_option(h, CS_OPT_DETAIL, CS_OPT_ON);
    cs_insn *insn = cs->cs_malloc(h);
    if (insn == NULL) {
        cs->cs_close(&h);
        return bm_err_set(err, "KeBugCheckEx scan: out of memory");
    }

    /* Targets seen, in order. Every instruction is at least one byte, so
     * there are fewer calls than bytes decoded. */
    uint64_t targets[CALLSCAN_MAX_BYTES];
    uint64_t call_vas[CALLSCAN_MAX_BYTES];
    unsigned n = 0;
    const uint8_t *p = code;
    size_t left = limit;
    uint64_t addr = va;
    int rc = -1;
    bool ended = false;

    while (left > 0) {
        uint64_t at = addr;
        if (!cs->cs_disasm_iter(h, &p, &left, &addr, insn)) {
            size_t off = (size_t)(at - va);
            if (left >= X86_MAX_INSN)
                bm_err_set(err, "KeBugCheckEx at 0x%" PRIx64 ": undecodable "
                           "instruction at +0x%zx", va, off);
            else if (len > limit)
                bm_err_set(err, "KeBugCheckEx at 0x%" PRIx64 ": no end of function "
                           "within %d bytes", va, CALLSCAN_MAX_BYTES);
            else
                bm_err_set(err, "KeBugCheckEx at 0x%" PRIx64 ": code ends inside "
                           "an instruction at +0x%zx (only %zu bytes given)",
                           va, off, len);
            goto out;
        }
        uint64_t target;
        if (direct_call_target(insn, &target)) {
            /* `call $+5` reads RIP; it is not a callee. */
            if (target != addr) {
                targets[n] = target;
                call_vas[n++] = at;
            }
        } else if (ends_function(insn, at)) {
            out->end_va = at;
            ended = true;
            break;
        }
    }
    if (!ended) {
        bm_err_set(err, "KeBugCheckEx at 0x%" PRIx64 ": no end of function (ret or "
                   "int3) within %zu bytes", va, limit);
        goto out;
    }
    if (n == 0) {
        bm_err_set(err, "KeBugCheckEx at 0x%" PRIx64 ": no direct call before its end "
                   "at 0x%" PRIx64 ", so KeBugCheck2 cannot be found; give a symbol "
                   "profile (-r)", va, out->end_va);
        goto out;
    }
    out->target = targets[n - 1];
    out->call_va = call_vas[n - 1];
    out->ncalls = n;
    for (unsigned i = 0; i < n; i++)
        out->target_calls += targets[i] == out->target;
    rc = 0;
out:
    cs->cs_free(insn, 1);
    cs->cs_close(&h);
    return rc;
}
