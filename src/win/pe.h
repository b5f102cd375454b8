/* pe.h - PE32+ images as loaded in guest memory: headers, sections, exports
 * and the CodeView (RSDS) debug record.
 *
 * The image is read through a callback, so the same code works on a live
 * guest (paging_read_virt_cb), a dump, or a test buffer. Everything in the
 * image is hostile: every RVA and length is checked against SizeOfImage
 * before it is read, and every count is capped before it is looped over.
 */
#ifndef BM_WIN_PE_H
#define BM_WIN_PE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

/* Read `len` bytes of guest virtual memory at `va` into `buf`; 0 or -1 with
 * `err` set. Same shape as paging_read_fn. */
typedef int (*pe_read_fn)(void *ctx, uint64_t va, void *buf, size_t len,
                          struct bm_err *err);

#define PE_MAX_SECTIONS   96            /* the Windows loader's own limit */
#define PE_MAX_IMAGE_SIZE (512u << 20)  /* ntoskrnl is ~10-16 MiB */
#define PE_MAX_LFANEW     0x10000u
#define PE_MAX_NAMES      65536u        /* NumberOfNames / NumberOfFunctions */
#define PE_MAX_NAME_LEN   256u          /* export, DLL and forwarder names */
#define PE_MAX_PDB_NAME   256u
#define PE_MAX_DEBUG_DIRS 64u

#define PE_DIR_EXPORT 0
#define PE_DIR_DEBUG  6
#define PE_MACHINE_AMD64 0x8664
#define PE_SCN_MEM_EXECUTE 0x20000000u

struct pe_section {
    char name[9];               /* NUL-terminated, may be shorter than 8 */
    uint32_t rva;
    uint32_t vsize;
    uint32_t characteristics;
};

struct pe_image {
    pe_read_fn read;
    void *ctx;
    uint64_t base;              /* where the MZ header is */
    uint16_t machine;           /* PE_MACHINE_AMD64 for x64 */
    uint32_t timestamp;
    uint32_t size_of_image;
    uint32_t size_of_headers;
    uint32_t entry_rva;
    uint64_t image_base;        /* preferred base from the optional header */
    uint32_t ndirs;             /* data directories present (<= 16) */
    struct { uint32_t rva, size; } dirs[16];
    uint16_t nsections;
    struct pe_section sections[PE_MAX_SECTIONS];
};

/* The export directory, validated: its tables lie inside the image. */
struct pe_exports {
    uint32_t dir_rva, dir_size;
    uint32_t ordinal_base;
    uint32_t nfunctions, nnames;
    uint32_t functions_rva, names_rva, ordinals_rva;
    char dll_name[PE_MAX_NAME_LEN + 1];     /* e.g. "ntoskrnl.exe" */
};

struct pe_export {
    uint32_t rva;               /* function RVA; for a forwarder, its string's */
    uint16_t ordinal;           /* biased: ordinal_base + index */
    bool forwarder;             /* RVA points into the export directory */
    char forward[PE_MAX_NAME_LEN + 1];      /* "NTDLL.RtlFoo" if forwarder */
};

/* CodeView RSDS record: identifies the PDB (and so the symbol profile). */
struct pe_rsds {
    uint8_t guid_raw[16];       /* as stored: Data1 LE u32, Data2/3 LE u16, Data4 */
    char guid[33];              /* 32 uppercase hex, Windows text order */
    uint32_t age;
    char pdb_name[PE_MAX_PDB_NAME + 1];     /* e.g. "ntkrnlmp.pdb" */
};

/* Validate the headers at `base` (MZ, e_lfanew, PE\0\0, PE32+ magic 0x20b,
 * SizeOfImage, SizeOfHeaders, section table) and fill `img`. */
int pe_open(struct pe_image *img, pe_read_fn read, void *ctx, uint64_t base,
            struct bm_err *err);

/* Read `len` bytes at `rva`, refusing anything outside SizeOfImage. */
int pe_read_rva(const struct pe_image *img, uint32_t rva, void *buf, size_t len,
                struct bm_err *err);

/* Read a NUL-terminated string at `rva` of at most `max` bytes (not counting
 * the NUL) into `out` (size max + 1). Fails if unterminated within `max` or
 * the image. */
int pe_read_string(const struct pe_image *img, uint32_t rva, char *out,
                   size_t max, struct bm_err *err);

/* The section containing `rva`, or NULL. */
const struct pe_section *pe_section_at(const struct pe_image *img, uint32_t rva);

/* Validate and describe the export directory. Fails if the image has none. */
int pe_exports_open(const struct pe_image *img, struct pe_exports *ex,
                    struct bm_err *err);

/* Look an export up by name. Fails (naming it) if absent. Uses a binary
 * search (the loader's own method, names are sorted), then a bounded linear
 * pass in case an image's table is not sorted. */
int pe_export_find(const struct pe_image *img, const struct pe_exports *ex,
                   const char *name, struct pe_export *out, struct bm_err *err);

/* Find the first CodeView debug entry and parse its RSDS record. */
int pe_read_rsds(const struct pe_image *img, struct pe_rsds *out,
                 struct bm_err *err);

/* Format a raw GUID in Windows text order as 32 uppercase hex digits. */
void pe_guid_format(const uint8_t raw[16], char out[33]);

#endif
