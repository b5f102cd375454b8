/* Unit tests of the Windows crash dump writer (dump_dmp.c and the dmp sink
 * of dump_raw.c) with an in-memory guest: RAM 0-6 MiB and 8-10 MiB, random,
 * zero and patterned pages, and patches that turn a zero page into data,
 * change a data page and touch a range's last byte. Both files from one
 * pass (the source is read exactly as often as for the raw image alone),
 * the header read back field by field, every page at its run offset, holes
 * where the patched page is zero, the SHA-256s of both files, the run list
 * merged to 42, and bad input refused with nothing left behind. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dump/dump.h"
#include "dumptest.h"

#define IMG (10 * MIB)
#define HDR DUMP_DMP_HEADER_SIZE

static const struct dump_range ranges[] = { { 0, 6 * MIB - 1 }, { 8 * MIB, 10 * MIB - 1 } };

static struct fake *fake_new(void)
{
    struct fake *f = fake_alloc(IMG, ranges, 2);
    srand(11);
    for (uint64_t pa = 0; pa < IMG; pa += PAGE) {
        if (pa >= 6 * MIB && pa < 8 * MIB)
            continue;
        uint8_t *p = f->mem + pa;
        switch ((pa / PAGE) % 5) {
        case 1:
            for (unsigned i = 0; i < PAGE; i++)
                p[i] = (uint8_t)rand();
            break;
        case 3: p[PAGE - 1] = 0x5a; break;
        default: break;
        }
    }
    return f;
}

static bool exists(const char *d, const char *name)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", d, name);
    return access(p, F_OK) == 0;
}

static uint8_t *read_file(const char *d, const char *name, size_t *len)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", d, name);
    return read_path(p, len);
}

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static const struct dump_meta meta = {
    .kernel_base = 0xfffff80012340000ull, .code = 0x50,
    .p = { 0xfffff80012345678ull, 0, 0xfffff80087654321ull, 2 }, .cr3 = 0x1a3000,
    .rsp = 0xfffff88012345670ull, .bugcheck_name = "PAGE_FAULT_IN_NONPAGED_AREA", .vcpu = 1,
    .time = { 1234567890, 123456 }, .pdb_guid = "32C1A669D5FFEFD41091F636CFDB6E99-1",
    .dmp_warnings = "KdDebuggerDataBlock: not decodable",
};

static uint8_t pbytes0[40], pbytes1[100], pbytes2[1];
/* A zero page (pa/4096 % 5 == 0) turned into data, bytes in a random page
 * (% 5 == 1), and the last byte of the first range. */
static const struct dump_patch patches[] = {
    { 5 * PAGE + 0x100, sizeof pbytes0, pbytes0 },
    { 6 * PAGE + 0xf9c, sizeof pbytes1, pbytes1 },
    { 6 * MIB - 1, 1, pbytes2 },
};

static void fill_dmp(struct dump_dmp *d)
{
    memset(d, 0, sizeof *d);
    d->major_version = 0xf;
    d->minor_version = 19041;
    d->directory_table_base = 0x1ad000;
    d->pfn_database = 0xffffe70000000000ull;
    d->ps_loaded_module_list = 0xfffff80012340000ull + 0xc2a230;
    d->ps_active_process_head = 0xfffff80012340000ull + 0xc1df80;
    d->machine_image_type = 0x8664;
    d->number_processors = 2;
    d->bugcheck_code = 0x50;
    d->bugcheck_param[0] = 0xfffff80012345678ull;
    d->bugcheck_param[3] = 2;
    d->kd_debugger_data_block = 0xfffff80012340000ull + 0xc00b20;
    for (unsigned i = 0; i < sizeof d->context; i++)
        d->context[i] = (uint8_t)(i * 13 + 1);
    d->exception_code = 0x80000003u;
    d->exception_flags = 1;
    d->exception_address = 0xfffff800125118b0ull;
    d->system_time = 0x01d9a1b2c3d4e5f6ull;
    d->system_uptime = 123456789;
    d->product_type = 1;
    d->suite_mask = 0x110;
    snprintf(d->comment, sizeof d->comment, "unit test");
    for (unsigned i = 0; i < sizeof pbytes0; i++)
        pbytes0[i] = (uint8_t)(0xc0 + i);
    for (unsigned i = 0; i < sizeof pbytes1; i++)
        pbytes1[i] = (uint8_t)(i + 1);
    pbytes2[0] = 0xee;
    d->patches = patches;
    d->npatches = sizeof patches / sizeof patches[0];
}

struct variant {
    const char *name;
    bool map;
    struct dump_tune tune;
};
static const struct variant v_read = { "read", false, { 0, 0 } };
static const struct variant v_map64 = { "map/64k", true, { 0, 64u << 10 } };
static const struct variant v_inline = { "inline/64k", true,
                                         { DUMP_F_INLINE_WRITE | DUMP_F_INLINE_HASH, 64u << 10 } };
static const struct variant v_buffered = { "buffered/128k", false, { DUMP_F_BUFFERED, 128u << 10 } };

/* The metadata's Files entry for `name`: size and hash. */
static void check_meta_file(json_object *o, unsigned i, const char *name, const char *format,
                            uint64_t size, const char *sha)
{
    json_object *files, *f, *v;
    assert_true(json_object_object_get_ex(o, "Files", &files));
    f = json_object_array_get_idx(files, i);
    assert_non_null(f);
    assert_true(json_object_object_get_ex(f, "Name", &v));
    assert_string_equal(json_object_get_string(v), name);
    assert_true(json_object_object_get_ex(f, "Format", &v));
    assert_string_equal(json_object_get_string(v), format);
    assert_true(json_object_object_get_ex(f, "Size", &v));
    assert_int_equal(json_object_get_int64(v), size);
    assert_true(json_object_object_get_ex(f, "Sha256", &v));
    assert_string_equal(json_object_get_string(v), sha);
}

static void test_both(void **state)
{
    const struct variant *v = *state;
    struct fake *f = fake_new();
    char *d = tmpdir("dmp");
    struct dump_source src = { ranges, 2, fake_read, v->map ? fake_map : NULL, f };
    struct dump_dmp dmp;
    fill_dmp(&dmp);
    struct dump_result res;
    struct bm_err err = BM_ERR_INIT;

    /* The raw image alone first: how often the source is read. */
    if (dump_write(d, DUMP_RAW, &src, &meta, NULL, NULL, &v->tune, &res, &err) < 0)
        fail_msg("%s: %s", v->name, bm_err_msg(&err));
    int raw_reads = f->reads + f->maps;
    f->reads = f->maps = 0;
    if (dump_write(d, DUMP_RAW | DUMP_DMP, &src, &meta, &dmp, NULL, &v->tune, &res, &err) < 0)
        fail_msg("%s: %s", v->name, bm_err_msg(&err));
    assert_int_equal(f->reads + f->maps, raw_reads);     /* one pass for both */
    assert_int_equal(entries(d, NULL, 0), 3);
    assert_int_equal(res.nfiles, 2);
    assert_string_equal(res.file[0].name, DUMP_BIN_NAME);
    assert_string_equal(res.file[1].name, DUMP_DMP_NAME);

    /* crashdump.bin is the guest, untouched by the patches. */
    size_t blen, dlen;
    uint8_t *bin = read_file(d, DUMP_BIN_NAME, &blen);
    assert_int_equal(blen, IMG);
    assert_memory_equal(bin, f->mem, IMG);

    /* crashdump.dmp: the header. */
    uint8_t *dm = read_file(d, DUMP_DMP_NAME, &dlen);
    uint64_t pages = 8 * MIB / PAGE;
    assert_int_equal(dlen, HDR + pages * PAGE);
    assert_int_equal(res.file[1].size, dlen);
    assert_memory_equal(dm, "PAGEDU64", 8);
    assert_int_equal(le(dm + 0x8, 4), 0xf);
    assert_int_equal(le(dm + 0xc, 4), 19041);
    assert_int_equal(le(dm + 0x10, 8), 0x1ad000);
    assert_int_equal(le(dm + 0x18, 8), 0xffffe70000000000ull);
    assert_int_equal(le(dm + 0x20, 8), dmp.ps_loaded_module_list);
    assert_int_equal(le(dm + 0x28, 8), dmp.ps_active_process_head);
    assert_int_equal(le(dm + 0x30, 4), 0x8664);
    assert_int_equal(le(dm + 0x34, 4), 2);
    assert_int_equal(le(dm + 0x38, 4), 0x50);
    assert_int_equal(le(dm + 0x3c, 4), 0);
    assert_int_equal(le(dm + 0x40, 8), 0xfffff80012345678ull);
    assert_int_equal(le(dm + 0x58, 8), 2);
    assert_int_equal(le(dm + 0x80, 8), dmp.kd_debugger_data_block);
    assert_int_equal(le(dm + 0x88, 4), 2);                 /* NumberOfRuns */
    assert_int_equal(le(dm + 0x90, 8), pages);             /* NumberOfPages */
    assert_int_equal(le(dm + 0x98, 8), 0);
    assert_int_equal(le(dm + 0xa0, 8), 6 * MIB / PAGE);
    assert_int_equal(le(dm + 0xa8, 8), 8 * MIB / PAGE);
    assert_int_equal(le(dm + 0xb0, 8), 2 * MIB / PAGE);
    assert_int_equal(le(dm + 0xb8, 8), 0);                 /* no third run */
    assert_memory_equal(dm + 0x348, dmp.context, DUMP_DMP_CONTEXT_SIZE);
    assert_int_equal(le(dm + 0xf00, 4), 0x80000003u);
    assert_int_equal(le(dm + 0xf04, 4), 1);
    assert_int_equal(le(dm + 0xf10, 8), dmp.exception_address);
    assert_int_equal(le(dm + 0xf98, 4), 1);                /* DumpType full */
    assert_int_equal(le(dm + 0xfa0, 8), dlen);             /* RequiredDumpSpace */
    assert_int_equal(le(dm + 0xfa8, 8), dmp.system_time);
    assert_string_equal((const char *)dm + 0xfb0, "unit test");
    assert_int_equal(le(dm + 0x1030, 8), 123456789);
    assert_int_equal(le(dm + 0x1040, 4), 1);
    assert_int_equal(le(dm + 0x1044, 4), 0x110);

    /* The pages: run 0 then run 1, the patches applied, holes for zero. */
    uint8_t *want = malloc(IMG);
    memcpy(want, f->mem, IMG);
    for (size_t i = 0; i < dmp.npatches; i++)
        memcpy(want + patches[i].pa, patches[i].bytes, patches[i].len);
    assert_memory_equal(dm + HDR, want, 6 * MIB);
    assert_memory_equal(dm + HDR + 6 * MIB, want + 8 * MIB, 2 * MIB);
    assert_true(memcmp(want + 5 * PAGE, f->mem + 5 * PAGE, PAGE) != 0); /* a patch was needed */
    char p[512];
    snprintf(p, sizeof p, "%s/%s", d, DUMP_DMP_NAME);
    int fd = open(p, O_RDONLY);
    assert_true(fd >= 0);
    uint64_t nonzero = 0;
    for (uint64_t off = HDR; off < dlen; off += PAGE) {
        bool nz = false;
        for (unsigned i = 0; i < PAGE && !nz; i++)
            nz = dm[off + i] != 0;
        nonzero += nz;
        off_t at = lseek(fd, (off_t)off, SEEK_DATA);
        if (nz != (at == (off_t)off))
            fail_msg("%s: dmp page at %#llx: %s but %s", v->name, (unsigned long long)off,
                     nz ? "data" : "zero", at == (off_t)off ? "data" : "a hole");
    }
    close(fd);
    assert_int_equal(res.file[1].written_bytes, HDR + nonzero * PAGE);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_true((uint64_t)st.st_blocks * 512 <= HDR + nonzero * PAGE + 64 * 1024);

    /* Hashes: each file as a reader sees it, in the result and metadata. */
    char hb[65], hd[65];
    sha256_hex(bin, blen, hb);
    sha256_hex(dm, dlen, hd);
    assert_string_equal(res.file[0].sha256, hb);
    assert_string_equal(res.file[1].sha256, hd);
    assert_string_equal(res.sha256, hb);
    size_t mlen;
    char *text = (char *)read_file(d, DUMP_META_NAME, &mlen);
    json_object *o = json_tokener_parse(text), *val;
    assert_non_null(o);
    assert_true(json_object_object_get_ex(o, "DumpFormat", &val));
    assert_string_equal(json_object_get_string(val), "both");
    assert_true(json_object_object_get_ex(o, "Sha256", &val));
    assert_string_equal(json_object_get_string(val), hb);
    assert_true(json_object_object_get_ex(o, "DmpWarnings", &val));
    assert_string_equal(json_object_get_string(val), "KdDebuggerDataBlock: not decodable");
    check_meta_file(o, 0, DUMP_BIN_NAME, "raw", IMG, hb);
    check_meta_file(o, 1, DUMP_DMP_NAME, "dmp", dlen, hd);
    json_object_put(o);
    free(text);
    free(want);
    free(bin);
    free(dm);
    rm_rf(d);
    free(d);
    fake_free(f);
}

/* More than 42 ranges: the closest are merged, their gaps read as zeros. */
static void test_runs_merged(void **state)
{
    (void)state;
    struct fake *f = fake_new();
    struct dump_range many[50];
    for (int i = 0; i < 50; i++) /* 16 KiB each; gaps of 4, 8 or 12 KiB */
        many[i] = (struct dump_range){ (uint64_t)i * 8 * PAGE + (i % 3) * PAGE,
                                       (uint64_t)i * 8 * PAGE + (i % 3) * PAGE + 4 * PAGE - 1 };
    char *d = tmpdir("dmp");
    struct dump_source src = { many, 50, fake_read, NULL, f };
    struct dump_dmp dmp;
    fill_dmp(&dmp);
    dmp.npatches = 0;
    struct dump_result res;
    struct bm_err err = BM_ERR_INIT;
    struct dump_tune tune = { 0, 64u << 10 };
    if (dump_write(d, DUMP_DMP, &src, &meta, &dmp, NULL, &tune, &res, &err) < 0)
        fail_msg("%s", bm_err_msg(&err));
    assert_false(exists(d, DUMP_BIN_NAME));
    size_t dlen;
    uint8_t *dm = read_file(d, DUMP_DMP_NAME, &dlen);
    uint32_t nruns = (uint32_t)le(dm + 0x88, 4);
    assert_int_equal(nruns, DUMP_DMP_MAX_RUNS);
    uint64_t off = HDR, total = 0, prev_end = 0;
    for (uint32_t r = 0; r < nruns; r++) {
        uint64_t base = le(dm + 0x98 + 16 * r, 8), n = le(dm + 0xa0 + 16 * r, 8);
        assert_true(n > 0 && (r == 0 || base > prev_end));
        for (uint64_t pg = 0; pg < n; pg++) {
            uint64_t pa = (base + pg) * PAGE;
            bool ram = false;
            for (int i = 0; i < 50; i++)
                ram = ram || (pa >= many[i].start && pa <= many[i].end);
            static const uint8_t zero[PAGE];
            assert_memory_equal(dm + off, ram ? f->mem + pa : zero, PAGE);
            off += PAGE;
        }
        prev_end = base + n;
        total += n;
    }
    /* Every range inside some run. */
    for (int i = 0; i < 50; i++) {
        bool in = false;
        for (uint32_t r = 0; r < nruns && !in; r++) {
            uint64_t base = le(dm + 0x98 + 16 * r, 8), n = le(dm + 0xa0 + 16 * r, 8);
            in = many[i].start / PAGE >= base && many[i].end / PAGE < base + n;
        }
        assert_true(in);
    }
    assert_int_equal(le(dm + 0x90, 8), total);
    assert_int_equal(dlen, off);
    char hd[65];
    sha256_hex(dm, dlen, hd);
    assert_string_equal(res.sha256, hd);
    assert_string_equal(res.file[0].name, DUMP_DMP_NAME);
    free(dm);
    rm_rf(d);
    free(d);
    fake_free(f);
}

/* Ranges off page boundaries: the runs are whole pages, the bytes around
 * the RAM read as zeros, the hash is the file's. */
static void test_unaligned(void **state)
{
    (void)state;
    static const struct dump_range odd[] = { { 0x10, 0x3122 }, { 0x5800, 0x9fff } };
    struct fake *f = fake_new();
    memset(f->mem, 0x33, 0x10000);
    char *d = tmpdir("dmp");
    struct dump_source src = { odd, 2, fake_read, NULL, f };
    struct dump_dmp dmp;
    fill_dmp(&dmp);
    dmp.npatches = 0;
    struct dump_result res;
    struct bm_err err = BM_ERR_INIT;
    struct dump_tune tune = { 0, 64u << 10 };
    if (dump_write(d, DUMP_DMP, &src, &meta, &dmp, NULL, &tune, &res, &err) < 0)
        fail_msg("%s", bm_err_msg(&err));
    size_t dlen;
    uint8_t *dm = read_file(d, DUMP_DMP_NAME, &dlen);
    assert_int_equal(le(dm + 0x88, 4), 2);
    assert_int_equal(le(dm + 0x98, 8), 0);
    assert_int_equal(le(dm + 0xa0, 8), 4);
    assert_int_equal(le(dm + 0xa8, 8), 5);
    assert_int_equal(le(dm + 0xb0, 8), 5);
    assert_int_equal(dlen, HDR + 9 * PAGE);
    for (uint64_t pa = 0; pa < 4 * PAGE; pa++)
        assert_int_equal(dm[HDR + pa], pa >= 0x10 && pa <= 0x3122 ? 0x33 : 0);
    for (uint64_t pa = 5 * PAGE; pa < 10 * PAGE; pa++)
        assert_int_equal(dm[HDR + 4 * PAGE + pa - 5 * PAGE], pa >= 0x5800 ? 0x33 : 0);
    char hd[65];
    sha256_hex(dm, dlen, hd);
    assert_string_equal(res.sha256, hd);
    free(dm);
    rm_rf(d);
    free(d);
    fake_free(f);
}

/* A dump in one format removes the other format's file of an older dump:
 * the directory never pairs a new metadata file with an old image. */
static void test_formats_replace(void **state)
{
    (void)state;
    struct fake *f = fake_new();
    char *d = tmpdir("dmp");
    struct dump_source src = { ranges, 2, fake_read, fake_map, f };
    struct dump_dmp dmp;
    fill_dmp(&dmp);
    struct dump_result res;
    struct bm_err err = BM_ERR_INIT;
    assert_int_equal(dump_write(d, DUMP_RAW | DUMP_DMP, &src, &meta, &dmp, NULL, NULL, &res, &err), 0);
    assert_true(exists(d, DUMP_BIN_NAME) && exists(d, DUMP_DMP_NAME));
    assert_int_equal(dump_write(d, DUMP_DMP, &src, &meta, &dmp, NULL, NULL, &res, &err), 0);
    assert_true(!exists(d, DUMP_BIN_NAME) && exists(d, DUMP_DMP_NAME));
    assert_int_equal(entries(d, NULL, 0), 2);
    assert_int_equal(dump_write(d, DUMP_RAW, &src, &meta, NULL, NULL, NULL, &res, &err), 0);
    assert_true(exists(d, DUMP_BIN_NAME) && !exists(d, DUMP_DMP_NAME));
    assert_int_equal(entries(d, NULL, 0), 2);
    rm_rf(d);
    free(d);
    fake_free(f);
}

/* Bad patches, a missing header, a bad format mask: refused before any
 * file is created. */
static void test_bad_input(void **state)
{
    (void)state;
    struct fake *f = fake_new();
    char *d = tmpdir("dmp");
    struct dump_source src = { ranges, 2, fake_read, NULL, f };
    struct dump_dmp dmp;
    fill_dmp(&dmp);
    struct dump_result res;
    struct bm_err err = BM_ERR_INIT;
    static uint8_t b[PAGE + 1];
    const struct dump_patch bad[][2] = {
        { { 0x2000, 16, b }, { 0x1000, 16, b } },         /* unsorted */
        { { 0x2000, 16, b }, { 0x200f, 16, b } },         /* overlapping */
        { { 0x2ff8, 16, b }, { 0x4000, 1, b } },          /* across a page */
        { { 6 * MIB + 8, 8, b }, { 9 * MIB, 1, b } },     /* outside RAM */
        { { 0x1000, 0, b }, { 0x4000, 1, b } },           /* empty */
        { { 0x1000, 8, NULL }, { 0x4000, 1, b } },        /* no bytes */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dmp.patches = bad[i];
        dmp.npatches = 2;
        bm_err_clear(&err);
        assert_int_equal(dump_write(d, DUMP_DMP, &src, &meta, &dmp, NULL, NULL, &res, &err), -1);
        assert_non_null(strstr(bm_err_msg(&err), "patch"));
        assert_int_equal(entries(d, NULL, 0), 0);
    }
    dmp.npatches = DUMP_DMP_MAX_PATCHES + 1;
    assert_int_equal(dump_write(d, DUMP_DMP, &src, &meta, &dmp, NULL, NULL, &res, &err), -1);
    assert_int_equal(dump_write(d, DUMP_DMP, &src, &meta, NULL, NULL, NULL, &res, &err), -1);
    assert_int_equal(dump_write(d, 0, &src, &meta, NULL, NULL, NULL, &res, &err), -1);
    assert_int_equal(dump_write(d, 4, &src, &meta, NULL, NULL, NULL, &res, &err), -1);
    assert_int_equal(entries(d, NULL, 0), 0);
    rm_rf(d);
    free(d);
    fake_free(f);
}

struct canceller {
    volatile sig_atomic_t *flag;
    int after, calls;
};

static void cancel_in_progress(void *ctx, uint64_t done, uint64_t total)
{
    (void)done;
    (void)total;
    struct canceller *c = ctx;
    if (++c->calls == c->after)
        *c->flag = SIGTERM;
}

/* A cancel, or one file failing to be written (EFBIG past RLIMIT_FSIZE:
 * the 10 MiB crashdump.bin fails at 9 MiB while the 8 MiB crashdump.dmp
 * would fit), leaves nothing of either file. */
static void test_failures_leave_nothing(void **state)
{
    (void)state;
    struct fake *f = fake_new();
    char *d = tmpdir("dmp");
    struct dump_source src = { ranges, 2, fake_read, fake_map, f };
    struct dump_dmp dmp;
    fill_dmp(&dmp);
    struct dump_result res;
    struct dump_tune tune = { 0, 64u << 10 };
    static const unsigned fmts[] = { DUMP_DMP, DUMP_RAW | DUMP_DMP };
    for (size_t i = 0; i < 2; i++) {
        volatile sig_atomic_t flag = 0;
        struct canceller c = { &flag, 20, 0 };
        struct dump_opts opts = { cancel_in_progress, &c, &flag, NULL, NULL };
        struct bm_err err = BM_ERR_INIT;
        assert_int_equal(dump_write(d, fmts[i], &src, &meta, &dmp, &opts, &tune, &res, &err), -1);
        assert_non_null(strstr(bm_err_msg(&err), "interrupted by signal"));
        assert_int_equal(entries(d, NULL, 0), 0);
    }
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*oldsig)(int) = signal(SIGXFSZ, SIG_IGN);
    static const struct { unsigned fmt; rlim_t limit; } cases[] = {
        { DUMP_RAW | DUMP_DMP, 9 * MIB }, { DUMP_DMP, 3 * MIB },
    };
    for (size_t i = 0; i < 2; i++)
        for (unsigned flags = 0; flags <= DUMP_F_BUFFERED; flags += DUMP_F_BUFFERED) {
            lim = (struct rlimit){ cases[i].limit, old.rlim_max };
            assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
            struct dump_tune t2 = { flags, 0 };
            struct bm_err err = BM_ERR_INIT;
            int rc = dump_write(d, cases[i].fmt, &src, &meta, &dmp, NULL, &t2, &res, &err);
            assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
            assert_int_equal(rc, -1);
            assert_non_null(strstr(bm_err_msg(&err), strerror(EFBIG)));
            assert_int_equal(entries(d, NULL, 0), 0);
        }
    signal(SIGXFSZ, oldsig);
    rm_rf(d);
    free(d);
    fake_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate(test_both, (void *)&v_read),
        cmocka_unit_test_prestate(test_both, (void *)&v_map64),
        cmocka_unit_test_prestate(test_both, (void *)&v_inline),
        cmocka_unit_test_prestate(test_both, (void *)&v_buffered),
        cmocka_unit_test(test_runs_merged),
        cmocka_unit_test(test_unaligned),
        cmocka_unit_test(test_formats_replace),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_failures_leave_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
