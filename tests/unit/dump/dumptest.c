/* See dumptest.h. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dumptest.h"

struct fake *fake_alloc(size_t size, const struct dump_range *ranges, size_t nranges)
{
    struct fake *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->mem = aligned_alloc(PAGE, size);
    assert_non_null(f->mem);
    memset(f->mem, 0, size);
    f->size = size;
    f->ranges = ranges;
    f->nranges = nranges;
    return f;
}

void fake_free(struct fake *f)
{
    free(f->mem);
    free(f);
}

bool fake_in_ram(const struct fake *f, uint64_t pa, size_t len)
{
    for (size_t i = 0; i < f->nranges; i++)
        if (pa >= f->ranges[i].start && pa + len - 1 <= f->ranges[i].end)
            return true;
    return false;
}

int fake_read(void *ctx, uint64_t pa, void *buf, size_t len, struct bm_err *err)
{
    struct fake *f = ctx;
    f->reads++;
    if (!fake_in_ram(f, pa, len))
        f->outside = true;
    if (f->fail_at && pa <= f->fail_at && f->fail_at < pa + len)
        return bm_err_set(err, "fake read failure (QEMU died)");
    assert_true(pa + len <= f->size);
    memcpy(buf, f->mem + pa, len);
    return 0;
}

const void *fake_map(void *ctx, uint64_t pa, size_t len)
{
    struct fake *f = ctx;
    if (!fake_in_ram(f, pa, len))
        f->outside = true;
    if (f->map_some && (pa / MIB) % 2 == 1)
        return NULL;
    assert_true(pa + len <= f->size);
    f->maps++;
    return f->mem + pa;
}

char *tmpdir(const char *name)
{
    char t[128];
    snprintf(t, sizeof t, "/tmp/bsodmon-unit-%s-XXXXXX", name);
    char *d = strdup(t);
    assert_non_null(d);
    assert_non_null(mkdtemp(d));
    return d;
}

void rm_rf(const char *d)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "chattr -R -i '%s' 2>/dev/null; rm -rf '%s'", d, d);
    assert_int_equal(system(cmd), 0);
}

int entries(const char *d, char *names, size_t len)
{
    DIR *dir = opendir(d);
    assert_non_null(dir);
    int n = 0;
    if (names)
        names[0] = '\0';
    for (struct dirent *e; (e = readdir(dir)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        n++;
        if (names)
            snprintf(names + strlen(names), len - strlen(names), "%s/", e->d_name);
    }
    closedir(dir);
    return n;
}

uint8_t *read_path(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    uint8_t *buf = malloc((size_t)st.st_size + 1);
    assert_non_null(buf);
    assert_int_equal(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
    buf[st.st_size] = 0;
    close(fd);
    *len = (size_t)st.st_size;
    return buf;
}

void sha256_hex(const uint8_t *p, size_t n, char hex[65])
{
    unsigned char md[32];
    unsigned int len = 0;
    assert_int_equal(EVP_Digest(p, n, md, &len, EVP_sha256(), NULL), 1);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}
