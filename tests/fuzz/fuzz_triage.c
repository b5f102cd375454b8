/* fuzz_triage.c - bsodmon's analysis (triage_analyse: the module list walk,
 * trap frame, exception and context records, process name), then what
 * KeBugCheck2 stored (winbc_read: KiBugCheckData at RVA 0x500,
 * KiBugCheckDriver at RVA 0x540; triage_final) over fuzzed guest memory,
 * with the shared tables' offsets.
 *
 * Input: 4 bytes hole mask (bit i: page i unreadable), 1 byte code selector
 * (entry i of the parameter table; past its end, the code is the next 4
 * bytes), 4 x 8 bytes P1..P4 (a value with bit 63 clear is taken as an
 * offset into the memory, so pointers land in it), then the memory, mapped
 * at the kernel base; PsLoadedModuleList is at RVA 0x100.
 */
#include "fuzz.h"
#include "plugins/bsodmon/bugcheck_params.h"
#include "plugins/bsodmon/triage.h"
#include "win/winbugcheck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BASE UINT64_C(0xfffff80000000000)
#define HDR 41

static void profile(struct win_profile *p)
{
    memset(p, 0, sizeof *p);
#define ON(f, v) do { p->f.value = (v); p->f.present = true; } while (0)
    ON(PsLoadedModuleList, 0x100);
    ON(KiBugCheckData, 0x500);
    ON(KiBugCheckDriver, 0x540);
    ON(kldr_links, 0);
    ON(kldr_dll_base, 0x30);
    ON(kldr_size_of_image, 0x40);
    ON(kldr_base_dll_name, 0x58);
    ON(list_entry_flink, 0);
    ON(unicode_string_length, 0);
    ON(unicode_string_buffer, 8);
    ON(ktrap_frame_rip, 0x168);
    ON(ktrap_frame_rsp, 0x180);
    ON(exception_record_code, 0);
    ON(exception_record_address, 0x10);
    ON(context_rip, 0xF8);
    ON(context_rsp, 0x98);
    ON(eprocess_image_file_name, 0x5A8);
    ON(eprocess_image_file_name_len, 15);
#undef ON
}

static struct winmod_list mods;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < HDR)
        return 0;
    struct fuzz_mem mem = { .data = data + HDR, .size = size - HDR, .base = BASE,
                            .holes = fuzz_le32(data) };
    size_t sel = data[4];
    uint64_t code = sel < bcp_count() ? bcp_entry(sel)->code : fuzz_le32(data + 5);
    uint64_t p[4];
    for (int i = 0; i < 4; i++) {
        p[i] = fuzz_le64(data + 9 + 8 * i);
        if (!(p[i] >> 63))
            p[i] = BASE + p[i] % (mem.size + 0x1000);
    }
    struct win_profile prof;
    profile(&prof);
    struct triage_input in = {
        .code = code, .p = { p[0], p[1], p[2], p[3] }, .prof = &prof, .kernel_base = BASE,
        .read = fuzz_mem_read, .ctx = &mem, .modules = &mods,
    };
    struct triage t;
    triage_analyse(&in, &t);

    /* Bounded: one walk of at most WINMOD_MAX entries, a few records. */
    FUZZ_CHECK(mem.reads <= WINMOD_MAX + 16);
    FUZZ_CHECK(mods.n <= WINMOD_MAX);
    FUZZ_CHECK((t.failed_reads == 0) == (t.first_error[0] == '\0'));
    if (t.has_module) {
        FUZZ_CHECK(t.has_ip && !t.module_truncated);
        FUZZ_CHECK(t.module_offset < t.module_size);
        size_t n = strnlen(t.module, sizeof t.module);
        FUZZ_CHECK(n > 0 && n <= WINMOD_NAME_MAX);
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK(t.module[i] >= 0x20 && t.module[i] < 0x7f);
    }
    /* Kept modules never overlap. */
    for (size_t i = 0; i < mods.n; i++)
        for (size_t j = i + 1; j < mods.n; j++)
            FUZZ_CHECK(mods.m[i].base + mods.m[i].size <= mods.m[j].base ||
                       mods.m[j].base + mods.m[j].size <= mods.m[i].base);
    if (t.has_bucket) {
        size_t n = strnlen(t.bucket, sizeof t.bucket);
        FUZZ_CHECK(n > 2 && n < sizeof t.bucket && memcmp(t.bucket, "0x", 2) == 0);
        FUZZ_CHECK(t.has_reported);
    }
    if (t.has_process)
        FUZZ_CHECK(t.process_len >= 1 && t.process_len <= 15);
    if (t.has_subcode) {
        const struct bcp_code *c = bcp_find(code);
        FUZZ_CHECK(c != NULL && c->subcode_param >= 0 && t.subcode == p[c->subcode_param]);
    }
    if (t.has_reported && (uint32_t)code != 0x4C && (uint32_t)code != 0xA)
        FUZZ_CHECK(t.reported == (uint32_t)code);

    /* What the kernel stored: at most four more reads, a bounded name. */
    uint64_t before = mem.reads;
    struct winbc_final f;
    struct bm_err e = BM_ERR_INIT;
    int rc = winbc_read(fuzz_mem_read, &mem, &prof, BASE, &f, &e);
    FUZZ_CHECK(mem.reads - before <= 4);
    FUZZ_CHECK(rc == 0 || e.set);
    if (rc < 0)
        return 0;
    FUZZ_CHECK(!(f.has_driver && (f.driver_failed || f.driver_truncated)));
    FUZZ_CHECK(!f.driver_truncated || f.driver_failed);
    if (f.has_driver) {
        size_t n = strnlen(f.driver, sizeof f.driver);
        FUZZ_CHECK(n > 0 && n <= WINMOD_NAME_MAX);
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK(f.driver[i] >= 0x20 && f.driver[i] < 0x7f);
    }
    FUZZ_CHECK(strnlen(f.driver_error, sizeof f.driver_error) < sizeof f.driver_error);
    triage_final(&in, &f, &t);
    if ((uint32_t)f.data[0] != 0)
        FUZZ_CHECK(t.has_reported && t.reported == (uint32_t)f.data[0] && t.reported_stored);
    FUZZ_CHECK(t.has_driver == f.has_driver);
    if (t.has_bucket) {
        size_t n = strnlen(t.bucket, sizeof t.bucket);
        FUZZ_CHECK(n > 2 && n < sizeof t.bucket && memcmp(t.bucket, "0x", 2) == 0);
    }
    return 0;
}
