/* fuzz_profile.c - symbol profiles (profile_load): Volatility 3 ISF and
 * Rekall JSON, plain, gzip and xz, through the real file path (pstream's
 * magic-byte detection and decompression, the ISF splitter, json-c).
 *
 * The input is written to a memfd and loaded by its /proc/self/fd path.
 *
 * Input: mode (1), split (2), then the profile text.
 *   mode % 4: 0 plain, 1 gzip it, 2 xz it (the harness compresses, so the
 *             fuzzer mutates the JSON, not the compressed bytes), 3 the
 *             bytes as they are (seeds carry real .gz/.xz streams).
 *   split:    for modes 0-2, when non-zero, blanks are put in front so the
 *             64 KiB chunk boundary of pstream falls at that text offset:
 *             members and strings cut across chunks.
 */
#include <lzma.h>
#include <sys/mman.h>
#include <zlib.h>

#include "fuzz.h"
#include "win/profile.h"
#include "win/pstream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int memfd = -1;
static char path[64];
static uint8_t *buf, *zbuf;
static size_t buf_cap, zbuf_cap;

static uint8_t *grow(uint8_t **p, size_t *cap, size_t want)
{
    if (want > *cap) {
        free(*p);
        *p = malloc(want);
        FUZZ_CHECK(*p != NULL);
        *cap = want;
    }
    return *p;
}

static size_t gzip(const uint8_t *in, size_t n)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    FUZZ_CHECK(deflateInit2(&zs, 1, Z_DEFLATED, 15 + 16, 8,
                            Z_DEFAULT_STRATEGY) == Z_OK);
    size_t bound = deflateBound(&zs, (uLong)n) + 64;
    grow(&zbuf, &zbuf_cap, bound);
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)n;
    zs.next_out = zbuf;
    zs.avail_out = (uInt)bound;
    FUZZ_CHECK(deflate(&zs, Z_FINISH) == Z_STREAM_END);
    size_t out = bound - zs.avail_out;
    deflateEnd(&zs);
    return out;
}

static size_t xz(const uint8_t *in, size_t n)
{
    size_t bound = lzma_stream_buffer_bound(n), pos = 0;
    grow(&zbuf, &zbuf_cap, bound);
    FUZZ_CHECK(lzma_easy_buffer_encode(0, LZMA_CHECK_CRC32, NULL, in, n, zbuf,
                                       &pos, bound) == LZMA_OK);
    return pos;
}

static bool is_upper_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'F')))
            return false;
    return true;
}

static void check_offsets(const struct win_profile *p, bool loaded)
{
    for (size_t i = 0; i < profile_nwant_symbols; i++) {
        const struct win_off *w =
            profile_slot((struct win_profile *)p, profile_want_symbols[i].slot);
        FUZZ_CHECK(loaded || !w->present);
        FUZZ_CHECK(!w->present || w->value <= UINT32_MAX);
    }
    for (size_t i = 0; i < profile_nwant_fields; i++) {
        const struct profile_want_field *f = &profile_want_fields[i];
        const struct win_off *w = profile_slot((struct win_profile *)p, f->slot);
        FUZZ_CHECK(loaded || !w->present);
        FUZZ_CHECK(!w->present || w->value <= (1u << 24));
        if (f->count_slot != 0) {
            const struct win_off *c =
                profile_slot((struct win_profile *)p, f->count_slot);
            FUZZ_CHECK(loaded || !c->present);
            FUZZ_CHECK(!c->present || (c->value >= 1 && c->value <= 4096));
            FUZZ_CHECK(!c->present || w->present);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    if (memfd < 0) {
        memfd = memfd_create("fuzz-profile", MFD_CLOEXEC);
        FUZZ_CHECK(memfd >= 0);
        snprintf(path, sizeof path, "/proc/self/fd/%d", memfd);
    }
    unsigned mode = data[0] % 4;
    size_t split = fuzz_le16(data + 1);
    const uint8_t *text = data + 3;
    size_t n = size - 3;

    const uint8_t *file = text;
    size_t flen = n;
    if (mode != 3) {
        size_t pad = split ? PSTREAM_CHUNK - split % PSTREAM_CHUNK : 0;
        grow(&buf, &buf_cap, pad + n + 1);
        memset(buf, ' ', pad);
        memcpy(buf + pad, text, n);
        file = buf;
        flen = pad + n;
        if (mode == 1) {
            flen = gzip(buf, pad + n);
            file = zbuf;
        } else if (mode == 2) {
            flen = xz(buf, pad + n);
            file = zbuf;
        }
    }
    FUZZ_CHECK(ftruncate(memfd, 0) == 0);
    FUZZ_CHECK(pwrite(memfd, file, flen, 0) == (ssize_t)flen);

    struct win_profile prof;
    struct bm_err err = BM_ERR_INIT;
    int rc = profile_load(path, &prof, &err);
    fuzz_note("profile_load", rc, &err);
    if (rc == 0) {
        FUZZ_CHECK(!err.set);
        FUZZ_CHECK(prof.format != NULL);
        FUZZ_CHECK(strcmp(prof.path, path) == 0);
        FUZZ_CHECK(strnlen(prof.pdb_name, sizeof prof.pdb_name) <
                   sizeof prof.pdb_name);
        if (prof.has_guid) {
            FUZZ_CHECK(strlen(prof.guid) == 32 && is_upper_hex(prof.guid, 32));
            FUZZ_CHECK(strncmp(prof.guid_age, prof.guid, 32) == 0);
            /* The running kernel's own GUID and age pass the check. */
            struct bm_err e2 = BM_ERR_INIT;
            FUZZ_CHECK(profile_check_guid(&prof, prof.guid_age, &e2) == 0);
        }
        check_offsets(&prof, true);
    } else {
        FUZZ_CHECK(fuzz_err_ok(&err));
        /* A failed load leaves nothing half-read behind. */
        FUZZ_CHECK(!prof.has_guid && prof.format == NULL);
        FUZZ_CHECK(strcmp(prof.path, path) == 0);
        check_offsets(&prof, false);
    }
    return 0;
}
