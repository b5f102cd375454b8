/* kdbg.c - see kdbg.h. */
#include "win/kdbg.h"

#include <inttypes.h>
#include <string.h>

static uint64_t rol64(uint64_t v, unsigned n)
{
    n &= 63;
    return n == 0 ? v : (v << n) | (v >> (64 - n));
}

static uint64_t ror64(uint64_t v, unsigned n)
{
    n &= 63;
    return n == 0 ? v : (v >> n) | (v << (64 - n));
}

uint64_t win_kdbg_decode_qword(const struct win_kdbg_key *k, uint64_t v)
{
    v = rol64(v ^ k->wait_never, (unsigned)k->wait_never);
    return __builtin_bswap64(v ^ k->flag_va) ^ k->wait_always;
}

uint64_t win_kdbg_encode_qword(const struct win_kdbg_key *k, uint64_t v)
{
    return k->wait_never ^ ror64(k->flag_va ^ __builtin_bswap64(k->wait_always ^ v),
                                 (unsigned)k->wait_never);
}

static uint64_t get64(const uint8_t *b, size_t off)
{
    uint64_t v;
    memcpy(&v, b + off, 8);
    return v;
}

static void decode(const struct win_kdbg_key *key, uint8_t *b, size_t n)
{
    for (size_t off = 0; key != NULL && off + 8 <= n; off += 8) {
        uint64_t v = win_kdbg_decode_qword(key, get64(b, off));
        memcpy(b + off, &v, 8);
    }
}

int win_kdbg_read(paging_read_fn read, void *ctx, uint64_t va, const struct win_kdbg_key *key,
                  uint64_t kernel_base, struct win_kdbg *out, struct bm_err *err)
{
    memset(out, 0, sizeof *out);
    out->va = va;
    out->was_encoded = key != NULL;
    /* The header first (0x18 bytes: List, OwnerTag, Size), then KernBase. */
    uint8_t *b = out->bytes;
    if (read(ctx, va, b, 0x20, err) < 0) {
        bm_err_prefix(err, "reading KdDebuggerDataBlock at %#" PRIx64, va);
        return -1;
    }
    decode(key, b, 0x20);
    uint32_t tag, size;
    memcpy(&tag, b + WIN_KDBG_OWNER_TAG, 4);
    memcpy(&size, b + WIN_KDBG_SIZE, 4);
    if (tag != WIN_KDBG_TAG)
        return bm_err_set(err, "KdDebuggerDataBlock at %#" PRIx64 " has tag 0x%08" PRIx32
                          " %s, not 'KDBG'", va, tag, key ? "once decoded" : "(stored plain)");
    if (size < WIN_KDBG_MIN_SIZE || size > WIN_KDBG_MAX_SIZE || size % 8 != 0)
        return bm_err_set(err, "KdDebuggerDataBlock at %#" PRIx64 " says its size is %#" PRIx32
                          " (expected a multiple of 8 in %#x..%#x)", va, size, WIN_KDBG_MIN_SIZE,
                          WIN_KDBG_MAX_SIZE);
    if (read(ctx, va, b, size, err) < 0) {
        bm_err_prefix(err, "reading the %#" PRIx32 " bytes of KdDebuggerDataBlock at %#" PRIx64,
                      size, va);
        return -1;
    }
    decode(key, b, size);
    out->size = size;
    out->kern_base = get64(b, WIN_KDBG_KERN_BASE);
    if (out->kern_base != kernel_base)
        return bm_err_set(err, "KdDebuggerDataBlock at %#" PRIx64 " gives KernBase %#" PRIx64
                          ", not the kernel's %#" PRIx64, va, out->kern_base, kernel_base);
    out->ps_loaded_module_list = get64(b, WIN_KDBG_PS_LOADED_MODULE_LIST);
    out->ps_active_process_head = get64(b, WIN_KDBG_PS_ACTIVE_PROCESS_HEAD);
    out->ki_bugcheck_data = get64(b, WIN_KDBG_KI_BUGCHECK_DATA);
    out->mm_pfn_database = get64(b, WIN_KDBG_MM_PFN_DATABASE);
    out->ki_processor_block = get64(b, WIN_KDBG_KI_PROCESSOR_BLOCK);
    memcpy(&out->offset_prcb_context, b + WIN_KDBG_OFFSET_PRCB_CONTEXT, 2);
    memcpy(&out->offset_prcb_proc_state_context, b + WIN_KDBG_OFFSET_PRCB_PROC_STATE_CONTEXT, 2);
    return 0;
}
