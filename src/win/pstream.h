/* pstream.h - read a profile file as a stream of decompressed text chunks.
 *
 * Compression is chosen by magic bytes, never by file name: xz
 * (FD 37 7A 58 5A 00, liblzma), gzip (1F 8B, zlib), otherwise the bytes are
 * passed through. Only one chunk is held at a time, so a 7 MB ISF costs a
 * few hundred KiB plus the decoder's dictionary. The total decompressed
 * size is capped, so a decompression bomb ends with an error.
 */
#ifndef BM_WIN_PSTREAM_H
#define BM_WIN_PSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define PSTREAM_CHUNK (64u << 10)
#define PSTREAM_MAX_TOTAL (UINT64_C(1) << 30)       /* 1 GiB decompressed */
#define PSTREAM_XZ_MEMLIMIT (UINT64_C(256) << 20)   /* xz -9e needs ~65 MiB */

struct pstream;

struct pstream *pstream_open(const char *path, struct bm_err *err);

/* The next chunk of text; *len == 0 at the end. The chunk stays valid until
 * the next call. Truncated or corrupt compressed data is an error. */
int pstream_read(struct pstream *s, const char **data, size_t *len,
                 struct bm_err *err);

/* The first chunk, without consuming it (only before the first read). */
int pstream_peek(struct pstream *s, const char **data, size_t *len,
                 struct bm_err *err);

const char *pstream_path(const struct pstream *s);
const char *pstream_kind(const struct pstream *s);  /* "JSON", "xz", "gzip" */
uint64_t pstream_total(const struct pstream *s);    /* text bytes so far */

void pstream_close(struct pstream *s);

#endif
