/* pstream.c - see pstream.h. Decompression is liblzma's and zlib's; this
 * file only drives them a chunk at a time and names what went wrong. */
#include "win/pstream.h"

#include <errno.h>
#include <lzma.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

enum kind { K_PLAIN, K_XZ, K_GZIP };

struct pstream {
    FILE *f;
    char path[512];
    enum kind kind;
    bool in_eof;            /* no more compressed input */
    bool done;              /* no more output */
    bool peeked;            /* `out` holds a chunk not yet returned */
    size_t peek_len;
    uint64_t total;
    lzma_stream xz;
    z_stream gz;
    bool dec_ready;
    uint8_t in[PSTREAM_CHUNK];
    char out[PSTREAM_CHUNK];
};

static const uint8_t XZ_MAGIC[6] = { 0xfd, '7', 'z', 'X', 'Z', 0x00 };
static const uint8_t GZ_MAGIC[2] = { 0x1f, 0x8b };

const char *pstream_path(const struct pstream *s) { return s->path; }
uint64_t pstream_total(const struct pstream *s) { return s->total; }

const char *pstream_kind(const struct pstream *s)
{
    return s->kind == K_XZ ? "xz" : s->kind == K_GZIP ? "gzip" : "JSON";
}

void pstream_close(struct pstream *s)
{
    if (s == NULL)
        return;
    if (s->dec_ready && s->kind == K_XZ)
        lzma_end(&s->xz);
    if (s->dec_ready && s->kind == K_GZIP)
        inflateEnd(&s->gz);
    if (s->f != NULL)
        fclose(s->f);
    free(s);
}

struct pstream *pstream_open(const char *path, struct bm_err *err)
{
    struct pstream *s = calloc(1, sizeof *s);
    if (s == NULL) {
        bm_err_set(err, "opening %s: out of memory", path);
        return NULL;
    }
    snprintf(s->path, sizeof s->path, "%s", path);
    s->f = fopen(path, "rb");
    if (s->f == NULL) {
        bm_err_sys(err, errno, "cannot open symbol profile %s", path);
        goto fail;
    }
    uint8_t magic[6];
    size_t n = fread(magic, 1, sizeof magic, s->f);
    if (ferror(s->f)) {
        bm_err_sys(err, errno, "cannot read symbol profile %s", path);
        goto fail;
    }
    rewind(s->f);
    if (n >= sizeof XZ_MAGIC && memcmp(magic, XZ_MAGIC, sizeof XZ_MAGIC) == 0) {
        s->kind = K_XZ;
        lzma_stream init = LZMA_STREAM_INIT;
        s->xz = init;
        if (lzma_stream_decoder(&s->xz, PSTREAM_XZ_MEMLIMIT, LZMA_CONCATENATED) != LZMA_OK) {
            bm_err_set(err, "%s: cannot start the xz decoder", path);
            goto fail;
        }
        s->dec_ready = true;
    } else if (n >= sizeof GZ_MAGIC && memcmp(magic, GZ_MAGIC, sizeof GZ_MAGIC) == 0) {
        s->kind = K_GZIP;
        if (inflateInit2(&s->gz, 15 + 16) != Z_OK) {     /* gzip wrapper only */
            bm_err_set(err, "%s: cannot start the gzip decoder", path);
            goto fail;
        }
        s->dec_ready = true;
    }
    return s;
fail:
    pstream_close(s);
    return NULL;
}

/* Refill the input buffer when empty; returns bytes now available. */
static int fill_input(struct pstream *s, const uint8_t **next, size_t *avail,
                      struct bm_err *err)
{
    if (*avail > 0 || s->in_eof)
        return 0;
    size_t n = fread(s->in, 1, sizeof s->in, s->f);
    if (n == 0) {
        if (ferror(s->f))
            return bm_err_sys(err, errno, "reading %s", s->path);
        s->in_eof = true;
    }
    *next = s->in;
    *avail = n;
    return 0;
}

static int read_xz(struct pstream *s, size_t *produced, struct bm_err *err)
{
    s->xz.next_out = (uint8_t *)s->out;
    s->xz.avail_out = sizeof s->out;
    while (s->xz.avail_out > 0 && !s->done) {
        if (fill_input(s, &s->xz.next_in, &s->xz.avail_in, err) < 0)
            return -1;
        lzma_ret r = lzma_code(&s->xz, s->in_eof ? LZMA_FINISH : LZMA_RUN);
        if (r == LZMA_STREAM_END) {
            s->done = true;
        } else if (r != LZMA_OK) {
            const char *why =
                r == LZMA_BUF_ERROR ? "is truncated (the xz stream ends early)" :
                r == LZMA_DATA_ERROR ? "is corrupt (xz data error)" :
                r == LZMA_FORMAT_ERROR ? "is not valid xz data" :
                r == LZMA_OPTIONS_ERROR ? "uses unsupported xz options" :
                r == LZMA_MEMLIMIT_ERROR ? "needs more than 256 MiB to decompress" :
                r == LZMA_MEM_ERROR ? "cannot be decompressed: out of memory" :
                "cannot be decompressed (xz error)";
            return bm_err_set(err, "symbol profile %s %s", s->path, why);
        }
    }
    *produced = sizeof s->out - s->xz.avail_out;
    return 0;
}

static int read_gzip(struct pstream *s, size_t *produced, struct bm_err *err)
{
    s->gz.next_out = (Bytef *)s->out;
    s->gz.avail_out = sizeof s->out;
    while (s->gz.avail_out > 0 && !s->done) {
        const uint8_t *next = s->gz.next_in;
        size_t avail = s->gz.avail_in;
        if (fill_input(s, &next, &avail, err) < 0)
            return -1;
        s->gz.next_in = (Bytef *)next;
        s->gz.avail_in = (uInt)avail;
        int r = inflate(&s->gz, Z_NO_FLUSH);
        if (r == Z_STREAM_END) {
            /* Concatenated members are valid gzip; anything else after the
             * end is ignored, as gzip(1) does with trailing zeros. */
            next = s->gz.next_in;
            avail = s->gz.avail_in;
            if (fill_input(s, &next, &avail, err) < 0)
                return -1;
            s->gz.next_in = (Bytef *)next;
            s->gz.avail_in = (uInt)avail;
            if (s->gz.avail_in >= 2 && memcmp(s->gz.next_in, GZ_MAGIC, 2) == 0)
                inflateReset(&s->gz);
            else
                s->done = true;
        } else if (r == Z_BUF_ERROR) {
            /* No progress: more input is needed, and there is none. */
            if (s->in_eof && s->gz.avail_in == 0)
                return bm_err_set(err, "symbol profile %s is truncated (the gzip "
                                  "stream ends early)", s->path);
        } else if (r != Z_OK) {
            return bm_err_set(err, "symbol profile %s is corrupt (gzip: %s)", s->path,
                              s->gz.msg ? s->gz.msg : "data error");
        }
    }
    *produced = sizeof s->out - s->gz.avail_out;
    return 0;
}

static int next_chunk(struct pstream *s, size_t *produced, struct bm_err *err)
{
    *produced = 0;
    if (s->done)
        return 0;
    int rc = 0;
    if (s->kind == K_XZ) {
        rc = read_xz(s, produced, err);
    } else if (s->kind == K_GZIP) {
        rc = read_gzip(s, produced, err);
    } else {
        *produced = fread(s->out, 1, sizeof s->out, s->f);
        if (*produced == 0) {
            if (ferror(s->f))
                return bm_err_sys(err, errno, "reading %s", s->path);
            s->done = true;
        }
    }
    if (rc < 0)
        return -1;
    s->total += *produced;
    if (s->total > PSTREAM_MAX_TOTAL)
        return bm_err_set(err, "symbol profile %s is larger than 1 GiB of text; "
                          "refusing it", s->path);
    return 0;
}

int pstream_peek(struct pstream *s, const char **data, size_t *len,
                 struct bm_err *err)
{
    if (!s->peeked) {
        if (s->total != 0 || s->done)
            return bm_err_set(err, "%s: peek after read", s->path);
        if (next_chunk(s, &s->peek_len, err) < 0)
            return -1;
        s->peeked = true;
    }
    *data = s->out;
    *len = s->peek_len;
    return 0;
}

int pstream_read(struct pstream *s, const char **data, size_t *len,
                 struct bm_err *err)
{
    *data = s->out;
    if (s->peeked) {
        s->peeked = false;
        *len = s->peek_len;
        return 0;
    }
    return next_chunk(s, len, err);
}
