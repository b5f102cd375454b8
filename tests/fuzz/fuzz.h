/* fuzz.h - helpers shared by the libFuzzer harnesses of tests/fuzz.
 *
 *   FUZZ_CHECK(cond)   an oracle: abort (a crash libFuzzer records) when an
 *                      invariant of the code under test does not hold.
 *   struct fuzz_mem    fuzzer bytes as guest memory at a base address, with
 *                      optional unreadable pages, read through the
 *                      pe_read_fn / paging_read_fn callback shape.
 *   fuzz_peer_*        a fake server on a socketpair: a thread writes the
 *                      fuzzer's bytes, closes its sending side (so every
 *                      wait of the client ends at EOF, never at a timeout)
 *                      and drains whatever the client sends.
 *   fuzz_err_ok()      a failed call must leave one printable message.
 *   fuzz_note()        with BSODMON_FUZZ_VERBOSE set, print each step.
 *
 * Header-only (static functions) so each harness stays one .c file.
 */
#ifndef BM_FUZZ_FUZZ_H
#define BM_FUZZ_FUZZ_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/err.h"

#define FUZZ_CHECK(cond)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "%s:%d: fuzz oracle failed: %s\n", __FILE__,   \
                    __LINE__, #cond);                                      \
            abort();                                                       \
        }                                                                  \
    } while (0)

static inline uint16_t fuzz_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t fuzz_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static inline uint64_t fuzz_le64(const uint8_t *p)
{
    return (uint64_t)fuzz_le32(p) | (uint64_t)fuzz_le32(p + 4) << 32;
}

/* A failed call sets a message that is NUL-terminated, non-empty and one
 * line (messages go to users and logs). */
static inline bool fuzz_err_ok(const struct bm_err *err)
{
    if (!err->set)
        return false;
    size_t n = strnlen(err->msg, sizeof err->msg);
    if (n == 0 || n == sizeof err->msg)
        return false;
    return memchr(err->msg, '\n', n) == NULL;
}

/* With BSODMON_FUZZ_VERBOSE set, print what a step did: replaying one seed
 * (harness FILE) then shows how far a recorded conversation gets. */
static inline void fuzz_note(const char *step, int rc, const struct bm_err *err)
{
    static int verbose = -1;
    if (verbose < 0)
        verbose = getenv("BSODMON_FUZZ_VERBOSE") != NULL;
    if (verbose)
        fprintf(stderr, "fuzz: %-14s %d%s%s\n", step, rc, err->set ? "  " : "",
                err->set ? err->msg : "");
}

/* --- fuzzer bytes as memory ---------------------------------------------- */

struct fuzz_mem {
    const uint8_t *data;
    size_t size;
    uint64_t base;       /* address of data[0] */
    uint32_t holes;      /* bit i set: page i (from base) is unreadable */
    uint64_t reads;      /* callback calls, to bound the work per input */
    uint64_t bytes;      /* bytes requested */
};

/* Same shape as pe_read_fn and paging_read_fn. */
static inline int fuzz_mem_read(void *ctx, uint64_t addr, void *buf,
                                size_t len, struct bm_err *err)
{
    struct fuzz_mem *m = ctx;
    m->reads++;
    m->bytes += len;
    uint64_t off = addr - m->base;
    if (addr < m->base || off > m->size || len > m->size - off)
        return bm_err_set(err, "fuzz memory: 0x%llx+%zu is not mapped",
                          (unsigned long long)addr, len);
    if (len > 0) {
        uint64_t first = off >> 12, last = (off + len - 1) >> 12;
        for (uint64_t pg = first; pg <= last && pg < 32; pg++)
            if (m->holes & (UINT32_C(1) << pg))
                return bm_err_set(err, "fuzz memory: page %llu is a hole",
                                  (unsigned long long)pg);
        memcpy(buf, m->data + off, len);
    }
    return 0;
}

/* --- fake server on a socketpair ----------------------------------------- */

struct fuzz_peer {
    int fd;              /* server end, owned by the thread */
    const uint8_t *data;
    size_t size;
    pthread_t thread;
};

static void *fuzz_peer_main(void *arg)
{
    struct fuzz_peer *p = arg;
    size_t off = 0;
    while (off < p->size) {
        ssize_t n = send(p->fd, p->data + off, p->size - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;      /* the client closed early: fine */
        off += (size_t)n;
    }
    shutdown(p->fd, SHUT_WR);
    char sink[4096];
    for (;;) {
        ssize_t n = recv(p->fd, sink, sizeof sink, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
    }
    close(p->fd);
    return NULL;
}

/* Start the server; returns the client's fd (the caller closes it, then
 * calls fuzz_peer_finish). */
static inline int fuzz_peer_start(struct fuzz_peer *p, const uint8_t *data,
                                  size_t size)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        perror("socketpair");
        abort();
    }
    p->fd = sv[1];
    p->data = data;
    p->size = size;
    if (pthread_create(&p->thread, NULL, fuzz_peer_main, p) != 0) {
        perror("pthread_create");
        abort();
    }
    return sv[0];
}

static inline void fuzz_peer_finish(struct fuzz_peer *p)
{
    pthread_join(p->thread, NULL);
}

#endif
