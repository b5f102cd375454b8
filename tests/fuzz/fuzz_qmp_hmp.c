/* fuzz_qmp_hmp.c - parsers of HMP text that QEMU returns through QMP
 * (qmp_parse_mtree, qmp_parse_gpa2hva, qmp_parse_idt, qmp_parse_chardev_path).
 *
 * Input: 1 byte table capacity, then the text (cut at its first NUL, as it
 * arrives in a JSON string).
 */
#include "fuzz.h"
#include "vmi/qemu/qmp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t cap = 1 + data[0] % 32;
    char *text = malloc(size);
    FUZZ_CHECK(text != NULL);
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';

    struct qmp_ram_range ranges[32];
    size_t n = 0;
    struct bm_err err = BM_ERR_INIT;
    if (qmp_parse_mtree(text, ranges, cap, &n, &err) == 0) {
        FUZZ_CHECK(n >= 1 && n <= cap);
        for (size_t i = 0; i < n; i++) {
            FUZZ_CHECK(ranges[i].gpa_start < ranges[i].gpa_end);
            size_t bl = strnlen(ranges[i].block, QMP_NAME_MAX);
            FUZZ_CHECK(bl > 0 && bl < QMP_NAME_MAX);
        }
    } else {
        FUZZ_CHECK(fuzz_err_ok(&err));
    }

    static const uint64_t gpas[] = { 0x1000, 0x10000000, 0 };
    for (size_t i = 0; i < sizeof gpas / sizeof gpas[0]; i++) {
        uint64_t hva = 0;
        char block[QMP_NAME_MAX];
        struct bm_err e2 = BM_ERR_INIT;
        if (qmp_parse_gpa2hva(text, gpas[i], &hva, block, &e2) == 0) {
            size_t bl = strnlen(block, QMP_NAME_MAX);
            FUZZ_CHECK(bl > 0 && bl < QMP_NAME_MAX);
        } else {
            FUZZ_CHECK(fuzz_err_ok(&e2));
        }
        struct bm_err e3 = BM_ERR_INIT;
        if (qmp_parse_gpa2hva(text, gpas[i], &hva, NULL, &e3) != 0)
            FUZZ_CHECK(fuzz_err_ok(&e3));
    }

    uint64_t base;
    uint32_t limit;
    struct bm_err e4 = BM_ERR_INIT;
    if (qmp_parse_idt(text, &base, &limit, &e4) != 0)
        FUZZ_CHECK(fuzz_err_ok(&e4));

    /* libvirt's monitor path: an absolute path, no control byte, fits. */
    char path[48];
    struct bm_err e5 = BM_ERR_INIT;
    if (qmp_parse_chardev_path(text, "charmonitor", path, 1 + data[0] % sizeof path, &e5) == 0) {
        size_t pl = strnlen(path, sizeof path);
        FUZZ_CHECK(pl > 0 && pl < 1 + data[0] % sizeof path && path[0] == '/');
        for (size_t i = 0; i < pl; i++)
            FUZZ_CHECK((unsigned char)path[i] >= 0x20 && path[i] != 0x7f && path[i] != ',');
    } else {
        FUZZ_CHECK(fuzz_err_ok(&e5));
    }
    free(text);
    return 0;
}
