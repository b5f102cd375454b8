/* kernel.c - see kernel.h. */
#include "win/kernel.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PAGE 0x1000u

/* Names the kernel's export directory carries across builds (UP/MP, PAE). */
static const char *const kernel_names[] = {
    "ntoskrnl.exe", "ntkrnlmp.exe", "ntkrnlpa.exe", "ntkrpamp.exe",
};

static bool named_like_kernel(const char *name)
{
    for (size_t i = 0; i < sizeof kernel_names / sizeof kernel_names[0]; i++)
        if (strcasecmp(name, kernel_names[i]) == 0)
            return true;
    return false;
}

/* PDB names of the kernel's CodeView record across builds. */
static const char *const kernel_pdbs[] = {
    "ntkrnlmp.pdb", "ntoskrnl.pdb", "ntkrnlpa.pdb", "ntkrpamp.pdb",
};

/* Does the image at `img` look like ntoskrnl? Fills `name`. A guest can
 * damage its export directory (a hostile count is refused by pe.c), so the
 * CodeView record's PDB name also identifies the kernel: with a profile,
 * bsodmon needs no export at all. */
static bool looks_like_kernel(const struct pe_image *img, char *name, size_t len)
{
    struct bm_err ignored = BM_ERR_INIT;
    struct pe_exports ex;
    if (pe_exports_open(img, &ex, &ignored) < 0) {
        struct pe_rsds rsds;
        bm_err_clear(&ignored);
        if (pe_read_rsds(img, &rsds, &ignored) < 0)
            return false;
        snprintf(name, len, "%s", rsds.pdb_name);
        for (size_t i = 0; i < sizeof kernel_pdbs / sizeof kernel_pdbs[0]; i++)
            if (strcasecmp(rsds.pdb_name, kernel_pdbs[i]) == 0)
                return true;
        return false;
    }
    snprintf(name, len, "%s", ex.dll_name);
    if (named_like_kernel(ex.dll_name))
        return true;
    struct pe_export x;
    return pe_export_find(img, &ex, "KeBugCheckEx", &x, &ignored) == 0 && !x.forwarder;
}

/* Is there an ntoskrnl image at page `va` that contains `ptr`? 1 yes (out
 * filled), 0 no (`last` may say why, for the failure message). */
static int try_base(pe_read_fn read, void *ctx, uint64_t ptr, uint64_t va,
                    struct winkernel *out, char *last, size_t last_len)
{
    uint8_t mz[2];
    struct bm_err rerr = BM_ERR_INIT;
    out->pages_scanned++;
    if (read(ctx, va, mz, sizeof mz, &rerr) < 0) {
        out->pages_unreadable++;
        return 0;
    }
    if (mz[0] != 'M' || mz[1] != 'Z')
        return 0;
    struct pe_image img;
    if (pe_open(&img, read, ctx, va, &rerr) < 0)
        return 0;                       /* "MZ" by chance, or damaged */
    if (ptr - va >= img.size_of_image) {
        snprintf(last, last_len, "; the image at 0x%" PRIx64 " (0x%" PRIx32
                 " bytes) ends below it", va, img.size_of_image);
        return 0;
    }
    char name[PE_MAX_NAME_LEN + 1] = "";
    if (!looks_like_kernel(&img, name, sizeof name)) {
        snprintf(last, last_len, "; it lies in the image at 0x%" PRIx64
                 " (%s), which is not ntoskrnl", va, name[0] ? name : "unnamed");
        return 0;
    }
    out->base = va;
    out->size = img.size_of_image;
    out->img = img;
    snprintf(out->name, sizeof out->name, "%s", name);
    struct bm_err rsds_err = BM_ERR_INIT;
    out->has_rsds = pe_read_rsds(&img, &out->rsds, &rsds_err) == 0;
    if (!out->has_rsds)
        snprintf(out->rsds_error, sizeof out->rsds_error, "%s", bm_err_msg(&rsds_err));
    return 1;
}

int winkernel_find(pe_read_fn read, void *ctx, uint64_t ptr, uint64_t max_scan,
                   struct winkernel *out, struct bm_err *err)
{
    memset(out, 0, sizeof *out);
    if (max_scan == 0)
        max_scan = WINKERNEL_SCAN_MAX;
    uint64_t page = ptr & ~(uint64_t)(PAGE - 1);
    /* The pages page, page - PAGE, ... down to `floor`: max_scan bytes'
     * worth, never below 0. */
    uint64_t n = (max_scan + PAGE - 1) / PAGE;
    if (n > page / PAGE + 1)
        n = page / PAGE + 1;
    uint64_t floor = page - (n - 1) * PAGE;
    /* What the last plausible candidate was, for the failure message. */
    char last[160] = "";

    /* First the 2 MiB boundaries: x64 Windows maps ntoskrnl with large
     * pages at a 2 MiB-aligned base, so a handful of reads usually finds it
     * instead of thousands. Then every other page, for a build that does
     * not align it. Each page is read once in all. */
    const uint64_t large = WINKERNEL_LARGE_PAGE;
    for (uint64_t va = page & ~(large - 1); va >= floor; va -= large) {
        if (try_base(read, ctx, ptr, va, out, last, sizeof last))
            return 0;
        if (va < large)
            break;
    }
    for (uint64_t va = page; va >= floor; va -= PAGE) {
        if ((va & (large - 1)) != 0 && try_base(read, ctx, ptr, va, out, last, sizeof last))
            return 0;
        if (va < PAGE)
            break;
    }
    return bm_err_set(err, "no ntoskrnl image containing 0x%016" PRIx64 " found in "
                      "the %" PRIu64 " KiB below it (%u pages unreadable)%s",
                      ptr, max_scan >> 10, out->pages_unreadable, last);
}

/* Read up to `len` bytes at `rva`, stopping at the first unreadable page;
 * returns the number read. Code past a hole is not needed to decode. */
static size_t read_code(const struct pe_image *img, uint32_t rva, uint8_t *buf,
                        size_t len)
{
    size_t got = 0;
    while (got < len) {
        size_t piece = PAGE - (size_t)((img->base + rva + got) & (PAGE - 1));
        if (piece > len - got)
            piece = len - got;
        struct bm_err ignored = BM_ERR_INIT;
        if (pe_read_rva(img, rva + (uint32_t)got, buf + got, piece, &ignored) < 0)
            break;
        got += piece;
    }
    return got;
}

int winkernel_read_bugcheckex(const struct winkernel *k, struct winkernel_bugcheckex *out,
                              struct bm_err *err)
{
    memset(out, 0, sizeof *out);
    const struct pe_image *img = &k->img;
    struct pe_exports ex;
    struct pe_export x;
    if (pe_exports_open(img, &ex, err) < 0 ||
        pe_export_find(img, &ex, "KeBugCheckEx", &x, err) < 0) {
        bm_err_prefix(err, "finding KeBugCheckEx in the kernel at 0x%" PRIx64, k->base);
        return -1;
    }
    if (x.forwarder)
        return bm_err_set(err, "kernel at 0x%" PRIx64 ": KeBugCheckEx is a forwarder "
                          "(%s)", k->base, x.forward);
    out->kebugcheckex = k->base + x.rva;
    out->base = k->base;
    out->size = k->size;
    size_t want = img->size_of_image - x.rva;
    if (want > sizeof out->code)
        want = sizeof out->code;
    out->len = read_code(img, x.rva, out->code, want);
    out->nsections = img->nsections;
    for (unsigned i = 0; i < img->nsections; i++) {
        out->sections[i].rva = img->sections[i].rva;
        out->sections[i].vsize = img->sections[i].vsize;
        out->sections[i].exec = (img->sections[i].characteristics & PE_SCN_MEM_EXECUTE) != 0;
    }
    return 0;
}

int winkernel_scan_bugcheck2(const struct winkernel_bugcheckex *in,
                             struct winkernel_bugcheck *out, struct bm_err *err)
{
    memset(out, 0, sizeof *out);
    out->kebugcheckex = in->kebugcheckex;
    if (callscan_find_bugcheck2(in->code, in->len, in->kebugcheckex, &out->scan, err) < 0)
        return -1;
    /* The first section holding the target, as pe_section_at finds it. */
    uint64_t t = out->scan.target;
    int exec = -1;
    if (t - in->base < in->size) {
        uint32_t rva = (uint32_t)(t - in->base);
        for (unsigned i = 0; exec < 0 && i < in->nsections; i++)
            if (rva >= in->sections[i].rva &&
                (uint64_t)rva < (uint64_t)in->sections[i].rva + in->sections[i].vsize)
                exec = in->sections[i].exec;
    }
    if (exec != 1)
        return bm_err_set(err, "kernel at 0x%" PRIx64 ": the call in KeBugCheckEx goes "
                          "to 0x%" PRIx64 ", outside the kernel's code; its code is "
                          "not the expected shape, give a symbol profile (-r)",
                          in->base, t);
    out->kebugcheck2 = t;
    return 0;
}

int winkernel_find_bugcheck2(const struct winkernel *k,
                             struct winkernel_bugcheck *out, struct bm_err *err)
{
    struct winkernel_bugcheckex *in = malloc(sizeof *in);
    if (in == NULL)
        return bm_err_set(err, "out of memory");
    int rc = winkernel_read_bugcheckex(k, in, err);
    if (rc < 0)
        memset(out, 0, sizeof *out);
    else
        rc = winkernel_scan_bugcheck2(in, out, err);
    free(in);
    return rc;
}
