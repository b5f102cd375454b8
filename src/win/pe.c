/* pe.c - see pe.h.
 *
 * Layout references: Microsoft "PE Format" (IMAGE_DOS_HEADER.e_lfanew at
 * 0x3c, IMAGE_FILE_HEADER 20 bytes, IMAGE_OPTIONAL_HEADER64 with data
 * directories at 112, IMAGE_SECTION_HEADER 40 bytes, IMAGE_EXPORT_DIRECTORY
 * 40 bytes, IMAGE_DEBUG_DIRECTORY 28 bytes) and the CodeView RSDS record
 * ("RSDS", GUID, age, NUL-terminated PDB path).
 *
 * Reads of names go page by page: a string that ends just before an
 * unmapped page must still be readable, and guest kernels do leave holes
 * (discarded INIT sections).
 */
#include "win/pe.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define OPT_MAGIC_PE32PLUS 0x20b
#define OPT_MAGIC_PE32     0x10b
#define OPT_FIXED_SIZE     112      /* PE32+ optional header without dirs */
#define DEBUG_TYPE_CODEVIEW 2
#define DEBUG_ENTRY_SIZE   28
#define EXPORT_DIR_SIZE    40
#define RSDS_HEADER_SIZE   24
#define NAME_BLOCK         1024     /* name pointers read per block */

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}
static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* True if [off, off+len) fits in [0, limit). */
static bool fits(uint64_t off, uint64_t len, uint64_t limit)
{
    return off <= limit && len <= limit - off;
}

int pe_read_rva(const struct pe_image *img, uint32_t rva, void *buf, size_t len,
                struct bm_err *err)
{
    if (!fits(rva, len, img->size_of_image))
        return bm_err_set(err, "PE image at 0x%" PRIx64 ": RVA 0x%" PRIx32 " + %zu "
                          "bytes lies outside SizeOfImage 0x%" PRIx32,
                          img->base, rva, len, img->size_of_image);
    return img->read(img->ctx, img->base + rva, buf, len, err);
}

/* Bytes from `rva` to the next 4 KiB boundary of the guest address, so one
 * piece never spans two guest pages. */
static size_t page_piece(const struct pe_image *img, uint32_t rva)
{
    return (size_t)(0x1000 - ((img->base + rva) & 0xfff));
}

int pe_read_string(const struct pe_image *img, uint32_t rva, char *out,
                   size_t max, struct bm_err *err)
{
    size_t got = 0;
    while (got <= max) {
        uint64_t at = (uint64_t)rva + got;
        if (at >= img->size_of_image)
            break;
        size_t piece = page_piece(img, (uint32_t)at);
        if (piece > max + 1 - got)
            piece = max + 1 - got;
        if (piece > img->size_of_image - at)
            piece = (size_t)(img->size_of_image - at);
        if (pe_read_rva(img, (uint32_t)at, out + got, piece, err) < 0)
            return -1;
        void *nul = memchr(out + got, 0, piece);
        if (nul != NULL)
            return 0;
        got += piece;
    }
    out[got > max ? max : got] = '\0';
    return bm_err_set(err, "PE image at 0x%" PRIx64 ": string at RVA 0x%" PRIx32
                      " is not terminated within %zu bytes or the image",
                      img->base, rva, max);
}

const struct pe_section *pe_section_at(const struct pe_image *img, uint32_t rva)
{
    for (unsigned i = 0; i < img->nsections; i++) {
        const struct pe_section *s = &img->sections[i];
        if (rva >= s->rva && (uint64_t)rva < (uint64_t)s->rva + s->vsize)
            return s;
    }
    return NULL;
}

static int parse_sections(struct pe_image *img, uint32_t table_rva,
                          struct bm_err *err)
{
    uint8_t raw[PE_MAX_SECTIONS * 40];
    size_t len = (size_t)img->nsections * 40;
    if (pe_read_rva(img, table_rva, raw, len, err) < 0) {
        bm_err_prefix(err, "reading the section table");
        return -1;
    }
    for (unsigned i = 0; i < img->nsections; i++) {
        const uint8_t *s = raw + i * 40;
        struct pe_section *d = &img->sections[i];
        memcpy(d->name, s, 8);
        d->name[8] = '\0';
        d->vsize = le32(s + 8);
        d->rva = le32(s + 12);
        d->characteristics = le32(s + 36);
        /* Clamp to the image so pe_section_at never reports memory the
         * image does not own. */
        if (d->rva >= img->size_of_image)
            d->vsize = 0;
        else if (d->vsize > img->size_of_image - d->rva)
            d->vsize = img->size_of_image - d->rva;
    }
    return 0;
}

int pe_open(struct pe_image *img, pe_read_fn read, void *ctx, uint64_t base,
            struct bm_err *err)
{
    memset(img, 0, sizeof *img);
    img->read = read;
    img->ctx = ctx;
    img->base = base;

    uint8_t dos[64];
    if (read(ctx, base, dos, sizeof dos, err) < 0) {
        bm_err_prefix(err, "reading the DOS header at 0x%" PRIx64, base);
        return -1;
    }
    if (dos[0] != 'M' || dos[1] != 'Z')
        return bm_err_set(err, "no PE image at 0x%" PRIx64 ": no MZ signature", base);
    uint32_t lfanew = le32(dos + 0x3c);
    if (lfanew < sizeof dos || lfanew > PE_MAX_LFANEW)
        return bm_err_set(err, "PE image at 0x%" PRIx64 ": e_lfanew 0x%" PRIx32
                          " is out of range (0x40..0x%x)", base, lfanew, PE_MAX_LFANEW);

    uint8_t nt[24 + 240];
    if (read(ctx, base + lfanew, nt, 24, err) < 0) {
        bm_err_prefix(err, "reading the NT headers at 0x%" PRIx64, base + lfanew);
        return -1;
    }
    if (memcmp(nt, "PE\0\0", 4) != 0)
        return bm_err_set(err, "PE image at 0x%" PRIx64 ": no PE signature at "
                          "e_lfanew 0x%" PRIx32, base, lfanew);
    img->machine = le16(nt + 4);
    img->nsections = le16(nt + 6);
    img->timestamp = le32(nt + 8);
    uint16_t opt_size = le16(nt + 20);
    if (opt_size < OPT_FIXED_SIZE || opt_size > 240)
        return bm_err_set(err, "PE image at 0x%" PRIx64 ": SizeOfOptionalHeader %u "
                          "is not a PE32+ header (112..240)", base, opt_size);
    if (img->nsections == 0 || img->nsections > PE_MAX_SECTIONS)
        return bm_err_set(err, "PE image at 0x%" PRIx64 ": NumberOfSections %u is "
                          "out of range (1..%u)", base, img->nsections, PE_MAX_SECTIONS);
    if (read(ctx, base + lfanew + 24, nt + 24, opt_size, err) < 0) {
        bm_err_prefix(err, "reading the optional header at 0x%" PRIx64,
                      base + lfanew + 24);
        return -1;
    }
    const uint8_t *opt = nt + 24;
    uint16_t magic = le16(opt);
    if (magic != OPT_MAGIC_PE32PLUS)
        return bm_err_set(err, "PE image at 0x%" PRIx64 ": optional header magic "
                          "0x%x is not PE32+ (0x20b)%s", base, magic,
                          magic == OPT_MAGIC_PE32 ? "; 32-bit images are not "
                          "supported yet" : "");
    img->entry_rva = le32(opt + 16);
    img->image_base = le64(opt + 24);
    img->size_of_image = le32(opt + 56);
    img->size_of_headers = le32(opt + 60);
    uint32_t ndirs = le32(opt + 108);

    uint64_t headers_end = (uint64_t)lfanew + 24 + opt_size + img->nsections * 40u;
    if (img->size_of_image == 0 || img->size_of_image > PE_MAX_IMAGE_SIZE)
        return bm_err_set(err, "PE image at 0x%" PRIx64 ": SizeOfImage 0x%" PRIx32
                          " is out of range (1..0x%x)", base, img->size_of_image,
                          PE_MAX_IMAGE_SIZE);
    if (img->size_of_headers < headers_end ||
        img->size_of_headers > img->size_of_image)
        return bm_err_set(err, "PE image at 0x%" PRIx64 ": SizeOfHeaders 0x%" PRIx32
                          " does not hold the headers (0x%" PRIx64 " bytes) or "
                          "exceeds SizeOfImage 0x%" PRIx32, base, img->size_of_headers,
                          headers_end, img->size_of_image);
    if (base + img->size_of_image < base)
        return bm_err_set(err, "PE image at 0x%" PRIx64 ": SizeOfImage 0x%" PRIx32
                          " wraps the address space", base, img->size_of_image);

    img->ndirs = ndirs > 16 ? 16 : ndirs;
    if (OPT_FIXED_SIZE + 8u * img->ndirs > opt_size)
        return bm_err_set(err, "PE image at 0x%" PRIx64 ": %" PRIu32 " data "
                          "directories do not fit SizeOfOptionalHeader %u",
                          base, ndirs, opt_size);
    for (unsigned i = 0; i < img->ndirs; i++) {
        img->dirs[i].rva = le32(opt + OPT_FIXED_SIZE + 8 * i);
        img->dirs[i].size = le32(opt + OPT_FIXED_SIZE + 8 * i + 4);
    }
    return parse_sections(img, lfanew + 24 + opt_size, err);
}

/* The data directory `idx`, checked to lie inside the image. */
static int get_dir(const struct pe_image *img, unsigned idx, const char *what,
                   uint32_t min_size, uint32_t *rva, uint32_t *size,
                   struct bm_err *err)
{
    if (idx >= img->ndirs || img->dirs[idx].rva == 0 || img->dirs[idx].size == 0)
        return bm_err_set(err, "PE image at 0x%" PRIx64 " has no %s directory",
                          img->base, what);
    *rva = img->dirs[idx].rva;
    *size = img->dirs[idx].size;
    if (*size < min_size || !fits(*rva, *size, img->size_of_image))
        return bm_err_set(err, "PE image at 0x%" PRIx64 ": %s directory (RVA 0x%"
                          PRIx32 ", 0x%" PRIx32 " bytes) is too small or outside "
                          "SizeOfImage 0x%" PRIx32, img->base, what, *rva, *size,
                          img->size_of_image);
    return 0;
}

int pe_exports_open(const struct pe_image *img, struct pe_exports *ex,
                    struct bm_err *err)
{
    memset(ex, 0, sizeof *ex);
    if (get_dir(img, PE_DIR_EXPORT, "export", EXPORT_DIR_SIZE, &ex->dir_rva,
                &ex->dir_size, err) < 0)
        return -1;
    uint8_t d[EXPORT_DIR_SIZE];
    if (pe_read_rva(img, ex->dir_rva, d, sizeof d, err) < 0) {
        bm_err_prefix(err, "reading the export directory");
        return -1;
    }
    uint32_t name_rva = le32(d + 12);
    ex->ordinal_base = le32(d + 16);
    ex->nfunctions = le32(d + 20);
    ex->nnames = le32(d + 24);
    ex->functions_rva = le32(d + 28);
    ex->names_rva = le32(d + 32);
    ex->ordinals_rva = le32(d + 36);
    if (ex->nfunctions > PE_MAX_NAMES || ex->nnames > PE_MAX_NAMES)
        return bm_err_set(err, "PE image at 0x%" PRIx64 ": export directory claims %"
                          PRIu32 " functions and %" PRIu32 " names (at most %u)",
                          img->base, ex->nfunctions, ex->nnames, PE_MAX_NAMES);
    if (!fits(ex->functions_rva, 4ull * ex->nfunctions, img->size_of_image) ||
        !fits(ex->names_rva, 4ull * ex->nnames, img->size_of_image) ||
        !fits(ex->ordinals_rva, 2ull * ex->nnames, img->size_of_image))
        return bm_err_set(err, "PE image at 0x%" PRIx64 ": export tables lie outside "
                          "SizeOfImage 0x%" PRIx32, img->base, img->size_of_image);
    /* The DLL name only helps to recognise the image; an unreadable one is
     * left empty rather than failing the whole export table. */
    struct bm_err ignored = BM_ERR_INIT;
    if (name_rva == 0 ||
        pe_read_string(img, name_rva, ex->dll_name, PE_MAX_NAME_LEN, &ignored) < 0)
        ex->dll_name[0] = '\0';
    return 0;
}

/* Compare the export name at `rva` with `want` like strcmp, reading only
 * as many bytes as the comparison needs. */
static int name_cmp(const struct pe_image *img, uint32_t rva, const char *want,
                    size_t wlen, int *cmp, struct bm_err *err)
{
    uint8_t buf[PE_MAX_NAME_LEN + 1];
    size_t got = 0;
    while (got <= wlen) {
        uint64_t at = (uint64_t)rva + got;
        if (at >= img->size_of_image)
            return bm_err_set(err, "PE image at 0x%" PRIx64 ": export name at RVA 0x%"
                              PRIx32 " runs past SizeOfImage", img->base, rva);
        size_t piece = page_piece(img, (uint32_t)at);
        if (piece > wlen + 1 - got)
            piece = wlen + 1 - got;
        if (piece > img->size_of_image - at)
            piece = (size_t)(img->size_of_image - at);
        if (pe_read_rva(img, (uint32_t)at, buf + got, piece, err) < 0)
            return -1;
        for (size_t i = got; i < got + piece; i++) {
            uint8_t w = (uint8_t)want[i];       /* want[wlen] is the NUL */
            if (buf[i] != w || w == 0) {
                *cmp = (int)buf[i] - (int)w;
                return 0;
            }
        }
        got += piece;
    }
    *cmp = 0;
    return 0;
}

static int name_at(const struct pe_image *img, const struct pe_exports *ex,
                   uint32_t i, const char *want, size_t wlen, int *cmp,
                   struct bm_err *err)
{
    uint8_t p[4];
    if (pe_read_rva(img, ex->names_rva + 4 * i, p, 4, err) < 0)
        return -1;
    uint32_t rva = le32(p);
    if (rva >= img->size_of_image)
        return bm_err_set(err, "PE image at 0x%" PRIx64 ": export name #%" PRIu32
                          " has RVA 0x%" PRIx32 " outside SizeOfImage 0x%" PRIx32,
                          img->base, i, rva, img->size_of_image);
    return name_cmp(img, rva, want, wlen, cmp, err);
}

/* Index into the name table of `want`, or -1 (not found) / -2 (error). */
static int64_t find_name_index(const struct pe_image *img, const struct pe_exports *ex,
                               const char *want, size_t wlen, struct bm_err *err)
{
    uint32_t lo = 0, hi = ex->nnames;
    int cmp;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (name_at(img, ex, mid, want, wlen, &cmp, err) < 0)
            return -2;
        if (cmp == 0)
            return mid;
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* Unsorted table (hand-made images): one bounded linear pass, reading
     * the pointer array a block at a time. */
    uint8_t block[NAME_BLOCK * 4];
    for (uint32_t base = 0; base < ex->nnames; base += NAME_BLOCK) {
        uint32_t n = ex->nnames - base < NAME_BLOCK ? ex->nnames - base : NAME_BLOCK;
        if (pe_read_rva(img, ex->names_rva + 4 * base, block, 4 * (size_t)n, err) < 0)
            return -2;
        for (uint32_t i = 0; i < n; i++) {
            uint32_t rva = le32(block + 4 * i);
            if (rva >= img->size_of_image)
                continue;   /* already reported if binary search met it */
            if (name_cmp(img, rva, want, wlen, &cmp, err) < 0)
                return -2;
            if (cmp == 0)
                return base + i;
        }
    }
    return -1;
}

int pe_export_find(const struct pe_image *img, const struct pe_exports *ex,
                   const char *name, struct pe_export *out, struct bm_err *err)
{
    memset(out, 0, sizeof *out);
    size_t wlen = strlen(name);
    if (wlen == 0 || wlen > PE_MAX_NAME_LEN)
        return bm_err_set(err, "export name '%.40s' is empty or longer than %u bytes",
                          name, PE_MAX_NAME_LEN);
    int64_t idx = find_name_index(img, ex, name, wlen, err);
    if (idx == -2) {
        bm_err_prefix(err, "looking up export %s", name);
        return -1;
    }
    if (idx < 0)
        return bm_err_set(err, "PE image at 0x%" PRIx64 " (%s) does not export %s "
                          "(%" PRIu32 " names)", img->base,
                          ex->dll_name[0] ? ex->dll_name : "unnamed", name, ex->nnames);

    uint8_t b[4];
    if (pe_read_rva(img, ex->ordinals_rva + 2 * (uint32_t)idx, b, 2, err) < 0)
        return -1;
    uint16_t ord = le16(b);
    if (ord >= ex->nfunctions)
        return bm_err_set(err, "PE image at 0x%" PRIx64 ": export %s has ordinal "
                          "index %u beyond NumberOfFunctions %" PRIu32, img->base,
                          name, ord, ex->nfunctions);
    if (pe_read_rva(img, ex->functions_rva + 4u * ord, b, 4, err) < 0)
        return -1;
    out->rva = le32(b);
    out->ordinal = (uint16_t)(ex->ordinal_base + ord);
    if (out->rva == 0 || out->rva >= img->size_of_image)
        return bm_err_set(err, "PE image at 0x%" PRIx64 ": export %s has RVA 0x%"
                          PRIx32 " outside SizeOfImage 0x%" PRIx32, img->base, name,
                          out->rva, img->size_of_image);
    if (out->rva >= ex->dir_rva && out->rva - ex->dir_rva < ex->dir_size) {
        out->forwarder = true;
        if (pe_read_string(img, out->rva, out->forward, PE_MAX_NAME_LEN, err) < 0) {
            bm_err_prefix(err, "reading the forwarder of export %s", name);
            return -1;
        }
    }
    return 0;
}

void pe_guid_format(const uint8_t raw[16], char out[33])
{
    snprintf(out, 33, "%08" PRIX32 "%04X%04X%02X%02X%02X%02X%02X%02X%02X%02X",
             le32(raw), le16(raw + 4), le16(raw + 6), raw[8], raw[9], raw[10],
             raw[11], raw[12], raw[13], raw[14], raw[15]);
}

static int parse_rsds(const struct pe_image *img, uint32_t rva, uint32_t size,
                      struct pe_rsds *out, struct bm_err *err)
{
    if (size <= RSDS_HEADER_SIZE || !fits(rva, size, img->size_of_image))
        return bm_err_set(err, "PE image at 0x%" PRIx64 ": CodeView record (RVA 0x%"
                          PRIx32 ", %" PRIu32 " bytes) is too small or outside "
                          "SizeOfImage 0x%" PRIx32, img->base, rva, size,
                          img->size_of_image);
    uint8_t h[RSDS_HEADER_SIZE];
    if (pe_read_rva(img, rva, h, sizeof h, err) < 0)
        return -1;
    if (memcmp(h, "RSDS", 4) != 0)
        return bm_err_set(err, "PE image at 0x%" PRIx64 ": CodeView record is not "
                          "RSDS (signature %.4s; NB10 PDBs are not supported)",
                          img->base, memcmp(h, "NB10", 4) == 0 ? "NB10" : "unknown");
    memcpy(out->guid_raw, h + 4, 16);
    pe_guid_format(out->guid_raw, out->guid);
    out->age = le32(h + 20);
    uint32_t max = size - RSDS_HEADER_SIZE;
    if (max > PE_MAX_PDB_NAME)
        max = PE_MAX_PDB_NAME;
    if (pe_read_string(img, rva + RSDS_HEADER_SIZE, out->pdb_name, max, err) < 0) {
        bm_err_prefix(err, "reading the PDB name of the RSDS record");
        return -1;
    }
    if (out->pdb_name[0] == '\0')
        return bm_err_set(err, "PE image at 0x%" PRIx64 ": RSDS record has an empty "
                          "PDB name", img->base);
    return 0;
}

int pe_read_rsds(const struct pe_image *img, struct pe_rsds *out, struct bm_err *err)
{
    memset(out, 0, sizeof *out);
    uint32_t rva, size;
    if (get_dir(img, PE_DIR_DEBUG, "debug", DEBUG_ENTRY_SIZE, &rva, &size, err) < 0)
        return -1;
    uint32_t n = size / DEBUG_ENTRY_SIZE;
    if (n > PE_MAX_DEBUG_DIRS)
        n = PE_MAX_DEBUG_DIRS;
    for (uint32_t i = 0; i < n; i++) {
        uint8_t d[DEBUG_ENTRY_SIZE];
        if (pe_read_rva(img, rva + i * DEBUG_ENTRY_SIZE, d, sizeof d, err) < 0) {
            bm_err_prefix(err, "reading debug directory entry %" PRIu32, i);
            return -1;
        }
        if (le32(d + 12) != DEBUG_TYPE_CODEVIEW)
            continue;
        uint32_t data_size = le32(d + 16), data_rva = le32(d + 20);
        if (data_rva == 0)
            return bm_err_set(err, "PE image at 0x%" PRIx64 ": CodeView record is not "
                              "mapped (AddressOfRawData 0)", img->base);
        return parse_rsds(img, data_rva, data_size, out, err);
    }
    return bm_err_set(err, "PE image at 0x%" PRIx64 " has no CodeView debug record "
                      "among %" PRIu32 " debug entries", img->base, n);
}
