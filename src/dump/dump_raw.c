/* dump_raw.c - the one pass over RAM, the flat sparse image, the files'
 * SHA-256s, and the whole dump.
 *
 * Every format is a sink of the same pass: crashdump.bin puts a page at its
 * physical address, crashdump.dmp after its header in run order, with the
 * patched pages (dump_dmp.c) copied and changed on their way in; each sink
 * has its own writer and hasher thread. With both formats RAM is still
 * read (or mapped) and scanned once.
 *
 * One pass over RAM, in chunks (8 MiB by default): each chunk is mapped (zero
 * copy) or read into a buffer, and its 4 KiB pages are tested for all-zero
 * right away, while hot in cache (a word-OR scan that stops at the first
 * non-zero cache line, so random pages cost one line); the non-zero pages,
 * coalesced into runs, are written with pwrite() at their physical offsets,
 * and the rest of the file stays a hole (ftruncate to the final size at the
 * end). Three threads share a ring of 4 chunks: this one reads and scans, a
 * writer writes, a hasher feeds SHA-256 (OpenSSL) with the chunks and with
 * zeros for the gaps between RAM ranges (the hash is that of the file as a
 * reader sees it). A slot is reused once both have finished with it.
 *
 * The image is written with O_DIRECT when the filesystem takes it (4 KiB
 * aligned offsets, lengths and memory; any EINVAL falls back to the page
 * cache): no copy into the page cache, no gigabytes of dirty pages that the
 * final fsync must wait for and that push the host's other caches out, and
 * the CPU left to the hash. In the page cache fallback, writeback of each
 * chunk starts at once (sync_file_range) and is waited for 4 chunks later,
 * then the pages are dropped (FADV_DONTNEED).
 *
 * Measured on the 2-core development VM (virtio disk, ext4, SHA-NI; OpenSSL
 * sha256 1.63 GB/s; dd to the disk: 1.2-1.4 GB/s with O_DIRECT, 0.2-0.6
 * GB/s buffered + fsync, cp + sync 1.0-1.2 GB/s), bench/dump-writer-bench,
 * 4 GiB of RAM as 0-3 GiB + 4-5 GiB (a 5 GiB image), GB of RAM per second,
 * until committed: see the table in bench/dump-writer-bench.c.
 */
#include "dump/dump.h"
#include "dump/cryptoapi.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Every use below comes after write_images() loaded libcrypto. */
#define CR crypto_api_loaded()

#define PAGE 4096u
#define DEFAULT_CHUNK (8u << 20)
#define MIN_CHUNK (64u << 10)
#define MAX_CHUNK (256u << 20)
#define NSLOT 4                    /* chunks in flight */
#define GAP_PIECE (256ull << 20)   /* gaps are hashed in pieces: a cancel is seen */
#define DIO_ALIGN 4096u            /* enough for every logical block size in use */
#define WB_LAG 4                   /* page cache fallback: chunks of writeback in flight */

/* Never written: what holes hash as. */
static uint8_t zero_block[64u << 10];

struct run {
    uint32_t off, len; /* non-zero pages, within a chunk */
};

/* What one file gets of a chunk. */
struct view {
    const uint8_t *data; /* NULL: a gap between RAM ranges, len zero bytes */
    uint64_t off;        /* file offset of data[0] */
    struct run *runs;
    uint32_t nruns;
};

enum { RAW, DMP, NSINK };

struct item {
    uint64_t pa, len;
    uint64_t ram_done;   /* RAM bytes up to the end of this item */
    struct view v[NSINK];
    uint8_t *buf;        /* this slot's buffer for read(), allocated on first use */
    uint8_t *pbuf;       /* the dmp's patched copy of a chunk, on first use */
    struct run *runs, *pruns;
};

/* One output file: its writer and its hasher. */
struct sink {
    bool on;
    int fd;
    bool direct;
    struct { uint64_t off, len; } wb[WB_LAG];
    unsigned wb_n;
    struct bm_err werr;
    EVP_MD_CTX *md;
    bool hash_failed;
    uint64_t hashed;     /* dmp: file bytes hashed so far (holes caught up lazily) */
    uint64_t size;       /* final apparent size */
};

#define NROLE_MAX (2 * NSINK) /* per sink: the writer, the hasher */

struct pipe {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t prod;                 /* items published */
    unsigned nroles;
    struct { int sink; bool hash; } role[NROLE_MAX];
    uint64_t cur[NROLE_MAX];       /* items finished, per role */
    uint64_t ram_done[NROLE_MAX];  /* RAM bytes finished, per role */
    bool eof, stop;
    struct item slot[NSLOT];
    size_t chunk;
    struct sink sink[NSINK];
    const struct dump_dmp *dmp;
    const struct dump_dmp_layout *lay;
};

/* ---- writing ------------------------------------------------------------- */

/* 0, or an errno; advances *p, *len, *off past what was written. */
static int pwrite_all(int fd, const uint8_t **p, size_t *len, uint64_t *off)
{
    while (*len > 0) {
        ssize_t n = pwrite(fd, *p, *len, (off_t)*off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno;
        if (n == 0)
            return EIO;
        *p += n;
        *len -= (size_t)n;
        *off += (uint64_t)n;
    }
    return 0;
}

static int set_direct(int fd, bool on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -1;
    return fcntl(fd, F_SETFL, on ? fl | O_DIRECT : fl & ~O_DIRECT);
}

static int write_error(struct sink *pp, int e, uint64_t off)
{
    return bm_err_sys(&pp->werr, e, "writing the crash dump at offset %#" PRIx64 "%s", off,
                      e == ENOSPC || e == EDQUOT ? " (the disk is full)" : "");
}

static int write_run(struct sink *pp, const uint8_t *p, size_t len, uint64_t off)
{
    int e;
    if (pp->direct && ((uintptr_t)p | len | off) % DIO_ALIGN != 0) {
        /* An odd edge (RAM not page aligned, or an odd mapping): through
         * the page cache, then direct again. */
        if (set_direct(pp->fd, false) < 0)
            return bm_err_sys(&pp->werr, errno, "fcntl on the crash dump");
        e = pwrite_all(pp->fd, &p, &len, &off);
        if (e == 0 && set_direct(pp->fd, true) < 0)
            pp->direct = false;
    } else {
        e = pwrite_all(pp->fd, &p, &len, &off);
        if (e == EINVAL && pp->direct) {
            /* The filesystem wants more than 4 KiB alignment, or refuses
             * direct I/O after all: the page cache from here on. */
            pp->direct = false;
            if (set_direct(pp->fd, false) < 0)
                return bm_err_sys(&pp->werr, errno, "fcntl on the crash dump");
            e = pwrite_all(pp->fd, &p, &len, &off);
        }
    }
    return e == 0 ? 0 : write_error(pp, e, off);
}

/* Page cache fallback: start writeback of what was just written, wait for
 * the range written WB_LAG chunks ago and drop it from the cache. Errors
 * seen here are not seen again by fsync, so they count. */
static int writeback(struct sink *pp, uint64_t off, uint64_t len)
{
    if (sync_file_range(pp->fd, (off_t)off, (off_t)len, SYNC_FILE_RANGE_WRITE) < 0)
        return errno == EINVAL || errno == ESPIPE || errno == ENOSYS ? 0 : write_error(pp, errno, off);
    unsigned i = pp->wb_n++ % WB_LAG;
    if (pp->wb_n > WB_LAG) {
        uint64_t o = pp->wb[i].off, l = pp->wb[i].len;
        if (sync_file_range(pp->fd, (off_t)o, (off_t)l, SYNC_FILE_RANGE_WAIT_BEFORE |
                            SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER) < 0)
            return write_error(pp, errno, o);
        posix_fadvise(pp->fd, (off_t)o, (off_t)l, POSIX_FADV_DONTNEED);
    }
    pp->wb[i].off = off;
    pp->wb[i].len = len;
    return 0;
}

static int write_item(struct sink *pp, const struct view *v)
{
    if (v->data == NULL || v->nruns == 0)
        return 0;
    for (uint32_t i = 0; i < v->nruns; i++)
        if (write_run(pp, v->data + v->runs[i].off, v->runs[i].len, v->off + v->runs[i].off) < 0)
            return -1;
    if (!pp->direct) {
        uint64_t first = v->runs[0].off, last = v->runs[v->nruns - 1].off +
                                                v->runs[v->nruns - 1].len;
        return writeback(pp, v->off + first, last - first);
    }
    return 0;
}

/* ---- hashing ------------------------------------------------------------- */

static bool hash_zeros(struct sink *pp, uint64_t len)
{
    bool ok = true;
    for (uint64_t left = len; left > 0 && ok;) {
        size_t n = left < sizeof zero_block ? (size_t)left : sizeof zero_block;
        ok = CR->EVP_DigestUpdate(pp->md, zero_block, n) == 1;
        left -= n;
    }
    return ok;
}

/* The raw image hashes every item in address order, gaps as zeros; the
 * dmp file hashes what lies between its data (alignment, merged gaps) as
 * zeros when the next data comes, and skips the gap items (not in it). */
static int hash_item(struct sink *pp, int sink, const struct item *it)
{
    const struct view *v = &it->v[sink];
    bool ok = true;
    if (sink == DMP) {
        if (v->data != NULL) {
            ok = hash_zeros(pp, v->off - pp->hashed) &&
                 CR->EVP_DigestUpdate(pp->md, v->data, (size_t)it->len) == 1;
            pp->hashed = v->off + it->len;
        }
    } else if (v->data != NULL) {
        ok = CR->EVP_DigestUpdate(pp->md, v->data, (size_t)it->len) == 1;
    } else {
        ok = hash_zeros(pp, it->len);
    }
    if (!ok)
        pp->hash_failed = true;
    return ok ? 0 : -1;
}

/* ---- the ring ------------------------------------------------------------ */

static int process(struct pipe *pp, unsigned role, const struct item *it)
{
    int k = pp->role[role].sink;
    return pp->role[role].hash ? hash_item(&pp->sink[k], k, it) : write_item(&pp->sink[k], &it->v[k]);
}

static void finished(struct pipe *pp, unsigned role, const struct item *it, int rc)
{
    pthread_mutex_lock(&pp->mu);
    if (rc < 0)
        pp->stop = true;
    pp->cur[role]++;
    pp->ram_done[role] = it->ram_done;
    pthread_cond_broadcast(&pp->cv);
    pthread_mutex_unlock(&pp->mu);
}

struct consumer_arg {
    struct pipe *pp;
    unsigned role;
};

static void *consumer(void *arg)
{
    struct consumer_arg *a = arg;
    struct pipe *pp = a->pp;
    for (;;) {
        pthread_mutex_lock(&pp->mu);
        while (!pp->stop && !pp->eof && pp->cur[a->role] == pp->prod)
            pthread_cond_wait(&pp->cv, &pp->mu);
        bool out = pp->stop || pp->cur[a->role] == pp->prod;
        const struct item *it = &pp->slot[pp->cur[a->role] % NSLOT];
        pthread_mutex_unlock(&pp->mu);
        if (out)
            return NULL;
        finished(pp, a->role, it, process(pp, a->role, it));
    }
}

/* The next free slot, or NULL when the dump is stopping. */
static struct item *next_slot(struct pipe *pp)
{
    pthread_mutex_lock(&pp->mu);
    for (;;) {
        uint64_t low = UINT64_MAX;
        for (unsigned r = 0; r < pp->nroles; r++)
            low = pp->cur[r] < low ? pp->cur[r] : low;
        if (pp->stop || pp->prod - low < NSLOT)
            break;
        pthread_cond_wait(&pp->cv, &pp->mu);
    }
    struct item *it = pp->stop ? NULL : &pp->slot[pp->prod % NSLOT];
    pthread_mutex_unlock(&pp->mu);
    return it;
}

static void publish(struct pipe *pp, struct item *it, const bool inline_role[NROLE_MAX])
{
    pthread_mutex_lock(&pp->mu);
    pp->prod++;
    pthread_cond_broadcast(&pp->cv);
    pthread_mutex_unlock(&pp->mu);
    for (unsigned r = 0; r < pp->nroles; r++) {
        if (!inline_role[r])
            continue;
        pthread_mutex_lock(&pp->mu);
        bool stop = pp->stop;
        pthread_mutex_unlock(&pp->mu);
        finished(pp, r, it, stop ? 0 : process(pp, r, it));
    }
}

/* ---- the producer -------------------------------------------------------- */

static inline bool page_is_zero(const uint8_t *p)
{
    const uint64_t *w = (const uint64_t *)(const void *)p;
    /* Most non-zero pages show it in their first cache line. */
    if (w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7])
        return false;
    uint64_t acc = 0;
    for (unsigned i = 8; i < PAGE / 8; i++)
        acc |= w[i];
    return acc == 0;
}

static bool bytes_are_zero(const uint8_t *p, size_t n)
{
    return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Zero pages of a chunk; the non-zero ones as runs. Bytes in runs. */
static uint64_t scan(struct view *it, uint64_t total)
{
    const uint8_t *p = it->data;
    bool words = (uintptr_t)p % 8 == 0;
    uint32_t n = 0, start = 0;
    bool in_run = false;
    for (uint64_t off = 0; off < total; off += PAGE) {
        size_t len = total - off < PAGE ? (size_t)(total - off) : PAGE;
        bool zero = len == PAGE && words ? page_is_zero(p + off) : bytes_are_zero(p + off, len);
        if (!zero && !in_run) {
            start = (uint32_t)off;
            in_run = true;
        } else if (zero && in_run) {
            it->runs[n++] = (struct run){ start, (uint32_t)off - start };
            in_run = false;
        }
    }
    if (in_run)
        it->runs[n++] = (struct run){ start, (uint32_t)total - start };
    it->nruns = n;
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < n; i++)
        bytes += it->runs[i].len;
    return bytes;
}

/* 0, or -1 with err set when the dump is to stop. */
static int cancelled(const struct dump_opts *o, struct bm_err *err)
{
    if (o == NULL || o->cancel == NULL)
        return 0;
    if (o->poll_cancel != NULL)
        o->poll_cancel(o->poll_ctx);
    int sig = (int)*o->cancel;
    if (sig == 0)
        return 0;
    /* Handlers store the signal number (any nonzero value will do). */
    if (sig > 0 && sig < 65)
        return bm_err_set(err, "crash dump interrupted by signal %d (%s)", sig, strsignal(sig));
    return bm_err_set(err, "crash dump interrupted");
}

static int check_source(const struct dump_source *src, struct bm_err *err)
{
    if (src == NULL || src->ranges == NULL || src->nranges == 0)
        return bm_err_set(err, "no guest RAM to dump");
    if (src->read == NULL && src->map == NULL)
        return bm_err_set(err, "the memory source can neither read nor map guest RAM");
    for (size_t i = 0; i < src->nranges; i++) {
        const struct dump_range *r = &src->ranges[i];
        if (r->end < r->start || (i > 0 && r->start <= src->ranges[i - 1].end) ||
            r->end >= (1ull << 52))
            return bm_err_set(err, "guest RAM range %zu [%#" PRIx64 "-%#" PRIx64 "] is not "
                              "sorted, disjoint and below 4 PiB", i, r->start, r->end);
    }
    return 0;
}

static uint64_t ram_total(const struct dump_source *src)
{
    uint64_t n = 0;
    for (size_t i = 0; i < src->nranges; i++)
        n += src->ranges[i].end - src->ranges[i].start + 1;
    return n;
}

static void report(const struct dump_opts *o, struct pipe *pp, uint64_t total)
{
    if (o == NULL || o->progress == NULL)
        return;
    pthread_mutex_lock(&pp->mu);
    uint64_t done = UINT64_MAX;
    for (unsigned r = 0; r < pp->nroles; r++)
        done = pp->ram_done[r] < done ? pp->ram_done[r] : done;
    pthread_mutex_unlock(&pp->mu);
    o->progress(o->progress_ctx, done < total ? done : total - 1, total);
}

/* The dmp's view of a chunk: where it goes in that file, and when a patch
 * falls in it, a patched copy with its own runs (a patch can turn a zero
 * page into data and back). */
static int dmp_view(struct pipe *pp, struct item *it, size_t *cursor, uint64_t *bytes,
                    struct bm_err *err)
{
    struct view *d = &it->v[DMP];
    *d = it->v[RAW];
    d->off = dump_dmp_file_off(pp->lay, it->pa);
    if (!dump_dmp_touches(pp->dmp, cursor, it->pa, it->len)) {
        *bytes = 0;
        for (uint32_t i = 0; i < d->nruns; i++)
            *bytes += d->runs[i].len;
        return 0;
    }
    if (it->pbuf == NULL && (it->pbuf = aligned_alloc(DIO_ALIGN, pp->chunk)) == NULL)
        return bm_err_set(err, "out of memory for a %zu MiB dump buffer", pp->chunk >> 20);
    memcpy(it->pbuf, it->v[RAW].data, (size_t)it->len);
    dump_dmp_apply(pp->dmp, *cursor, it->pa, it->pbuf, it->len);
    d->data = it->pbuf;
    d->runs = it->pruns;
    *bytes = scan(d, it->len);
    return 0;
}

/* Produce every item: gaps and RAM chunks. */
static int produce(struct pipe *pp, const struct dump_source *src, const struct dump_opts *o,
                   const bool inline_role[NROLE_MAX], struct dump_result *res, uint64_t total,
                   struct bm_err *err)
{
    uint64_t pos = 0, ram = 0;
    size_t cursor = 0;
    for (size_t r = 0; r < src->nranges; r++) {
        const struct dump_range *rg = &src->ranges[r];
        while (pos < rg->start) {
            struct item *it = next_slot(pp);
            if (it == NULL)
                return -1;
            uint64_t len = rg->start - pos < GAP_PIECE ? rg->start - pos : GAP_PIECE;
            it->pa = pos;
            it->len = len;
            it->ram_done = ram;
            for (int k = 0; k < NSINK; k++)
                it->v[k] = (struct view){ .data = NULL, .off = pos, .runs = it->runs };
            publish(pp, it, inline_role);
            pos += len;
            if (cancelled(o, err) < 0)
                return -1;
        }
        for (uint64_t pa = rg->start; pa <= rg->end; pa += pp->chunk) {
            uint64_t len = rg->end - pa + 1 < pp->chunk ? rg->end - pa + 1 : pp->chunk;
            struct item *it = next_slot(pp);
            if (it == NULL)
                return -1;
            const uint8_t *data = src->map != NULL ? src->map(src->ctx, pa, (size_t)len) : NULL;
            if (data == NULL) {
                if (src->read == NULL)
                    return bm_err_set(err, "guest RAM at %#" PRIx64 " cannot be mapped", pa);
                if (it->buf == NULL && (it->buf = aligned_alloc(DIO_ALIGN, pp->chunk)) == NULL)
                    return bm_err_set(err, "out of memory for a %zu MiB dump buffer",
                                      pp->chunk >> 20);
                if (src->read(src->ctx, pa, it->buf, (size_t)len, err) < 0) {
                    bm_err_prefix(err, "reading guest RAM at %#" PRIx64 " for the crash dump", pa);
                    return -1;
                }
                data = it->buf;
            }
            ram += len;
            it->pa = pa;
            it->len = len;
            it->ram_done = ram;
            it->v[RAW] = (struct view){ .data = data, .off = pa, .runs = it->runs };
            uint64_t raw_bytes = scan(&it->v[RAW], len), dmp_bytes = 0;
            if (pp->sink[DMP].on && dmp_view(pp, it, &cursor, &dmp_bytes, err) < 0)
                return -1;
            for (int k = 0; k < NSINK; k++)
                res->file[k].written_bytes += k == RAW ? raw_bytes : dmp_bytes;
            publish(pp, it, inline_role);
            res->ram_bytes = ram;
            pos = pa + len;
            report(o, pp, total);
            if (cancelled(o, err) < 0)
                return -1;
        }
    }
    return 0;
}

static int sink_finish(struct sink *s, int k, struct dump_file_result *fr, struct bm_err *err)
{
    if (k == DMP && !hash_zeros(s, s->size - s->hashed))
        s->hash_failed = true;
    if (s->hash_failed)
        return bm_err_set(err, "SHA-256 of the crash dump failed (OpenSSL)");
    if (ftruncate(s->fd, (off_t)s->size) < 0)
        return bm_err_sys(err, errno, "sizing %s to %" PRIu64 " bytes", fr->name, s->size);
    if (fsync(s->fd) < 0)
        return bm_err_sys(err, errno, "fsync of %s", fr->name);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (CR->EVP_DigestFinal_ex(s->md, md, &mdlen) != 1 || mdlen != 32)
        return bm_err_set(err, "SHA-256 of the crash dump failed (OpenSSL)");
    for (unsigned i = 0; i < 32; i++)
        snprintf(fr->sha256 + 2 * i, 3, "%02x", md[i]);
    fr->size = s->size;
    return 0;
}

/* The dmp header at the file's start, and into its hash. */
static int dmp_start(struct pipe *pp, struct dump_result *res, struct bm_err *err)
{
    struct sink *s = &pp->sink[DMP];
    uint8_t *h = aligned_alloc(DIO_ALIGN, DUMP_DMP_HEADER_SIZE);
    if (h == NULL)
        return bm_err_set(err, "out of memory");
    dump_dmp_header(pp->dmp, pp->lay, h);
    int rc = 0;
    if (write_run(s, h, DUMP_DMP_HEADER_SIZE, 0) < 0)
        rc = bm_err_set(err, "%s", s->werr.msg);
    else if (CR->EVP_DigestUpdate(s->md, h, DUMP_DMP_HEADER_SIZE) != 1)
        rc = bm_err_set(err, "SHA-256 of the crash dump failed (OpenSSL)");
    s->hashed = DUMP_DMP_HEADER_SIZE;
    res->file[DMP].written_bytes += DUMP_DMP_HEADER_SIZE;
    free(h);
    return rc;
}

int dump_prepare(struct bm_err *err)
{
    return crypto_api(err) != NULL ? 0 : -1;
}

/* The images into their descriptors (fd[k] < 0: not written), fsync'ed;
 * res gets their sizes, counts and hashes. */
static int write_images(const int fd[NSINK], const struct dump_source *src,
                        const struct dump_dmp *dmp, const struct dump_dmp_layout *lay,
                        const struct dump_opts *o, unsigned flags, size_t chunk,
                        struct dump_result *res, struct bm_err *err)
{
    if (dump_prepare(err) < 0)
        return -1;
    uint64_t total = ram_total(src);
    struct pipe *pp = calloc(1, sizeof *pp);
    if (pp == NULL)
        return bm_err_set(err, "out of memory");
    pthread_mutex_init(&pp->mu, NULL);
    pthread_cond_init(&pp->cv, NULL);
    pp->chunk = chunk;
    pp->dmp = dmp;
    pp->lay = lay;
    int rc = 0;
    /* O_DIRECT needs 4 KiB aligned RAM ranges (QEMU's always are). */
    bool aligned = true;
    for (size_t i = 0; i < src->nranges; i++)
        aligned = aligned && src->ranges[i].start % DIO_ALIGN == 0 &&
                  (src->ranges[i].end + 1) % DIO_ALIGN == 0;
    for (int k = 0; k < NSINK; k++) {
        struct sink *s = &pp->sink[k];
        s->fd = fd[k];
        s->on = fd[k] >= 0;
        if (!s->on)
            continue;
        s->size = k == RAW ? src->ranges[src->nranges - 1].end + 1 : lay->file_size;
        s->md = CR->EVP_MD_CTX_new();
        if (rc == 0 && (s->md == NULL || CR->EVP_DigestInit_ex(s->md, CR->EVP_sha256(), NULL) != 1))
            rc = bm_err_set(err, "cannot initialise SHA-256 (OpenSSL)");
        s->direct = rc == 0 && !(flags & DUMP_F_BUFFERED) && aligned && set_direct(s->fd, true) == 0;
        pp->role[pp->nroles].sink = k;
        pp->role[pp->nroles++].hash = false;
        pp->role[pp->nroles].sink = k;
        pp->role[pp->nroles++].hash = true;
    }
    for (int i = 0; rc == 0 && i < NSLOT; i++)
        if ((pp->slot[i].runs = malloc((chunk / PAGE / 2 + 1) * sizeof(struct run))) == NULL ||
            (pp->sink[DMP].on &&
             (pp->slot[i].pruns = malloc((chunk / PAGE / 2 + 1) * sizeof(struct run))) == NULL))
            rc = bm_err_set(err, "out of memory");
    if (rc == 0 && pp->sink[DMP].on)
        rc = dmp_start(pp, res, err);

    /* A role without its thread (asked for, or no thread to be had) runs
     * inline, in this thread. */
    bool inline_role[NROLE_MAX];
    pthread_t th[NROLE_MAX];
    bool started[NROLE_MAX] = { false };
    struct consumer_arg args[NROLE_MAX];
    for (unsigned r = 0; r < pp->nroles; r++) {
        inline_role[r] = (flags & (pp->role[r].hash ? DUMP_F_INLINE_HASH : DUMP_F_INLINE_WRITE)) != 0;
        args[r] = (struct consumer_arg){ pp, r };
        if (rc == 0 && !inline_role[r])
            started[r] = pthread_create(&th[r], NULL, consumer, &args[r]) == 0;
        inline_role[r] = !started[r];
    }

    if (rc == 0)
        rc = produce(pp, src, o, inline_role, res, total, err);

    pthread_mutex_lock(&pp->mu);
    pp->eof = true;
    if (rc < 0)
        pp->stop = true;
    pthread_cond_broadcast(&pp->cv);
    pthread_mutex_unlock(&pp->mu);
    for (unsigned r = 0; r < pp->nroles; r++)
        if (started[r])
            pthread_join(th[r], NULL);

    /* The first error wins: the producer's, else a writer's or hasher's
     * (which stopped the producer). */
    bool sink_err = false;
    for (int k = 0; k < NSINK; k++) {
        struct sink *s = &pp->sink[k];
        res->file[k].direct = s->direct;
        if (!sink_err && s->werr.set)
            rc = bm_err_set(err, "%s", s->werr.msg);
        else if (!sink_err && s->hash_failed)
            rc = bm_err_set(err, "SHA-256 of the crash dump failed (OpenSSL)");
        sink_err = sink_err || s->werr.set || s->hash_failed;
    }
    if (rc < 0 && err != NULL && !err->set)
        bm_err_set(err, "crash dump stopped");
    for (int k = 0; rc == 0 && k < NSINK; k++)
        if (pp->sink[k].on)
            rc = sink_finish(&pp->sink[k], k, &res->file[k], err);
    for (int k = 0; k < NSINK; k++)
        CR->EVP_MD_CTX_free(pp->sink[k].md);
    for (int i = 0; i < NSLOT; i++) {
        free(pp->slot[i].runs);
        free(pp->slot[i].pruns);
        free(pp->slot[i].buf);
        free(pp->slot[i].pbuf);
    }
    pthread_cond_destroy(&pp->cv);
    pthread_mutex_destroy(&pp->mu);
    free(pp);
    return rc;
}

/* ---- the dump ------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int close_checked(int *fd, const char *what, int rc, struct bm_err *err)
{
    if (*fd >= 0 && close(*fd) < 0 && rc == 0)
        rc = bm_err_sys(err, errno, "closing %s", what);
    *fd = -1;
    return rc;
}

static const char *const file_names[NSINK] = { DUMP_BIN_NAME, DUMP_DMP_NAME };
static const char *const file_formats[NSINK] = { "raw", "dmp" };

int dump_write(const char *dir, unsigned formats, const struct dump_source *src,
               const struct dump_meta *meta, const struct dump_dmp *dmp,
               const struct dump_opts *opts, const struct dump_tune *tune,
               struct dump_result *res, struct bm_err *err)
{
    memset(res, 0, sizeof *res);
    double t0 = now_s();
    unsigned flags = tune != NULL ? tune->flags : 0;
    size_t chunk = tune != NULL && tune->chunk != 0 ? tune->chunk : DEFAULT_CHUNK;
    if (chunk < MIN_CHUNK || chunk > MAX_CHUNK || (chunk & (chunk - 1)) != 0)
        return bm_err_set(err, "crash dump chunk size %zu is not a power of two in 64 KiB..256 "
                          "MiB", chunk);
    if (formats == 0 || (formats & ~(DUMP_RAW | DUMP_DMP)) != 0)
        return bm_err_set(err, "crash dump formats %#x: expected raw, dmp or both", formats);
    if (meta == NULL)
        return bm_err_set(err, "no crash facts for the crash dump metadata");
    if (check_source(src, err) < 0)
        return -1;
    struct dump_dmp_layout lay;
    memset(&lay, 0, sizeof lay);
    if ((formats & DUMP_DMP) &&
        (dump_dmp_check(dmp, src, err) < 0 || dump_dmp_layout(src, &lay, err) < 0))
        return -1;
    if (cancelled(opts, err) < 0)
        return -1;
    int dirfd = dump_open_dir(dir, err);
    if (dirfd < 0)
        return -1;
    char tmp[NSINK][96] = { "", "" }, meta_tmp[96] = "";
    int rc = 0, fd[NSINK] = { -1, -1 }, mfd = -1;
    const char *img_tmp[NSINK], *img_name[NSINK];
    size_t nimg = 0;
    for (int k = 0; k < NSINK; k++) {
        res->file[k].name = file_names[k];
        res->file[k].format = file_formats[k];
        if (rc == 0 && (formats & (k == RAW ? DUMP_RAW : DUMP_DMP)) &&
            (fd[k] = dump_create_temp(dirfd, file_names[k], tmp[k], sizeof tmp[k], err)) < 0)
            rc = -1;
    }
    if (rc == 0)
        rc = write_images(fd, src, dmp, &lay, opts, flags, chunk, res, err);
    for (int k = 0; k < NSINK; k++)
        rc = close_checked(&fd[k], file_names[k], rc, err);
    /* The files in order (raw, dmp); the first one also in the old fields. */
    struct dump_file_result files[NSINK];
    for (int k = 0; k < NSINK; k++)
        if (formats & (k == RAW ? DUMP_RAW : DUMP_DMP)) {
            files[nimg] = res->file[k];
            img_tmp[nimg] = tmp[k];
            img_name[nimg++] = file_names[k];
        }
    memcpy(res->file, files, nimg * sizeof files[0]);
    res->nfiles = (unsigned)nimg;
    res->size = res->file[0].size;
    res->written_bytes = res->file[0].written_bytes;
    res->direct = res->file[0].direct;
    memcpy(res->sha256, res->file[0].sha256, sizeof res->sha256);
    if (rc == 0 &&
        (mfd = dump_create_temp(dirfd, DUMP_META_NAME, meta_tmp, sizeof meta_tmp, err)) < 0)
        rc = -1;
    if (rc == 0)
        rc = dump_meta_write(mfd, meta, src, res, err);
    if (rc == 0 && fsync(mfd) < 0)
        rc = bm_err_sys(err, errno, "fsync of " DUMP_META_NAME);
    rc = close_checked(&mfd, DUMP_META_NAME, rc, err);
    if (rc == 0 && cancelled(opts, err) < 0)
        rc = -1;
    const char *stale = formats == DUMP_RAW ? DUMP_DMP_NAME : formats == DUMP_DMP ? DUMP_BIN_NAME
                                                                                 : NULL;
    if (rc == 0)
        rc = dump_commit(dirfd, img_tmp, img_name, nimg, meta_tmp, stale, err);
    if (rc < 0) {
        /* Nothing of this dump stays behind (dump_commit removed any final
         * name it had given; the temporaries are ours to remove). */
        for (int k = 0; k < NSINK; k++)
            if (tmp[k][0] != '\0')
                unlinkat(dirfd, tmp[k], 0);
        if (meta_tmp[0] != '\0')
            unlinkat(dirfd, meta_tmp, 0);
    }
    close(dirfd);
    res->seconds = now_s() - t0;
    if (rc == 0 && opts != NULL && opts->progress != NULL)
        opts->progress(opts->progress_ctx, res->ram_bytes, res->ram_bytes);
    return rc;
}

int dump_write_raw_tuned(const char *dir, const struct dump_source *src,
                         const struct dump_meta *meta, const struct dump_opts *opts,
                         const struct dump_tune *tune, struct dump_result *res,
                         struct bm_err *err)
{
    return dump_write(dir, DUMP_RAW, src, meta, NULL, opts, tune, res, err);
}

int dump_write_raw(const char *dir, const struct dump_source *src, const struct dump_meta *meta,
                   const struct dump_opts *opts, struct dump_result *res, struct bm_err *err)
{
    return dump_write_raw_tuned(dir, src, meta, opts, NULL, res, err);
}
