/* Unit tests of dump/ with an in-memory guest: RAM 0-6 MiB and 8-10 MiB (a
 * 2 MiB gap, as the PCI hole below 4 GiB), random, zero and patterned pages.
 * The image (bytes, holes, hash, permissions, metadata), every writer
 * variant, failures (read error, cancel, ENOSPC, EFBIG), the directory
 * checks and the replacement of an older dump.
 *
 * Real conditions where they can be had: as root the test process enters a
 * private mount namespace (once, in main) and mounts small tmpfs instances
 * there for ENOSPC and read-only directories; an immutable directory
 * (chattr +i) stands for "not writable even by root"; a child that drops to
 * uid 65534 checks a 0500 directory. What the machine does not allow is
 * skipped, and RLIMIT_FSIZE (EFBIG) covers a failing write for everybody. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dump/dump.h"
#include "dumptest.h"

#define IMG (10 * MIB)

/* <linux/fs.h> clashes with <sys/mount.h> in glibc 2.36: the two we need. */
#define T_FS_IOC_GETFLAGS _IOR('f', 1, long)
#define T_FS_IOC_SETFLAGS _IOW('f', 2, long)
#define T_FS_IMMUTABLE_FL 0x00000010

static bool can_mount; /* private mount namespace entered in main() */

static const struct dump_range ranges[] = { { 0, 6 * MIB - 1 }, { 8 * MIB, 10 * MIB - 1 } };

/* ---- the fake guest (dumptest.h), its pages ------------------------------- */

/* Page kinds by page number % 6: zero, zero, random, pattern, zero but for
 * its last byte, zero but for a byte in the middle (no early exit there). */
static struct fake *fake_new(void)
{
    struct fake *f = fake_alloc(IMG, ranges, 2);
    srand(7);
    for (uint64_t pa = 0; pa < IMG; pa += PAGE) {
        if (!fake_in_ram(f, pa, PAGE))
            continue;                                   /* the gap: never read */
        uint8_t *p = f->mem + pa;
        switch ((pa / PAGE) % 6) {
        case 2:
            for (unsigned i = 0; i < PAGE; i++)
                p[i] = (uint8_t)rand();
            break;
        case 3:
            for (unsigned i = 0; i < PAGE; i++)
                p[i] = (uint8_t)((pa >> 12) ^ i);
            break;
        case 4: p[PAGE - 1] = 0x5a; break;
        case 5: p[PAGE / 2 + 8] = 0xa5; break;
        default: break;
        }
    }
    /* A long zero stretch and a long data stretch, across chunk borders. */
    memset(f->mem + 1 * MIB, 0, 512 * 1024);
    for (unsigned i = 0; i < 512 * 1024; i++)
        f->mem[3 * MIB + i] = (uint8_t)(i * 7 + 1);
    return f;
}

/* ---- helpers --------------------------------------------------------------- */

static void path_of(char *out, size_t len, const char *d, const char *name)
{
    snprintf(out, len, "%s/%s", d, name);
}

static void assert_empty(const char *d)
{
    char names[1024];
    if (entries(d, names, sizeof names) != 0)
        fail_msg("%s should be empty after a failed dump, holds: %s", d, names);
}

static const struct dump_meta meta = {
    .kernel_base = 0xfffff80012340000ull, .code = 0x50,
    .p = { 0xfffff80012345678ull, 0, 0xfffff80087654321ull, 2 }, .cr3 = 0x1a3000,
    .rsp = 0xfffff88012345670ull, .bugcheck_name = "PAGE_FAULT_IN_NONPAGED_AREA", .vcpu = 1,
    .time = { 1234567890, 123456 }, .pdb_guid = "32C1A669D5FFEFD41091F636CFDB6E99-1",
};

/* ---- the image ----------------------------------------------------------- */

struct progress_log {
    int calls;
    uint64_t last, total;
    bool backwards;
};

static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
    struct progress_log *p = ctx;
    if (done < p->last || done > total)
        p->backwards = true;
    p->calls++;
    p->last = done;
    p->total = total;
}

/* Every page of the image is data exactly where the guest page is non-zero. */
static void check_holes(int fd, const struct fake *f, uint64_t size)
{
    for (uint64_t pa = 0; pa < size; pa += PAGE) {
        bool nonzero = false;
        for (unsigned i = 0; i < PAGE && pa + i < size && !nonzero; i++)
            nonzero = f->mem[pa + i] != 0;
        off_t d = lseek(fd, (off_t)pa, SEEK_DATA);
        bool data = d == (off_t)pa;
        if (d < 0)
            assert_int_equal(errno, ENXIO); /* no data after pa */
        if (nonzero != data)
            fail_msg("page %#llx: guest page %s, file %s", (unsigned long long)pa,
                     nonzero ? "non-zero" : "zero", data ? "data" : "hole");
    }
}

static void check_metadata(const char *d, const struct dump_result *res, const char *sha)
{
    char path[512];
    path_of(path, sizeof path, d, DUMP_META_NAME);
    size_t len;
    char *text = (char *)read_path(path, &len);
    /* One line, as DRAKVUF writes it. */
    assert_true(len > 2 && text[len - 1] == '\n' && memchr(text, '\n', len - 1) == NULL);
    json_object *o = json_tokener_parse(text);
    assert_non_null(o);
    static const char *const order[] = { "KernelBase", "BugCheckCode", "Param1", "Param2",
                                         "Param3", "Param4", "CR3", "RSP", "BugCheckName",
                                         "VCPU", "TimeStamp", "PdbGuid", "DumpFormat",
                                         "DumpSize", "RamRanges", "Sha256", "Complete", "Files" };
    size_t i = 0;
    json_object_object_foreach(o, key, val) {
        (void)val;
        assert_true(i < sizeof order / sizeof order[0]);
        assert_string_equal(key, order[i]);
        i++;
    }
    assert_int_equal(i, sizeof order / sizeof order[0]);
    static const struct {
        const char *key, *value;
    } str[] = {
        { "KernelBase", "fffff80012340000" }, { "BugCheckCode", "50" },
        { "Param1", "fffff80012345678" }, { "Param2", "0" }, { "Param3", "fffff80087654321" },
        { "Param4", "2" }, { "CR3", "1a3000" }, { "RSP", "fffff88012345670" },
        { "BugCheckName", "PAGE_FAULT_IN_NONPAGED_AREA" }, { "TimeStamp", "1234567890.123456" },
        { "PdbGuid", "32C1A669D5FFEFD41091F636CFDB6E99-1" }, { "DumpFormat", "raw" },
    };
    json_object *v;
    for (size_t k = 0; k < sizeof str / sizeof str[0]; k++) {
        assert_true(json_object_object_get_ex(o, str[k].key, &v));
        assert_true(json_object_is_type(v, json_type_string));
        assert_string_equal(json_object_get_string(v), str[k].value);
    }
    assert_true(json_object_object_get_ex(o, "VCPU", &v));
    assert_true(json_object_is_type(v, json_type_int));
    assert_int_equal(json_object_get_int(v), 1);
    assert_true(json_object_object_get_ex(o, "DumpSize", &v));
    assert_true(json_object_is_type(v, json_type_int));
    assert_int_equal(json_object_get_int64(v), res->size);
    assert_true(json_object_object_get_ex(o, "Sha256", &v));
    assert_string_equal(json_object_get_string(v), sha);
    assert_true(json_object_object_get_ex(o, "Complete", &v));
    assert_true(json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v));
    assert_true(json_object_object_get_ex(o, "RamRanges", &v));
    assert_string_equal(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN),
                        "[[\"0x0\",\"0x5fffff\"],[\"0x800000\",\"0x9fffff\"]]");
    json_object_put(o);
    free(text);
}

struct variant {
    const char *name;
    bool map, map_some;
    struct dump_tune tune;
};

static const struct variant v_read_default = { "read", false, false, { 0, 0 } };
static const struct variant v_map_default = { "map", true, false, { 0, 0 } };
static const struct variant v_map_small = { "map/64k", true, false, { 0, 64u << 10 } };
static const struct variant v_read_small = { "read/64k", false, false, { 0, 64u << 10 } };
static const struct variant v_mixed_small = { "map some/128k", true, true, { 0, 128u << 10 } };
static const struct variant v_buffered = { "buffered/64k", false, false,
                                           { DUMP_F_BUFFERED, 64u << 10 } };
static const struct variant v_inline = { "inline/64k", true, false,
                                         { DUMP_F_INLINE_WRITE | DUMP_F_INLINE_HASH, 64u << 10 } };
static const struct variant v_inline_buf = { "buffered inline/1M", false, false,
                                             { DUMP_F_BUFFERED | DUMP_F_INLINE_WRITE |
                                               DUMP_F_INLINE_HASH, 1u << 20 } };

/* The image is the guest, byte for byte, holes where it is zero or not RAM. */
static void test_image(void **state)
{
    const struct variant *v = *state;
    struct fake *f = fake_new();
    f->map_some = v->map_some;
    char *d = tmpdir("dump");
    struct dump_source src = { ranges, 2, fake_read, v->map ? fake_map : NULL, f };
    struct progress_log prog = { 0 };
    volatile sig_atomic_t cancel = 0;
    struct dump_opts opts = { on_progress, &prog, &cancel, NULL, NULL };
    struct dump_result res;
    struct bm_err err = BM_ERR_INIT;
    if (dump_write_raw_tuned(d, &src, &meta, &opts, &v->tune, &res, &err) < 0)
        fail_msg("%s: %s", v->name, bm_err_msg(&err));
    assert_false(f->outside);                    /* the gap was never read */
    if (v->map && !v->map_some)
        assert_int_equal(f->reads, 0);           /* zero copy */
    if (v->map_some)
        assert_true(f->reads > 0 && f->maps > 0);
    char names[256];
    assert_int_equal(entries(d, names, sizeof names), 2); /* no temporary left */
    char path[512];
    path_of(path, sizeof path, d, DUMP_BIN_NAME);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_size, IMG);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(res.size, IMG);
    assert_int_equal(res.ram_bytes, 8 * MIB);
    size_t len;
    uint8_t *img = read_path(path, &len);
    assert_int_equal(len, IMG);
    assert_memory_equal(img, f->mem, IMG);       /* byte N = address N; the gap zeros */
    check_holes(fd, f, IMG);
    uint64_t nonzero = 0;
    for (uint64_t pa = 0; pa < IMG; pa += PAGE) {
        bool nz = false;
        for (unsigned i = 0; i < PAGE && !nz; i++)
            nz = f->mem[pa + i] != 0;
        nonzero += nz ? PAGE : 0;
    }
    assert_int_equal(res.written_bytes, nonzero);
    assert_true(nonzero > 0 && nonzero < 6 * MIB);
    uint64_t alloc = (uint64_t)st.st_blocks * 512;
    if (alloc < nonzero || alloc > nonzero + 64 * 1024)
        fail_msg("%s: %llu bytes allocated for %llu of data", v->name,
                 (unsigned long long)alloc, (unsigned long long)nonzero);
    char hex[65], hex_guest[65];
    sha256_hex(img, len, hex);                   /* independent hash of the file */
    sha256_hex(f->mem, IMG, hex_guest);
    assert_string_equal(res.sha256, hex);
    assert_string_equal(hex, hex_guest);
    check_metadata(d, &res, hex);
    path_of(path, sizeof path, d, DUMP_META_NAME);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    /* Progress: forward, in RAM bytes, ending with done == total once. */
    assert_false(prog.backwards);
    assert_true(prog.calls >= 2);
    assert_int_equal(prog.last, 8 * MIB);
    assert_int_equal(prog.total, 8 * MIB);
    close(fd);
    free(img);
    rm_rf(d);
    free(d);
    fake_free(f);
}

/* Ranges that do not start or end on a page: exact bytes, no O_DIRECT. */
static void test_unaligned_ranges(void **state)
{
    (void)state;
    static const struct dump_range odd[] = { { 0x10, 0x2fff + 0x123 }, { 0x5800, 0x9fff },
                                              { 0xa000 + 0x100, 0x1ffff } };
    struct fake *f = fake_new();
    f->ranges = odd;
    f->nranges = 3;
    uint64_t size = odd[2].end + 1;
    /* Only RAM bytes count: clear the rest of the fake's memory. */
    for (uint64_t pa = 0; pa < size; pa++)
        if (!fake_in_ram(f, pa, 1))
            f->mem[pa] = 0;
    f->mem[odd[0].end] = 0x77;                    /* last byte of a partial page */
    char *d = tmpdir("dump");
    struct dump_source src = { odd, 3, fake_read, NULL, f };
    struct dump_result res;
    struct bm_err err = BM_ERR_INIT;
    struct dump_tune tune = { 0, 64u << 10 };
    if (dump_write_raw_tuned(d, &src, &meta, NULL, &tune, &res, &err) < 0)
        fail_msg("%s", bm_err_msg(&err));
    assert_false(f->outside);
    assert_false(res.direct);
    char path[512];
    path_of(path, sizeof path, d, DUMP_BIN_NAME);
    size_t len;
    uint8_t *img = read_path(path, &len);
    assert_int_equal(len, size);
    assert_memory_equal(img, f->mem, size);
    char hex[65];
    sha256_hex(img, len, hex);
    assert_string_equal(res.sha256, hex);
    free(img);
    rm_rf(d);
    free(d);
    fake_free(f);
}

/* A gap longer than one hashing piece, and zero RAM at the end of the image:
 * holes all the way, the right size, the right hash. */
struct two_bufs {
    uint8_t *low, *high; /* RAM at 0 (64 KiB) and at 300 MiB (2 MiB) */
};

static int two_bufs_read(void *ctx, uint64_t pa, void *buf, size_t len, struct bm_err *err)
{
    struct two_bufs *c = ctx;
    if (pa + len <= 64 * 1024) {
        memcpy(buf, c->low + pa, len);
        return 0;
    }
    if (pa >= 300ull * MIB && pa + len <= 302ull * MIB) {
        memcpy(buf, c->high + (pa - 300ull * MIB), len);
        return 0;
    }
    return bm_err_set(err, "read outside RAM at %#llx", (unsigned long long)pa);
}

static void test_big_gap_zero_tail(void **state)
{
    (void)state;
    static const struct dump_range far[] = { { 0, 64 * 1024 - 1 },
                                             { 300ull * MIB, 302ull * MIB - 1 } };
    struct two_bufs c = { calloc(1, 64 * 1024), calloc(1, 2 * MIB) };
    memset(c.low + 4096, 0xab, 4096);
    memset(c.high + 8192, 0xcd, 100);              /* then 2 MiB - 12 KiB of zeros */
    struct dump_source src = { far, 2, two_bufs_read, NULL, &c };
    char *d = tmpdir("dump");
    struct dump_result res;
    struct bm_err err = BM_ERR_INIT;
    if (dump_write_raw(d, &src, &meta, NULL, &res, &err) < 0)
        fail_msg("%s", bm_err_msg(&err));
    uint64_t size = far[1].end + 1;
    assert_int_equal(res.size, size);
    char path[512];
    path_of(path, sizeof path, d, DUMP_BIN_NAME);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, size);
    assert_true(st.st_blocks * 512 <= 64 * 1024);
    assert_int_equal(lseek(fd, 0, SEEK_DATA), 4096);
    assert_int_equal(lseek(fd, 4096, SEEK_HOLE), 8192);
    assert_int_equal(lseek(fd, 8192, SEEK_DATA), 300ull * MIB + 8192);
    assert_int_equal(lseek(fd, 300ull * MIB + 8192, SEEK_HOLE), 300ull * MIB + 12288);
    assert_int_equal(lseek(fd, 300ull * MIB + 12288, SEEK_DATA), -1);
    /* The hash of the whole file, holes read as zeros. */
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    static uint8_t buf[1 << 20];
    for (uint64_t o = 0; o < size; o += sizeof buf) {
        size_t n = size - o < sizeof buf ? (size_t)(size - o) : sizeof buf;
        assert_int_equal(pread(fd, buf, n, (off_t)o), n);
        EVP_DigestUpdate(md, buf, n);
    }
    unsigned char out[32];
    EVP_DigestFinal_ex(md, out, NULL);
    EVP_MD_CTX_free(md);
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", out[i]);
    assert_string_equal(res.sha256, hex);
    close(fd);
    rm_rf(d);
    free(d);
    free(c.low);
    free(c.high);
}

/* ---- failures -------------------------------------------------------------- */

static void test_read_failure_leaves_nothing(void **state)
{
    (void)state;
    struct fake *f = fake_new();
    f->fail_at = 9 * MIB;
    char *d = tmpdir("dump");
    struct dump_source src = { ranges, 2, fake_read, NULL, f };
    struct dump_result res;
    struct bm_err err = BM_ERR_INIT;
    struct dump_tune tune = { 0, 256u << 10 };
    assert_int_equal(dump_write_raw_tuned(d, &src, &meta, NULL, &tune, &res, &err), -1);
    assert_non_null(strstr(bm_err_msg(&err), "reading guest RAM at 0x900000"));
    assert_non_null(strstr(bm_err_msg(&err), "fake read failure (QEMU died)"));
    assert_empty(d);
    rm_rf(d);
    free(d);
    fake_free(f);
}

/* Neither read nor map for a chunk. */
static void test_unmappable_leaves_nothing(void **state)
{
    (void)state;
    struct fake *f = fake_new();
    f->map_some = true;
    char *d = tmpdir("dump");
    struct dump_source src = { ranges, 2, NULL, fake_map, f };
    struct dump_result res;
    struct bm_err err = BM_ERR_INIT;
    struct dump_tune tune = { 0, 1u << 20 };
    assert_int_equal(dump_write_raw_tuned(d, &src, &meta, NULL, &tune, &res, &err), -1);
    assert_non_null(strstr(bm_err_msg(&err), "cannot be mapped"));
    assert_empty(d);
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
        *c->flag = SIGTERM; /* as the signal handler would */
}

static void cancel_in_poll(void *ctx)
{
    cancel_in_progress(ctx, 0, 0);
}

static void test_cancel_leaves_nothing(void **state)
{
    (void)state;
    struct fake *f = fake_new();
    char *d = tmpdir("dump");
    struct dump_source src = { ranges, 2, fake_read, fake_map, f };
    struct dump_result res;
    struct dump_tune tune = { 0, 64u << 10 };
    for (int how = 0; how < 3; how++) {
        volatile sig_atomic_t flag = how == 2 ? SIGINT : 0;
        f->maps = 0;
        struct canceller c = { &flag, how == 0 ? 5 : 40, 0 };
        struct dump_opts opts = { how == 0 ? cancel_in_progress : NULL, &c, &flag,
                                  how == 1 ? cancel_in_poll : NULL, &c };
        struct bm_err err = BM_ERR_INIT;
        assert_int_equal(dump_write_raw_tuned(d, &src, &meta, &opts, &tune, &res, &err), -1);
        assert_non_null(strstr(bm_err_msg(&err), "interrupted by signal"));
        assert_empty(d);
        if (how == 2)
            assert_int_equal(f->maps, 0);  /* cancelled before anything was read */
    }
    rm_rf(d);
    free(d);
    fake_free(f);
}

/* A 1 MiB tmpfs in our private mount namespace: a real ENOSPC mid-dump. */
static void test_enospc_leaves_nothing(void **state)
{
    (void)state;
    if (!can_mount)
        skip();
    struct fake *f = fake_new();
    char *d = tmpdir("dump");
    assert_int_equal(mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0700"), 0);
    struct dump_source src = { ranges, 2, fake_read, fake_map, f };
    struct dump_result res;
    for (unsigned flags = 0; flags <= DUMP_F_BUFFERED; flags += DUMP_F_BUFFERED) {
        struct dump_tune tune = { flags, 256u << 10 };
        struct bm_err err = BM_ERR_INIT;
        assert_int_equal(dump_write_raw_tuned(d, &src, &meta, NULL, &tune, &res, &err), -1);
        if (strstr(bm_err_msg(&err), "disk is full") == NULL)
            fail_msg("flags %u: %s", flags, bm_err_msg(&err));
        assert_non_null(strstr(bm_err_msg(&err), strerror(ENOSPC)));
        assert_empty(d);
    }
    assert_int_equal(umount2(d, MNT_DETACH), 0);
    rm_rf(d);
    free(d);
    fake_free(f);
}

/* RLIMIT_FSIZE: the kernel refuses a write past 3 MiB (EFBIG), as any
 * write error mid-dump; works without privileges. */
static void test_write_error_leaves_nothing(void **state)
{
    (void)state;
    struct fake *f = fake_new();
    char *d = tmpdir("dump");
    struct dump_source src = { ranges, 2, fake_read, fake_map, f };
    struct dump_result res;
    struct rlimit old, lim = { 3 * MIB, 3 * MIB };
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim.rlim_max = old.rlim_max;
    void (*oldsig)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    for (unsigned flags = 0; flags <= DUMP_F_BUFFERED; flags += DUMP_F_BUFFERED) {
        struct dump_tune tune = { flags, 0 };
        struct bm_err err = BM_ERR_INIT;
        int rc = dump_write_raw_tuned(d, &src, &meta, NULL, &tune, &res, &err);
        assert_int_equal(rc, -1);
        assert_non_null(strstr(bm_err_msg(&err), strerror(EFBIG)));
        assert_non_null(strstr(bm_err_msg(&err), "writing the crash dump at offset"));
        assert_empty(d);
    }
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, oldsig);
    rm_rf(d);
    free(d);
    fake_free(f);
}

static void test_bad_input_leaves_nothing(void **state)
{
    (void)state;
    struct fake *f = fake_new();
    char *d = tmpdir("dump");
    static const struct dump_range overlap[] = { { 0, 4 * MIB }, { 4 * MIB, 5 * MIB } };
    static const struct dump_range unsorted[] = { { 8 * MIB, 9 * MIB }, { 0, 1 * MIB } };
    static const struct dump_range reversed[] = { { 2 * MIB, 1 * MIB } };
    static const struct dump_range huge[] = { { 0, 1ull << 52 } };
    const struct dump_source bad[] = {
        { overlap, 2, fake_read, NULL, f }, { unsorted, 2, fake_read, NULL, f },
        { reversed, 1, fake_read, NULL, f }, { huge, 1, fake_read, NULL, f },
        { ranges, 0, fake_read, NULL, f }, { NULL, 2, fake_read, NULL, f },
        { ranges, 2, NULL, NULL, f },
    };
    struct dump_result res;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct bm_err err = BM_ERR_INIT;
        assert_int_equal(dump_write_raw(d, &bad[i], &meta, NULL, &res, &err), -1);
        assert_true(err.set);
    }
    struct dump_source src = { ranges, 2, fake_read, NULL, f };
    struct bm_err err = BM_ERR_INIT;
    assert_int_equal(dump_write_raw(d, &src, NULL, NULL, &res, &err), -1);
    static const size_t chunks[] = { 4096, 3u << 20, 512u << 20 };
    for (size_t i = 0; i < 3; i++) {
        struct dump_tune tune = { 0, chunks[i] };
        bm_err_clear(&err);
        assert_int_equal(dump_write_raw_tuned(d, &src, &meta, NULL, &tune, &res, &err), -1);
        assert_non_null(strstr(bm_err_msg(&err), "chunk size"));
    }
    assert_int_equal(f->reads, 0);
    assert_empty(d);
    rm_rf(d);
    free(d);
    fake_free(f);
}

/* ---- replacing an older dump ------------------------------------------------ */

static void test_replace_and_keep(void **state)
{
    (void)state;
    struct fake *f = fake_new();
    char *d = tmpdir("dump");
    struct dump_source src = { ranges, 2, fake_read, fake_map, f };
    struct dump_result res1, res2, res3;
    struct bm_err err = BM_ERR_INIT;
    char bin[512], mpath[512];
    path_of(bin, sizeof bin, d, DUMP_BIN_NAME);
    path_of(mpath, sizeof mpath, d, DUMP_META_NAME);
    /* A symbolic link under the final name is replaced, never followed. */
    char victim[512];
    path_of(victim, sizeof victim, d, "victim");
    int vfd = open(victim, O_WRONLY | O_CREAT | O_EXCL, 0644);
    assert_true(vfd >= 0 && write(vfd, "keep", 4) == 4);
    close(vfd);
    assert_int_equal(symlink(victim, bin), 0);
    assert_int_equal(symlink(victim, mpath), 0);
    assert_int_equal(dump_write_raw(d, &src, &meta, NULL, &res1, &err), 0);
    struct stat st;
    assert_int_equal(lstat(bin, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(lstat(mpath, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(stat(victim, &st), 0);
    assert_int_equal(st.st_size, 4);
    assert_int_equal(st.st_mode & 0777, 0644);
    assert_int_equal(unlink(victim), 0);
    size_t len1, mlen1;
    uint8_t *img1 = read_path(bin, &len1), *meta1 = read_path(mpath, &mlen1);
    ino_t ino1 = 0;
    assert_int_equal(stat(bin, &st), 0);
    ino1 = st.st_ino;

    /* A failed second dump leaves the first one whole. */
    f->mem[0] = 0x42;
    f->fail_at = 8 * MIB + 4096;
    struct dump_source rsrc = { ranges, 2, fake_read, NULL, f };
    assert_int_equal(dump_write_raw(d, &rsrc, &meta, NULL, &res2, &err), -1);
    bm_err_clear(&err);
    f->fail_at = 0;
    f->map_some = true;
    assert_int_equal(entries(d, NULL, 0), 2);
    size_t len, mlen;
    uint8_t *img = read_path(bin, &len), *m = read_path(mpath, &mlen);
    assert_int_equal(len, len1);
    assert_memory_equal(img, img1, len);
    assert_int_equal(mlen, mlen1);
    assert_memory_equal(m, meta1, mlen);
    free(img);
    free(m);

    /* A good one replaces it: new inode, new bytes, matching metadata. */
    struct dump_meta meta3 = meta;
    meta3.code = 0xe2;
    meta3.pdb_guid = NULL;
    meta3.bugcheck_name = NULL;
    assert_int_equal(dump_write_raw(d, &src, &meta3, NULL, &res3, &err), 0);
    assert_int_equal(entries(d, NULL, 0), 2);
    assert_int_equal(stat(bin, &st), 0);
    assert_true(st.st_ino != ino1);
    img = read_path(bin, &len);
    assert_int_equal(img[0], 0x42);
    char hex[65];
    sha256_hex(img, len, hex);
    assert_string_equal(res3.sha256, hex);
    assert_string_not_equal(res3.sha256, res1.sha256);
    json_object *o = json_object_from_file(mpath), *v;
    assert_non_null(o);
    assert_true(json_object_object_get_ex(o, "Sha256", &v));
    assert_string_equal(json_object_get_string(v), hex);
    assert_true(json_object_object_get_ex(o, "BugCheckCode", &v));
    assert_string_equal(json_object_get_string(v), "e2");
    assert_true(json_object_object_get_ex(o, "BugCheckName", &v));
    assert_string_equal(json_object_get_string(v), "UNKNOWN_CODE");
    assert_true(json_object_object_get_ex(o, "PdbGuid", &v));
    assert_null(v);                                  /* unknown: null */
    json_object_put(o);
    free(img);
    free(img1);
    free(meta1);
    rm_rf(d);
    free(d);
    fake_free(f);
}

/* ---- the directory ------------------------------------------------------------ */

static void expect_refused(const char *dir, const char *what)
{
    struct bm_err err = BM_ERR_INIT;
    assert_int_equal(dump_check_dir(dir, &err), -1);
    if (strstr(bm_err_msg(&err), what) == NULL)
        fail_msg("dump_check_dir(%s): \"%s\" lacks \"%s\"", dir, bm_err_msg(&err), what);
}

static void test_check_dir_create(void **state)
{
    (void)state;
    char *d = tmpdir("dump");
    char p[512];
    struct bm_err err = BM_ERR_INIT;
    mode_t old = umask(0277);                       /* would make it 0500 */
    snprintf(p, sizeof p, "%s/new", d);
    assert_int_equal(dump_check_dir(p, &err), 0);
    umask(old);
    struct stat st;
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0700);
    assert_int_equal(entries(p, NULL, 0), 0);        /* the probe file is gone */
    assert_int_equal(dump_check_dir(p, &err), 0);    /* existing: fine too */
    snprintf(p, sizeof p, "%s/a/b", d);
    expect_refused(p, "parent");
    snprintf(p, sizeof p, "%s/file", d);
    int fd = open(p, O_WRONLY | O_CREAT, 0600);
    close(fd);
    expect_refused(p, "not a directory");
    snprintf(p, sizeof p, "%s/file/sub", d);
    expect_refused(p, "parent is not a directory");
    expect_refused("", "empty");
    rm_rf(d);
    free(d);
}

static void test_check_dir_links(void **state)
{
    (void)state;
    char *d = tmpdir("dump");
    char p[512], link[512], dangling[512], target[512];
    snprintf(p, sizeof p, "%s/real", d);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(link, sizeof link, "%s/link", d);
    assert_int_equal(symlink(p, link), 0);
    expect_refused(link, "symbolic link");
    /* A dangling link is not followed to create its target. */
    snprintf(target, sizeof target, "%s/target", d);
    snprintf(dangling, sizeof dangling, "%s/dangling", d);
    assert_int_equal(symlink(target, dangling), 0);
    expect_refused(dangling, "symbolic link");
    struct stat st;
    assert_int_equal(lstat(target, &st), -1);
    /* The dump itself refuses the link too, and writes nothing behind it. */
    struct fake *f = fake_new();
    struct dump_source src = { ranges, 2, fake_read, NULL, f };
    struct dump_result res;
    struct bm_err err = BM_ERR_INIT;
    assert_int_equal(dump_write_raw(link, &src, &meta, NULL, &res, &err), -1);
    assert_non_null(strstr(bm_err_msg(&err), "symbolic link"));
    assert_int_equal(f->reads, 0);
    assert_empty(p);
    fake_free(f);
    /* An existing final name that is a directory cannot be replaced. */
    char sub[600];
    snprintf(sub, sizeof sub, "%s/%s", p, DUMP_BIN_NAME);
    assert_int_equal(mkdir(sub, 0700), 0);
    expect_refused(p, "is a directory");
    rm_rf(d);
    free(d);
}

static void test_check_dir_others_writable(void **state)
{
    (void)state;
    char *d = tmpdir("dump");
    char p[512];
    snprintf(p, sizeof p, "%s/shared", d);
    assert_int_equal(mkdir(p, 0700), 0);
    assert_int_equal(chmod(p, 0777), 0);
    expect_refused(p, "writable by other users");
    assert_int_equal(chmod(p, 0770), 0);
    expect_refused(p, "writable by other users");
    assert_int_equal(chmod(p, 01770), 0);            /* sticky and ours */
    struct bm_err err = BM_ERR_INIT;
    assert_int_equal(dump_check_dir(p, &err), 0);
    assert_int_equal(chmod(p, 01777), 0);
    assert_int_equal(dump_check_dir(p, &err), 0);
    /* Sticky but someone else's (as root: give it away). */
    if (geteuid() == 0) {
        assert_int_equal(chown(p, 65534, 65534), 0);
        expect_refused(p, "writable by other users");
        assert_int_equal(chown(p, 0, 0), 0);
    }
    /* The dump re-checks at crash time: a directory opened up since. */
    assert_int_equal(chmod(p, 0777), 0);
    struct fake *f = fake_new();
    struct dump_source src = { ranges, 2, fake_read, NULL, f };
    struct dump_result res;
    bm_err_clear(&err);
    assert_int_equal(dump_write_raw(p, &src, &meta, NULL, &res, &err), -1);
    assert_non_null(strstr(bm_err_msg(&err), "writable by other users"));
    assert_empty(p);
    fake_free(f);
    rm_rf(d);
    free(d);
}

/* Not writable, for real. Root passes every permission check, so: a child
 * that drops to nobody against a 0500 directory; as root, an immutable
 * directory (chattr +i, refused to root too) and a read-only mount. */
static void test_check_dir_unwritable(void **state)
{
    (void)state;
    char *d = tmpdir("dump");
    char p[512];
    int tried = 0;
    snprintf(p, sizeof p, "%s/ro", d);
    assert_int_equal(mkdir(p, 0500), 0);
    assert_int_equal(chmod(d, 0755), 0);
    if (geteuid() == 0) {
        assert_int_equal(chown(p, 65534, 65534), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            if (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 ||
                setresuid(65534, 65534, 65534) < 0)
                _exit(3);
            struct bm_err err = BM_ERR_INIT;
            if (dump_check_dir(p, &err) == 0)
                _exit(1);
            _exit(strstr(bm_err_msg(&err), "not writable") != NULL ? 0 : 2);
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        tried++;
        assert_int_equal(chown(p, 0, 0), 0);
        assert_int_equal(chmod(p, 0700), 0);
        /* Immutable: the kernel refuses root too. */
        int fd = open(p, O_RDONLY | O_DIRECTORY);
        int fl = 0;
        if (fd >= 0 && ioctl(fd, T_FS_IOC_GETFLAGS, &fl) == 0) {
            fl |= T_FS_IMMUTABLE_FL;
            if (ioctl(fd, T_FS_IOC_SETFLAGS, &fl) == 0) {
                expect_refused(p, "not writable");
                fl &= ~T_FS_IMMUTABLE_FL;
                assert_int_equal(ioctl(fd, T_FS_IOC_SETFLAGS, &fl), 0);
                tried++;
            }
        }
        if (fd >= 0)
            close(fd);
        if (can_mount) {
            assert_int_equal(mount("tmpfs", p, "tmpfs", MS_RDONLY, "size=64k,mode=0700"), 0);
            expect_refused(p, "read-only");
            assert_int_equal(umount2(p, MNT_DETACH), 0);
            tried++;
        }
    } else {
        expect_refused(p, "not writable");
        tried++;
    }
    rm_rf(d);
    free(d);
    if (tried == 0)
        skip();
}

int main(void)
{
    /* As root: a private mount namespace for this process (single-threaded
     * here), so the tmpfs mounts of the tests stay invisible to the host. */
    if (geteuid() == 0 && unshare(CLONE_NEWNS) == 0 &&
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0)
        can_mount = true;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate(test_image, (void *)&v_read_default),
        cmocka_unit_test_prestate(test_image, (void *)&v_map_default),
        cmocka_unit_test_prestate(test_image, (void *)&v_map_small),
        cmocka_unit_test_prestate(test_image, (void *)&v_read_small),
        cmocka_unit_test_prestate(test_image, (void *)&v_mixed_small),
        cmocka_unit_test_prestate(test_image, (void *)&v_buffered),
        cmocka_unit_test_prestate(test_image, (void *)&v_inline),
        cmocka_unit_test_prestate(test_image, (void *)&v_inline_buf),
        cmocka_unit_test(test_unaligned_ranges),
        cmocka_unit_test(test_big_gap_zero_tail),
        cmocka_unit_test(test_read_failure_leaves_nothing),
        cmocka_unit_test(test_unmappable_leaves_nothing),
        cmocka_unit_test(test_cancel_leaves_nothing),
        cmocka_unit_test(test_enospc_leaves_nothing),
        cmocka_unit_test(test_write_error_leaves_nothing),
        cmocka_unit_test(test_bad_input_leaves_nothing),
        cmocka_unit_test(test_replace_and_keep),
        cmocka_unit_test(test_check_dir_create),
        cmocka_unit_test(test_check_dir_links),
        cmocka_unit_test(test_check_dir_others_writable),
        cmocka_unit_test(test_check_dir_unwritable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
