/* dump.h - crash dumps of guest physical memory, written safely.
 *
 * The image is flat (byte N of the file = guest-physical address N, RAM above
 * 4 GiB at its real address). What is not RAM, and every all-zero RAM page,
 * is a file hole: the file is sparse, and device memory is never read. Files
 * are created 0600 under temporary names inside the directory (O_EXCL,
 * O_NOFOLLOW), fsync'ed, and renamed to their final names only when
 * complete, the metadata last; a failed or interrupted dump leaves nothing
 * that looks like a finished one.
 */
#ifndef BM_DUMP_DUMP_H
#define BM_DUMP_DUMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#include "base/err.h"

#define DUMP_BIN_NAME "crashdump.bin"
#define DUMP_META_NAME "crashdump.metadata"

struct dump_range {
    uint64_t start, end; /* guest-physical RAM, inclusive end; sorted, disjoint */
};

/* Where the RAM comes from. `map` is optional: a directly readable pointer
 * (zero copy), or NULL to fall back to `read`. */
struct dump_source {
    const struct dump_range *ranges;
    size_t nranges;
    int (*read)(void *ctx, uint64_t pa, void *buf, size_t len, struct bm_err *err);
    const void *(*map)(void *ctx, uint64_t pa, size_t len);
    void *ctx;
};

/* The crash the dump belongs to, for the metadata file. */
struct dump_meta {
    uint64_t kernel_base;
    uint64_t code, p[4];
    uint64_t cr3, rsp;
    const char *bugcheck_name;
    unsigned vcpu;
    struct timeval time;
    const char *pdb_guid; /* "GUID-AGE", or NULL */
};

struct dump_opts {
    /* Called after every chunk: bytes of the image done and total. */
    void (*progress)(void *ctx, uint64_t done, uint64_t total);
    void *progress_ctx;
    /* Polled between chunks: nonzero cancels the dump. */
    volatile int *cancel;
    void (*poll_cancel)(void *ctx); /* refreshes *cancel; may be NULL */
    void *poll_ctx;
};

struct dump_result {
    uint64_t size;          /* apparent size of crashdump.bin */
    uint64_t ram_bytes;     /* RAM bytes covered */
    uint64_t written_bytes; /* non-zero RAM bytes actually written */
    char sha256[65];
    double seconds;
};

/* Start-up check of --crashdump-dir, before the guest is touched: refuses a
 * symbolic link, a non-directory, a directory that cannot be written, or one
 * writable by others unless it has the sticky bit and is ours; creates a
 * missing last component 0700 when its parent exists. */
int dump_check_dir(const char *dir, struct bm_err *err);

/* Write DIR/crashdump.bin and DIR/crashdump.metadata. */
int dump_write_raw(const char *dir, const struct dump_source *src, const struct dump_meta *meta,
                   const struct dump_opts *opts, struct dump_result *res, struct bm_err *err);

/* --- between dump_raw.c and dump_files.c / dump_meta.c --- */

/* Open the directory safely and create a 0600 temporary file in it. */
int dump_open_dir(const char *dir, struct bm_err *err);
int dump_create_temp(int dirfd, const char *final_name, char *tmp_name, size_t len,
                     struct bm_err *err);
/* Write the metadata JSON to an open file. */
int dump_meta_write(int fd, const struct dump_meta *meta, const struct dump_source *src,
                    const struct dump_result *res, struct bm_err *err);

#endif
