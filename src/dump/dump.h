/* dump.h - crash dumps of guest physical memory, written fast and safely.
 *
 * The image is flat: byte N of DIR/crashdump.bin = guest-physical address N,
 * RAM above 4 GiB at its real address. What is not RAM (MMIO, the PCI hole)
 * and every all-zero RAM page is a file hole: the file is sparse, and device
 * memory is never read. Volatility 3 / MemProcFS open it as a raw layer.
 *
 * Files are created 0600 under temporary names inside DIR (O_CREAT|O_EXCL|
 * O_NOFOLLOW), fsync'ed, and renamed to their final names only when complete,
 * the metadata last, then DIR is fsync'ed. A failed or interrupted dump
 * removes its temporary files and leaves nothing that looks like a finished
 * dump; a previous complete dump in DIR stays until a new one replaces it.
 *
 * Library code: no printing; errors through `struct bm_err` (base/err.h).
 */
#ifndef BM_DUMP_DUMP_H
#define BM_DUMP_DUMP_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#include "base/err.h"

#define DUMP_BIN_NAME "crashdump.bin"
#define DUMP_DMP_NAME "crashdump.dmp"
#define DUMP_META_NAME "crashdump.metadata"

/* Which files a dump writes (a bit mask): the flat image, the Windows crash
 * dump, or both from one pass over RAM. */
#define DUMP_RAW 0x1u
#define DUMP_DMP 0x2u

/* Guest-physical RAM, inclusive end. A source's ranges are sorted, disjoint
 * and below 2^52; the image ends at the last range's end + 1. */
struct dump_range {
    uint64_t start, end;
};

/* Where the RAM comes from. Only addresses inside `ranges` are asked for.
 *  - read: copy [pa, pa+len) into buf (len <= the chunk size, 8 MiB by
 *    default); 0, or -1 with `err` set (e.g. QEMU died): the dump fails.
 *  - map: optional fast path (e.g. a shm-backed guest): a pointer to the
 *    bytes of [pa, pa+len) that stays valid and unchanged until the dump
 *    returns (the guest is paused), or NULL to use `read` for that chunk.
 *    The image is written straight from it, without a copy.
 * Both are called from the dumping thread only. */
struct dump_source {
    const struct dump_range *ranges;
    size_t nranges;
    int (*read)(void *ctx, uint64_t pa, void *buf, size_t len, struct bm_err *err);
    const void *(*map)(void *ctx, uint64_t pa, size_t len);
    void *ctx;
};

/* The crash the dump belongs to, for the metadata file. */
/* A field the metadata carries after its own (bsodmon's analysis: the same
 * names and values as in the event). A number is written "0x" + hex. */
#define DUMP_META_EXTRA_MAX 24
struct dump_meta_field {
    const char *name;
    bool is_str;
    uint64_t num;
    const char *str;           /* str_len bytes; non-ASCII bytes are written as '?' */
    size_t str_len;
};

struct dump_meta {
    uint64_t kernel_base;
    uint64_t code, p[4];
    uint64_t cr3, rsp;
    const char *bugcheck_name; /* NULL: "UNKNOWN_CODE" */
    unsigned vcpu;
    struct timeval time;       /* host time of the trap */
    const char *pdb_guid;      /* "GUID-AGE" of the kernel's PDB, or NULL (null in JSON) */
    const char *dmp_warnings;  /* what crashdump.dmp lacks ("; "-separated), or NULL */
    const struct dump_meta_field *extra;    /* written last, in order */
    size_t nextra;             /* <= DUMP_META_EXTRA_MAX */
};

struct dump_opts {
    /* Called from the dumping thread after each chunk and once at the end
     * (done == total, after the data is on disk): RAM bytes dumped so far,
     * and RAM bytes in all. Holes outside RAM do not count. The caller
     * decides what to print (e.g. only for dumps longer than a second). */
    void (*progress)(void *ctx, uint64_t done, uint64_t total);
    void *progress_ctx;
    /* Checked between chunks (and before the final renames): nonzero cancels
     * the dump (a SIGINT/SIGTERM handler sets it). May be NULL. */
    volatile sig_atomic_t *cancel;
    /* Called before each check of *cancel, to refresh it (e.g. read a
     * signalfd); may be NULL. */
    void (*poll_cancel)(void *ctx);
    void *poll_ctx;
};

/* Knobs for tests and benchmarks (dump_write_raw_tuned); all 0 is the tuned
 * default that dump_write_raw uses. */
#define DUMP_F_BUFFERED     0x1u /* page cache writes, no O_DIRECT */
#define DUMP_F_INLINE_WRITE 0x2u /* write in the dumping thread, no writer thread */
#define DUMP_F_INLINE_HASH  0x4u /* hash in the dumping thread, no hashing thread */

struct dump_tune {
    unsigned flags; /* DUMP_F_* */
    size_t chunk;   /* bytes read and scanned at a time: a power of two in
                       64 KiB .. 256 MiB; 0: 8 MiB */
};

/* One file of a dump. */
struct dump_file_result {
    const char *name;       /* DUMP_BIN_NAME or DUMP_DMP_NAME */
    const char *format;     /* "raw" or "dmp" */
    uint64_t size;          /* apparent size */
    uint64_t written_bytes; /* bytes of data written (non-zero pages, the dmp header) */
    char sha256[65];        /* of the file as a reader sees it, lowercase hex */
    bool direct;            /* written with O_DIRECT */
};

struct dump_result {
    /* The first file (crashdump.bin when it is written, else crashdump.dmp). */
    uint64_t size;          /* its apparent size */
    uint64_t ram_bytes;     /* RAM bytes dumped (read once, whatever the formats) */
    uint64_t written_bytes; /* bytes of its non-zero RAM pages written; the rest are holes */
    char sha256[65];        /* of it as a reader sees it, lowercase hex */
    bool direct;            /* it was written with O_DIRECT */
    double seconds;         /* wall time of the whole dump, files committed */
    unsigned nfiles;        /* every file, in the order raw, dmp */
    struct dump_file_result file[2];
};

/* ---- the Windows crash dump (crashdump.dmp) ----------------------------
 *
 * A complete memory dump: a 0x2000-byte DUMP_HEADER64 ("PAGE" "DU64",
 * DumpType 1), then the pages of each PhysicalMemoryBlock run back to back.
 * The runs are the RAM ranges (page-aligned, at most 42; beyond that the
 * closest ranges are merged and the gap between them reads as zeros); every
 * all-zero page is a file hole. The facts below are the caller's (win/
 * knows where Windows keeps them); a field it could not learn is 0. The
 * patches change the dump's copy of memory only: the bytes of RAM at `pa`
 * are replaced by `bytes` on their way into crashdump.dmp, never in the
 * guest and never in crashdump.bin. */
#define DUMP_DMP_HEADER_SIZE 0x2000u
#define DUMP_DMP_MAX_RUNS 42u
#define DUMP_DMP_CONTEXT_SIZE 0x4d0u
#define DUMP_DMP_MAX_PATCHES 512u

struct dump_patch {
    uint64_t pa;            /* guest-physical, inside a RAM range */
    uint32_t len;           /* 1..4096; the patch stays within its page */
    const uint8_t *bytes;
};

struct dump_dmp {
    uint32_t major_version, minor_version;
    uint64_t directory_table_base;
    uint64_t pfn_database;
    uint64_t ps_loaded_module_list, ps_active_process_head;
    uint32_t machine_image_type;
    uint32_t number_processors;
    uint32_t bugcheck_code;
    uint64_t bugcheck_param[4];
    uint64_t kd_debugger_data_block;
    uint8_t context[DUMP_DMP_CONTEXT_SIZE];    /* ContextRecord, as bytes */
    uint32_t exception_code, exception_flags;
    uint64_t exception_address;
    uint64_t system_time, system_uptime;        /* 100 ns units */
    uint32_t product_type, suite_mask;
    uint8_t kd_secondary_version;
    char comment[128];                          /* ASCII, NUL-terminated */
    /* Sorted by pa, disjoint, at most DUMP_DMP_MAX_PATCHES. */
    const struct dump_patch *patches;
    size_t npatches;
};

/* Start-up check of --crashdump-dir, before the guest is touched. Refuses a
 * symbolic link, a non-directory, a missing parent, a directory writable by
 * others (group or world) unless it has the sticky bit and belongs to the
 * effective user, and one where a file cannot actually be created (the check
 * creates and removes an empty temporary file: this catches read-only mounts,
 * immutable directories and missing permissions alike, for root too); refuses
 * an existing crashdump.bin/.metadata that is a directory. Creates a missing
 * last component 0700 when its parent exists. */
int dump_check_dir(const char *dir, struct bm_err *err);

/* Load what writing a dump needs that a run without dumps does not map
 * (libcrypto, for the SHA-256: dump/cryptoapi.h). Called with the directory
 * check at start, so a missing library is said then, not at crash time. */
int dump_prepare(struct bm_err *err);

/* Write DIR/crashdump.bin and DIR/crashdump.metadata from `src`. `opts` may
 * be NULL; `res` is filled on success (and partly on failure). On failure,
 * -1 with `err` set, and DIR holds no temporary file of this dump and no
 * dump that mixes old and new files (a previous complete dump may remain). */
int dump_write_raw(const char *dir, const struct dump_source *src, const struct dump_meta *meta,
                   const struct dump_opts *opts, struct dump_result *res, struct bm_err *err);

/* The dump in the formats `formats` (DUMP_RAW, DUMP_DMP or both) from one
 * pass over RAM: each chunk is read once and goes to every file. `dmp` is
 * needed for DUMP_DMP (else may be NULL). Safe-file rules as above; the
 * metadata lists every file with its size and SHA-256; a final name of the
 * format not written this time (left by an earlier dump) is removed, so
 * the directory never mixes two dumps. */
int dump_write(const char *dir, unsigned formats, const struct dump_source *src,
               const struct dump_meta *meta, const struct dump_dmp *dmp,
               const struct dump_opts *opts, const struct dump_tune *tune,
               struct dump_result *res, struct bm_err *err);

/* The same with knobs; `tune` may be NULL. */
int dump_write_raw_tuned(const char *dir, const struct dump_source *src,
                         const struct dump_meta *meta, const struct dump_opts *opts,
                         const struct dump_tune *tune, struct dump_result *res,
                         struct bm_err *err);

/* --- internal: between dump_raw.c, dump_files.c and dump_meta.c --------- */

/* Open DIR (O_NOFOLLOW) and re-check it as dump_check_dir does, without the
 * probe file. The descriptor, or -1. */
int dump_open_dir(const char *dir, struct bm_err *err);
/* Create a 0600 temporary file ".NAME.tmp-XXXXXXXXXXXX" in dirfd (O_EXCL,
 * O_NOFOLLOW); its name goes to tmp_name. The descriptor, or -1. */
int dump_create_temp(int dirfd, const char *final_name, char *tmp_name, size_t len,
                     struct bm_err *err);
/* Rename the temporaries to their final names (the images first, in order,
 * the metadata last; an older metadata file is removed before any image is
 * replaced, and so is an older image in `stale`, a final name this dump
 * does not write) and fsync the directory. On failure nothing of the new
 * dump keeps a final name; the temporaries are left to the caller. */
int dump_commit(int dirfd, const char *const img_tmp[], const char *const img_name[], size_t n,
                const char *meta_tmp, const char *stale, struct bm_err *err);

/* The dmp file's layout: runs and where each RAM byte goes (dump_dmp.c). */
struct dump_dmp_run {
    uint64_t base_page, pages;
    uint64_t file_off;      /* of the run's first page */
};
struct dump_dmp_layout {
    struct dump_dmp_run run[DUMP_DMP_MAX_RUNS];
    size_t nruns;
    uint64_t pages;         /* in all runs */
    uint64_t file_size;     /* header + pages */
};
int dump_dmp_layout(const struct dump_source *src, struct dump_dmp_layout *lay,
                    struct bm_err *err);
/* File offset of RAM byte pa (inside one of the source's ranges). */
uint64_t dump_dmp_file_off(const struct dump_dmp_layout *lay, uint64_t pa);
/* Patches sorted, disjoint, each within a page and inside RAM. */
int dump_dmp_check(const struct dump_dmp *d, const struct dump_source *src, struct bm_err *err);
/* The DUMP_HEADER64. */
void dump_dmp_header(const struct dump_dmp *d, const struct dump_dmp_layout *lay,
                     uint8_t hdr[DUMP_DMP_HEADER_SIZE]);
/* The first patch that ends after pa (patches are sorted), from *cursor on;
 * true if any of them overlaps [pa, pa+len). */
bool dump_dmp_touches(const struct dump_dmp *d, size_t *cursor, uint64_t pa, uint64_t len);
/* Apply to buf (= RAM [pa, pa+len)) every patch overlapping it. */
void dump_dmp_apply(const struct dump_dmp *d, size_t cursor, uint64_t pa, uint8_t *buf,
                    uint64_t len);
/* The metadata JSON (one line) into an open file. */
int dump_meta_write(int fd, const struct dump_meta *meta, const struct dump_source *src,
                    const struct dump_result *res, struct bm_err *err);

#endif
