/* What the dump/ unit tests share: an in-memory guest (RAM ranges over a
 * flat buffer indexed by physical address, with failure switches), and the
 * file helpers the tests read their results back with. cmocka asserts. */
#ifndef BSODMON_TESTS_DUMPTEST_H
#define BSODMON_TESTS_DUMPTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dump/dump.h"

#define MIB (1u << 20)
#define PAGE 4096u

struct fake {
    uint8_t *mem;                 /* `size` bytes indexed by physical address */
    size_t size;
    const struct dump_range *ranges;
    size_t nranges;
    uint64_t fail_at;             /* a read covering this address fails; 0: never */
    bool map_some;                /* map: only every other 1 MiB, else NULL */
    int reads, maps;
    bool outside;                 /* something outside RAM was asked for */
};

/* A zeroed guest of `size` bytes with these RAM ranges; the test fills it. */
struct fake *fake_alloc(size_t size, const struct dump_range *ranges, size_t nranges);
void fake_free(struct fake *f);
bool fake_in_ram(const struct fake *f, uint64_t pa, size_t len);
int fake_read(void *ctx, uint64_t pa, void *buf, size_t len, struct bm_err *err);
const void *fake_map(void *ctx, uint64_t pa, size_t len);

/* A new directory /tmp/bsodmon-unit-NAME-XXXXXX (free() it), and its removal
 * with everything in it, immutable flags included. */
char *tmpdir(const char *name);
void rm_rf(const char *d);
/* Entries of a directory (not . and ..); names joined by '/' when names. */
int entries(const char *d, char *names, size_t len);
/* A whole file, NUL-terminated (free() it). */
uint8_t *read_path(const char *path, size_t *len);
void sha256_hex(const uint8_t *p, size_t n, char hex[65]);

#endif
