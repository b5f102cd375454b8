/* Unit tests of dump/ with an in-memory source: two RAM ranges around a gap,
 * random, zero and patterned pages; holes, hash, permissions, failures. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dump/dump.h"

#define MIB (1u << 20)
/* RAM 0-6 MiB and 8-10 MiB: a 2 MiB gap, as the PCI hole is below 4 GiB. */
static const struct dump_range ranges[] = { { 0, 6 * MIB - 1 }, { 8 * MIB, 10 * MIB - 1 } };

struct fake {
    uint8_t *mem; /* 10 MiB, indexed by physical address */
    uint64_t fail_at; /* read of this address fails; 0: never */
    int reads;
};

static int fake_read(void *ctx, uint64_t pa, void *buf, size_t len, struct bm_err *err)
{
    struct fake *f = ctx;
    f->reads++;
    if (f->fail_at && pa <= f->fail_at && f->fail_at < pa + len)
        return bm_err_set(err, "fake read failure at %#llx", (unsigned long long)f->fail_at);
    memcpy(buf, f->mem + pa, len);
    return 0;
}

static struct fake *fake_new(void)
{
    struct fake *f = calloc(1, sizeof *f);
    f->mem = calloc(1, 10 * MIB);
    srand(7);
    for (uint64_t pa = 0; pa < 10 * MIB; pa += 4096) {
        if (pa >= 6 * MIB && pa < 8 * MIB)
            continue;                       /* the gap: never read */
        unsigned kind = (unsigned)(pa / 4096) % 5;
        if (kind == 0 || kind == 1)
            continue;                       /* zero pages */
        for (unsigned i = 0; i < 4096; i++)
            f->mem[pa + i] = kind == 2 ? (uint8_t)rand() : (uint8_t)(pa >> 12) ^ (uint8_t)i;
    }
    f->mem[9 * MIB + 4095] = 1;            /* one byte at a page end */
    return f;
}

static void fake_free(struct fake *f)
{
    free(f->mem);
    free(f);
}

static char *tmpdir(void)
{
    char *d = strdup("/tmp/bsodmon-unit-dump-XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void rm_rf(const char *d)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    assert_int_equal(system(cmd), 0);
}

static const struct dump_meta meta = {
    .kernel_base = 0xfffff80012340000ull, .code = 0x50, .p = { 1, 2, 3, 4 }, .cr3 = 0x1a3000,
    .rsp = 0xfffff88012345670ull, .bugcheck_name = "PAGE_FAULT_IN_NONPAGED_AREA", .vcpu = 1,
    .pdb_guid = "32C1A669D5FFEFD41091F636CFDB6E99-1",
};

static void test_image(void **state)
{
    (void)state;
    struct fake *f = fake_new();
    char *d = tmpdir();
    struct dump_source src = { ranges, 2, fake_read, NULL, f };
    struct dump_result res;
    struct bm_err err = BM_ERR_INIT;
    assert_int_equal(dump_write_raw(d, &src, &meta, NULL, &res, &err), 0);
    char path[512];
    snprintf(path, sizeof path, "%s/crashdump.bin", d);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, 10 * MIB);
    assert_int_equal(st.st_mode & 07777, 0600);
    uint8_t *img = malloc(10 * MIB);
    assert_int_equal(pread(fd, img, 10 * MIB, 0), 10 * MIB);
    assert_memory_equal(img, f->mem, 10 * MIB);      /* byte N = address N */
    /* The gap and zero pages are holes; data pages are not. */
    assert_int_equal(lseek(fd, 6 * MIB, SEEK_HOLE), 6 * MIB);
    assert_int_equal(lseek(fd, 6 * MIB, SEEK_DATA), 8 * MIB); /* page 2048 holds data */
    assert_int_equal(lseek(fd, 0, SEEK_DATA), 2 * 4096);
    assert_true((uint64_t)st.st_blocks * 512 < 10 * MIB * 7 / 10);
    uint64_t nonzero = 0;
    static const uint8_t zpage[4096];
    for (size_t r = 0; r < 2; r++)
        for (uint64_t pa = ranges[r].start; pa < ranges[r].end; pa += 4096)
            nonzero += memcmp(f->mem + pa, zpage, 4096) != 0 ? 4096 : 0;
    assert_int_equal(res.written_bytes, nonzero);
    assert_int_equal(res.ram_bytes, 8 * MIB);
    unsigned char md[32];
    unsigned int mdlen;
    EVP_Digest(img, 10 * MIB, md, &mdlen, EVP_sha256(), NULL);
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    assert_string_equal(res.sha256, hex);
    snprintf(path, sizeof path, "%s/crashdump.metadata", d);
    json_object *o = json_object_from_file(path);
    assert_non_null(o);
    json_object *v;
    assert_true(json_object_object_get_ex(o, "Sha256", &v));
    assert_string_equal(json_object_get_string(v), hex);
    assert_true(json_object_object_get_ex(o, "KernelBase", &v));
    assert_string_equal(json_object_get_string(v), "fffff80012340000");
    assert_true(json_object_object_get_ex(o, "RSP", &v));
    assert_string_equal(json_object_get_string(v), "fffff88012345670");
    assert_true(json_object_object_get_ex(o, "DumpSize", &v));
    assert_int_equal(json_object_get_int64(v), 10 * MIB);
    json_object_put(o);
    close(fd);
    free(img);
    /* A second dump replaces the first. */
    f->mem[0] = 0x42;
    assert_int_equal(dump_write_raw(d, &src, &meta, NULL, &res, &err), 0);
    snprintf(path, sizeof path, "%s/crashdump.bin", d);
    fd = open(path, O_RDONLY);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, 0), 1);
    assert_int_equal(b, 0x42);
    close(fd);
    rm_rf(d);
    free(d);
    fake_free(f);
}

static int count_entries(const char *d)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) -eq 0", d);
    return system(cmd) == 0 ? 0 : 1;
}

static void test_read_failure_leaves_nothing(void **state)
{
    (void)state;
    struct fake *f = fake_new();
    f->fail_at = 9 * MIB;
    char *d = tmpdir();
    struct dump_source src = { ranges, 2, fake_read, NULL, f };
    struct dump_result res;
    struct bm_err err = BM_ERR_INIT;
    assert_int_equal(dump_write_raw(d, &src, &meta, NULL, &res, &err), -1);
    assert_non_null(strstr(bm_err_msg(&err), "fake read failure"));
    assert_int_equal(count_entries(d), 0);
    rm_rf(d);
    free(d);
    fake_free(f);
}

static void cancel_after_first(void *ctx, uint64_t done, uint64_t total)
{
    (void)done;
    (void)total;
    *(volatile int *)ctx = 1;
}

static void test_cancel_leaves_nothing(void **state)
{
    (void)state;
    struct fake *f = fake_new();
    char *d = tmpdir();
    volatile int cancel = 0;
    struct dump_source src = { ranges, 2, fake_read, NULL, f };
    struct dump_opts opts = { cancel_after_first, (void *)&cancel, &cancel, NULL, NULL };
    struct dump_result res;
    struct bm_err err = BM_ERR_INIT;
    assert_int_equal(dump_write_raw(d, &src, &meta, &opts, &res, &err), -1);
    assert_non_null(strstr(bm_err_msg(&err), "interrupted"));
    assert_int_equal(count_entries(d), 0);
    rm_rf(d);
    free(d);
    fake_free(f);
}

static void test_bad_ranges(void **state)
{
    (void)state;
    struct fake *f = fake_new();
    char *d = tmpdir();
    static const struct dump_range overlap[] = { { 0, 4 * MIB }, { 4 * MIB, 5 * MIB } };
    struct dump_source src = { overlap, 2, fake_read, NULL, f };
    struct dump_result res;
    struct bm_err err = BM_ERR_INIT;
    assert_int_equal(dump_write_raw(d, &src, &meta, NULL, &res, &err), -1);
    struct dump_source none = { ranges, 0, fake_read, NULL, f };
    bm_err_clear(&err);
    assert_int_equal(dump_write_raw(d, &none, &meta, NULL, &res, &err), -1);
    assert_int_equal(count_entries(d), 0);
    rm_rf(d);
    free(d);
    fake_free(f);
}

static void test_check_dir(void **state)
{
    (void)state;
    char *d = tmpdir();
    char p[512];
    struct bm_err err = BM_ERR_INIT;
    snprintf(p, sizeof p, "%s/new", d);
    assert_int_equal(dump_check_dir(p, &err), 0);        /* created 0700 */
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    snprintf(p, sizeof p, "%s/a/b", d);
    assert_int_equal(dump_check_dir(p, &err), -1);       /* missing parent */
    char link[512];
    snprintf(p, sizeof p, "%s/new", d);
    snprintf(link, sizeof link, "%s/link", d);
    assert_int_equal(symlink(p, link), 0);
    bm_err_clear(&err);
    assert_int_equal(dump_check_dir(link, &err), -1);
    assert_non_null(strstr(bm_err_msg(&err), "symbolic link"));
    assert_int_equal(chmod(p, 0777), 0);
    bm_err_clear(&err);
    assert_int_equal(dump_check_dir(p, &err), -1);
    assert_non_null(strstr(bm_err_msg(&err), "writable by other"));
    assert_int_equal(chmod(p, 01777), 0);                /* sticky and ours */
    bm_err_clear(&err);
    assert_int_equal(dump_check_dir(p, &err), 0);
    rm_rf(d);
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_image),
        cmocka_unit_test(test_read_failure_leaves_nothing),
        cmocka_unit_test(test_cancel_leaves_nothing),
        cmocka_unit_test(test_bad_ranges),
        cmocka_unit_test(test_check_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
