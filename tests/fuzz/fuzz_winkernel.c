/* fuzz_winkernel.c - kernel discovery (winkernel_find, then
 * winkernel_find_bugcheck2) over fuzzed guest memory.
 *
 * Input: 4 bytes hole mask (bit i: page i unreadable), 4 bytes offset of
 * the kernel pointer (an IDT handler) from the start of the memory, 1 byte
 * scan bound in pages, then the memory, mapped at a kernel address.
 */
#include "fuzz.h"
#include "win/kernel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BASE UINT64_C(0xfffff80075200000)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 9)
        return 0;
    struct fuzz_mem mem = { .data = data + 9, .size = size - 9, .base = BASE,
                            .holes = fuzz_le32(data) };
    /* The pointer may lie past the memory (the scan then starts in holes). */
    uint64_t ptr = BASE + fuzz_le32(data + 4) % (mem.size + 0x4000);
    uint64_t max_scan = ((uint64_t)data[8] + 1) * 0x1000;

    struct winkernel k;
    struct bm_err err = BM_ERR_INIT;
    int rc = winkernel_find(fuzz_mem_read, &mem, ptr, max_scan, &k, &err);
    fuzz_note("find", rc, &err);
    if (rc < 0) {
        FUZZ_CHECK(fuzz_err_ok(&err));
        FUZZ_CHECK(k.pages_scanned <= max_scan / 0x1000);
        return 0;
    }
    FUZZ_CHECK(k.pages_scanned <= max_scan / 0x1000);
    FUZZ_CHECK(k.base % 0x1000 == 0 && k.base <= ptr);
    FUZZ_CHECK(ptr - k.base < k.size && k.size == k.img.size_of_image);
    FUZZ_CHECK(k.base >= BASE && k.base - BASE < mem.size);
    FUZZ_CHECK(strnlen(k.name, sizeof k.name) <= PE_MAX_NAME_LEN);
    if (k.has_rsds)
        FUZZ_CHECK(k.rsds.pdb_name[0] != '\0');
    else
        FUZZ_CHECK(k.rsds_error[0] != '\0');

    struct winkernel_bugcheck bc;
    struct bm_err e2 = BM_ERR_INIT;
    rc = winkernel_find_bugcheck2(&k, &bc, &e2);
    fuzz_note("find_bugcheck2", rc, &e2);
    if (rc == 0) {
        FUZZ_CHECK(bc.kebugcheckex - k.base < k.size);
        FUZZ_CHECK(bc.kebugcheck2 - k.base < k.size);
        const struct pe_section *s =
            pe_section_at(&k.img, (uint32_t)(bc.kebugcheck2 - k.base));
        FUZZ_CHECK(s != NULL && (s->characteristics & PE_SCN_MEM_EXECUTE));
        FUZZ_CHECK(bc.scan.target == bc.kebugcheck2);
    } else {
        FUZZ_CHECK(fuzz_err_ok(&e2));
    }
    return 0;
}
