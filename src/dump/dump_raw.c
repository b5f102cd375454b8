/* dump_raw.c - the flat, sparse image and its SHA-256.
 *
 * One pass over RAM in 8 MiB chunks: each chunk is read (or mapped, zero
 * copy), its 4 KiB pages tested for all-zero while they are hot in cache,
 * and the non-zero runs written with pwrite() at their physical offsets;
 * gaps and zero pages stay holes (the file was ftruncate'd to full size).
 * SHA-256 of the image as a reader sees it (holes as zeros) costs about as
 * much as the disk (1.7 GB/s with SHA-NI here), so it runs in its own thread
 * on the same chunks; a few buffers circulate between the two. Writeback is
 * started per chunk (sync_file_range) so the final fsync has little left.
 */
#include "dump/dump.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (8u << 20)
#define PAGE 4096u
#define NBUF 4
#define QLEN 16

static const uint8_t zeros[1u << 20];

/* ---- the hashing thread ---------------------------------------------------- */

struct hitem {
    const uint8_t *data; /* NULL: `len` zero bytes */
    uint64_t len;
    int buf;             /* buffer to give back after hashing, or -1 */
};

struct hasher {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct hitem q[QLEN];
    unsigned head, tail;
    bool done, failed;
    bool busy[NBUF];
    EVP_MD_CTX *md;
};

static void *hash_main(void *arg)
{
    struct hasher *h = arg;
    for (;;) {
        pthread_mutex_lock(&h->mu);
        while (h->head == h->tail && !h->done)
            pthread_cond_wait(&h->cv, &h->mu);
        if (h->head == h->tail && h->done) {
            pthread_mutex_unlock(&h->mu);
            return NULL;
        }
        struct hitem it = h->q[h->head % QLEN];
        pthread_mutex_unlock(&h->mu);
        bool ok = true;
        if (it.data != NULL) {
            ok = EVP_DigestUpdate(h->md, it.data, it.len) == 1;
        } else {
            for (uint64_t left = it.len; left > 0 && ok;) {
                size_t n = left < sizeof zeros ? (size_t)left : sizeof zeros;
                ok = EVP_DigestUpdate(h->md, zeros, n) == 1;
                left -= n;
            }
        }
        pthread_mutex_lock(&h->mu);
        h->head++;
        if (!ok)
            h->failed = true;
        if (it.buf >= 0)
            h->busy[it.buf] = false;
        pthread_cond_broadcast(&h->cv);
        pthread_mutex_unlock(&h->mu);
    }
}

static void hash_push(struct hasher *h, const uint8_t *data, uint64_t len, int buf)
{
    pthread_mutex_lock(&h->mu);
    while (h->tail - h->head == QLEN)
        pthread_cond_wait(&h->cv, &h->mu);
    h->q[h->tail % QLEN] = (struct hitem){ data, len, buf };
    h->tail++;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

/* A buffer the hasher no longer needs. */
static int hash_free_buf(struct hasher *h)
{
    pthread_mutex_lock(&h->mu);
    int b;
    for (;;) {
        for (b = 0; b < NBUF && h->busy[b]; b++)
            ;
        if (b < NBUF)
            break;
        pthread_cond_wait(&h->cv, &h->mu);
    }
    h->busy[b] = true;
    pthread_mutex_unlock(&h->mu);
    return b;
}

static void hash_finish(struct hasher *h)
{
    pthread_mutex_lock(&h->mu);
    h->done = true;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->thread, NULL);
}

/* ---- writing ------------------------------------------------------------- */

static bool page_is_zero(const uint8_t *p)
{
    const uint64_t *w = (const uint64_t *)(const void *)p;
    uint64_t acc = 0;
    for (unsigned i = 0; i < PAGE / 8; i += 8)
        acc |= w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7];
    return acc == 0;
}

static int write_all(int fd, const uint8_t *p, uint64_t len, uint64_t off, struct bm_err *err)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len > (1u << 30) ? (1u << 30) : (size_t)len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return bm_err_sys(err, n < 0 ? errno : EIO, "writing the crash dump at offset %#" PRIx64, off);
        p += n;
        off += (uint64_t)n;
        len -= (uint64_t)n;
    }
    return 0;
}

/* Write the non-zero pages of one chunk; returns bytes written or -1. */
static int64_t write_chunk(int fd, const uint8_t *p, uint64_t len, uint64_t pa, struct bm_err *err)
{
    uint64_t written = 0, run = 0;
    bool in_run = false;
    for (uint64_t off = 0; off < len; off += PAGE) {
        uint64_t n = len - off < PAGE ? len - off : PAGE;
        bool zero = n == PAGE ? page_is_zero(p + off) : (memcmp(p + off, zeros, n) == 0);
        if (!zero && !in_run) {
            run = off;
            in_run = true;
        } else if (zero && in_run) {
            if (write_all(fd, p + run, off - run, pa + run, err) < 0)
                return -1;
            written += off - run;
            in_run = false;
        }
    }
    if (in_run) {
        if (write_all(fd, p + run, len - run, pa + run, err) < 0)
            return -1;
        written += len - run;
    }
    return (int64_t)written;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int check_ranges(const struct dump_source *src, struct bm_err *err)
{
    if (src->nranges == 0)
        return bm_err_set(err, "no guest RAM to dump");
    for (size_t i = 0; i < src->nranges; i++)
        if (src->ranges[i].end < src->ranges[i].start ||
            (i && src->ranges[i].start <= src->ranges[i - 1].end) ||
            src->ranges[i].end >= (1ull << 52))
            return bm_err_set(err, "guest RAM ranges are not sorted, disjoint and below 4 PiB");
    return 0;
}

static bool cancelled(const struct dump_opts *o)
{
    if (o == NULL || o->cancel == NULL)
        return false;
    if (o->poll_cancel != NULL)
        o->poll_cancel(o->poll_ctx);
    return *o->cancel != 0;
}

/* The image, into fd. */
static int write_image(int fd, const struct dump_source *src, const struct dump_opts *opts,
                       struct dump_result *res, struct bm_err *err)
{
    uint64_t size = src->ranges[src->nranges - 1].end + 1;
    res->size = size;
    if (ftruncate(fd, (off_t)size) < 0)
        return bm_err_sys(err, errno, "sizing the crash dump to %" PRIu64 " bytes", size);
    uint8_t *bufs[NBUF] = { 0 };
    struct hasher h;
    memset(&h, 0, sizeof h);
    pthread_mutex_init(&h.mu, NULL);
    pthread_cond_init(&h.cv, NULL);
    h.md = EVP_MD_CTX_new();
    int rc = 0;
    if (h.md == NULL || EVP_DigestInit_ex(h.md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(h.md);
        return bm_err_set(err, "cannot initialise SHA-256 (OpenSSL)");
    }
    for (int i = 0; i < NBUF; i++)
        if ((bufs[i] = malloc(CHUNK)) == NULL)
            rc = bm_err_set(err, "out of memory for dump buffers");
    bool thread = rc == 0 && pthread_create(&h.thread, NULL, hash_main, &h) == 0;
    if (rc == 0 && !thread)
        rc = bm_err_set(err, "cannot start the hashing thread");
    uint64_t pos = 0;
    for (size_t r = 0; rc == 0 && r < src->nranges; r++) {
        const struct dump_range *rg = &src->ranges[r];
        if (rg->start > pos)
            hash_push(&h, NULL, rg->start - pos, -1);
        for (uint64_t pa = rg->start; rc == 0 && pa <= rg->end; pa += CHUNK) {
            uint64_t len = rg->end - pa + 1 < CHUNK ? rg->end - pa + 1 : CHUNK;
            const uint8_t *p = src->map ? src->map(src->ctx, pa, (size_t)len) : NULL;
            int b = -1;
            if (p == NULL) {
                b = hash_free_buf(&h);
                if (src->read(src->ctx, pa, bufs[b], (size_t)len, err) < 0) {
                    bm_err_prefix(err, "reading guest RAM for the dump");
                    rc = -1;
                    pthread_mutex_lock(&h.mu);
                    h.busy[b] = false;
                    pthread_mutex_unlock(&h.mu);
                    break;
                }
                p = bufs[b];
            }
            int64_t w = write_chunk(fd, p, len, pa, err);
            if (w < 0) {
                rc = -1;
                if (b >= 0) {
                    pthread_mutex_lock(&h.mu);
                    h.busy[b] = false;
                    pthread_mutex_unlock(&h.mu);
                }
                break;
            }
            res->written_bytes += (uint64_t)w;
            res->ram_bytes += len;
            if (w > 0)
                sync_file_range(fd, (off_t)pa, (off_t)len, SYNC_FILE_RANGE_WRITE);
            hash_push(&h, p, len, b);
            pos = pa + len;
            if (opts && opts->progress)
                opts->progress(opts->progress_ctx, pos, size);
            if (cancelled(opts))
                rc = bm_err_set(err, "interrupted by a signal");
        }
    }
    if (thread)
        hash_finish(&h);
    if (rc == 0 && h.failed)
        rc = bm_err_set(err, "SHA-256 failed (OpenSSL)");
    if (rc == 0) {
        unsigned char md[32];
        unsigned int mdlen = 0;
        if (EVP_DigestFinal_ex(h.md, md, &mdlen) != 1 || mdlen != 32)
            rc = bm_err_set(err, "SHA-256 failed (OpenSSL)");
        for (unsigned i = 0; rc == 0 && i < 32; i++)
            snprintf(res->sha256 + 2 * i, 3, "%02x", md[i]);
    }
    if (rc == 0 && fsync(fd) < 0)
        rc = bm_err_sys(err, errno, "fsync of the crash dump");
    EVP_MD_CTX_free(h.md);
    for (int i = 0; i < NBUF; i++)
        free(bufs[i]);
    pthread_cond_destroy(&h.cv);
    pthread_mutex_destroy(&h.mu);
    return rc;
}

int dump_write_raw(const char *dir, const struct dump_source *src, const struct dump_meta *meta,
                   const struct dump_opts *opts, struct dump_result *res, struct bm_err *err)
{
    memset(res, 0, sizeof *res);
    double t0 = now_s();
    if (check_ranges(src, err) < 0)
        return -1;
    int dirfd = dump_open_dir(dir, err);
    if (dirfd < 0)
        return -1;
    char bin_tmp[96] = "", meta_tmp[96] = "";
    int rc = 0, bin = -1, mfd = -1;
    bin = dump_create_temp(dirfd, DUMP_BIN_NAME, bin_tmp, sizeof bin_tmp, err);
    if (bin < 0)
        rc = -1;
    if (rc == 0)
        rc = write_image(bin, src, opts, res, err);
    if (bin >= 0 && close(bin) < 0 && rc == 0)
        rc = bm_err_sys(err, errno, "closing the crash dump");
    if (rc == 0 && (mfd = dump_create_temp(dirfd, DUMP_META_NAME, meta_tmp, sizeof meta_tmp, err)) < 0)
        rc = -1;
    if (rc == 0)
        rc = dump_meta_write(mfd, meta, src, res, err);
    if (rc == 0 && fsync(mfd) < 0)
        rc = bm_err_sys(err, errno, "fsync of crashdump.metadata");
    if (mfd >= 0 && close(mfd) < 0 && rc == 0)
        rc = bm_err_sys(err, errno, "closing crashdump.metadata");
    /* A pair of final names must always belong together: the old metadata
     * goes first, the new image takes its name, then the new metadata. */
    if (rc == 0 && unlinkat(dirfd, DUMP_META_NAME, 0) < 0 && errno != ENOENT)
        rc = bm_err_sys(err, errno, "removing the previous crashdump.metadata");
    if (rc == 0 && renameat(dirfd, bin_tmp, dirfd, DUMP_BIN_NAME) < 0)
        rc = bm_err_sys(err, errno, "renaming the crash dump into place");
    if (rc == 0)
        bin_tmp[0] = '\0';
    if (rc == 0 && renameat(dirfd, meta_tmp, dirfd, DUMP_META_NAME) < 0)
        rc = bm_err_sys(err, errno, "renaming crashdump.metadata into place");
    if (rc == 0)
        meta_tmp[0] = '\0';
    if (rc == 0 && fsync(dirfd) < 0)
        rc = bm_err_sys(err, errno, "fsync of the crash dump directory");
    if (rc < 0) {
        /* Nothing that looks like a complete dump may stay behind. */
        if (bin_tmp[0])
            unlinkat(dirfd, bin_tmp, 0);
        if (meta_tmp[0])
            unlinkat(dirfd, meta_tmp, 0);
        if (!bin_tmp[0] && meta_tmp[0])
            unlinkat(dirfd, DUMP_BIN_NAME, 0);
    }
    close(dirfd);
    res->seconds = now_s() - t0;
    return rc;
}
