/* fuzz_pe.c - PE32+ headers, export directory and CodeView (RSDS) record
 * (pe_open, pe_exports_open, pe_export_find, pe_read_rsds, pe_read_string)
 * over a fuzzed image in guest virtual memory.
 *
 * Input: 4 bytes little-endian hole mask (bit i: page i of the image cannot
 * be read, as a discarded INIT section), then the image as mapped at a
 * kernel address. Reads outside the input fail like unmapped memory.
 */
#include "fuzz.h"
#include "win/pe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BASE UINT64_C(0xfffff80012400000)

static bool is_upper_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'F')))
            return false;
    return s[n] == '\0';
}

static void check_exports(const struct pe_image *img, struct fuzz_mem *mem)
{
    struct pe_exports ex;
    struct bm_err err = BM_ERR_INIT;
    int rc = pe_exports_open(img, &ex, &err);
    fuzz_note("exports_open", rc, &err);
    if (rc < 0) {
        FUZZ_CHECK(fuzz_err_ok(&err));
        return;
    }
    FUZZ_CHECK(ex.nfunctions <= PE_MAX_NAMES && ex.nnames <= PE_MAX_NAMES);
    FUZZ_CHECK(strnlen(ex.dll_name, sizeof ex.dll_name) <= PE_MAX_NAME_LEN);
    FUZZ_CHECK((uint64_t)ex.dir_rva + ex.dir_size <= img->size_of_image);

    static const char *const names[] = {
        "KeBugCheckEx", "KeBugCheck", "A", "ntoskrnl.exe", "zzzzzzzz",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        struct pe_export x;
        struct bm_err e2 = BM_ERR_INIT;
        uint64_t reads = mem->reads;
        int rc2 = pe_export_find(img, &ex, names[i], &x, &e2);
        fuzz_note(names[i], rc2, &e2);
        if (rc2 == 0) {
            FUZZ_CHECK(x.rva != 0 && x.rva < img->size_of_image);
            FUZZ_CHECK(x.forwarder == (x.rva >= ex.dir_rva &&
                                       x.rva - ex.dir_rva < ex.dir_size));
            FUZZ_CHECK(strnlen(x.forward, sizeof x.forward) <= PE_MAX_NAME_LEN);
        } else {
            FUZZ_CHECK(fuzz_err_ok(&e2));
        }
        /* Binary search plus one linear pass over the name pointers read
         * in blocks, and each name compared a page piece at a time: the
         * reads stay linear in the name count. */
        FUZZ_CHECK(mem->reads - reads <= 64 + 4 * (uint64_t)ex.nnames +
                   ex.nnames / 1024 + 8);
    }
    /* A name longer than any export, and an empty one. */
    char longname[PE_MAX_NAME_LEN + 2];
    memset(longname, 'K', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    struct pe_export x;
    struct bm_err e3 = BM_ERR_INIT, e4 = BM_ERR_INIT;
    FUZZ_CHECK(pe_export_find(img, &ex, longname, &x, &e3) < 0 && fuzz_err_ok(&e3));
    FUZZ_CHECK(pe_export_find(img, &ex, "", &x, &e4) < 0 && fuzz_err_ok(&e4));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    struct fuzz_mem mem = { .data = data + 4, .size = size - 4, .base = BASE,
                            .holes = fuzz_le32(data) };
    struct pe_image img;
    struct bm_err err = BM_ERR_INIT;
    int rc = pe_open(&img, fuzz_mem_read, &mem, BASE, &err);
    fuzz_note("pe_open", rc, &err);
    if (rc < 0) {
        FUZZ_CHECK(fuzz_err_ok(&err));
        return 0;
    }
    FUZZ_CHECK(img.machine == fuzz_le16(mem.data + fuzz_le32(mem.data + 0x3c) + 4));
    FUZZ_CHECK(img.size_of_image > 0 && img.size_of_image <= PE_MAX_IMAGE_SIZE);
    FUZZ_CHECK(img.size_of_headers <= img.size_of_image);
    FUZZ_CHECK(img.nsections >= 1 && img.nsections <= PE_MAX_SECTIONS);
    FUZZ_CHECK(img.ndirs <= 16);
    for (unsigned i = 0; i < img.nsections; i++) {
        const struct pe_section *s = &img.sections[i];
        FUZZ_CHECK(s->name[8] == '\0');
        FUZZ_CHECK(s->vsize == 0 || (uint64_t)s->rva + s->vsize <= img.size_of_image);
        if (s->vsize > 0) {
            const struct pe_section *hit = pe_section_at(&img, s->rva);
            FUZZ_CHECK(hit != NULL && s->rva >= hit->rva &&
                       s->rva - hit->rva < hit->vsize);
        }
    }
    FUZZ_CHECK(pe_section_at(&img, img.size_of_image) == NULL);

    check_exports(&img, &mem);

    struct pe_rsds rsds;
    struct bm_err e2 = BM_ERR_INIT;
    rc = pe_read_rsds(&img, &rsds, &e2);
    fuzz_note("read_rsds", rc, &e2);
    if (rc == 0) {
        FUZZ_CHECK(is_upper_hex(rsds.guid, 32));
        size_t n = strnlen(rsds.pdb_name, sizeof rsds.pdb_name);
        FUZZ_CHECK(n > 0 && n <= PE_MAX_PDB_NAME);
    } else {
        FUZZ_CHECK(fuzz_err_ok(&e2));
    }

    /* Strings at the entry point and at the end of the image: bounded by
     * `max` and by SizeOfImage. */
    uint32_t rvas[3] = { img.entry_rva, img.size_of_image - 1,
                         img.dirs[0].rva };
    for (int i = 0; i < 3; i++) {
        char s[17];
        struct bm_err e3 = BM_ERR_INIT;
        if (pe_read_string(&img, rvas[i], s, 16, &e3) == 0)
            FUZZ_CHECK(strnlen(s, sizeof s) <= 16);
        else
            FUZZ_CHECK(fuzz_err_ok(&e3));
    }
    return 0;
}
