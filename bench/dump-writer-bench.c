/* dump-writer-bench - throughput and allocated size of dump/'s crash dump
 * writer, from an in-memory fake guest, to a directory on the disk under
 * test. Not a test: built by meson, run by hand.
 *
 *   dump-writer-bench [-s GiB] [-r runs] [-m map|read] [-c cases] [-v variants]
 *                     [-f formats] [-k chunk-MiB] [-b] [-V] DIR
 *
 * The fake guest has -s GiB of RAM (default 4) laid out like QEMU's `pc`
 * machine: 0-3 GiB, then the rest from 4 GiB (a 1 GiB hole, not RAM), so a
 * 4 GiB guest is a 5 GiB image. Cases (-c, comma separated):
 *   half    the first half of RAM random, the second half zeros (as in
 *           bench/fig_dump.py)
 *   mixed   64 KiB blocks, each random or zero at random (half of each)
 *   random  all random
 * Variants (-v): default, buffered (no O_DIRECT), inline-write (no writer
 * thread), inline-hash (no hashing thread), inline (neither thread).
 * Formats (-f, comma separated; default raw): raw (crashdump.bin), dmp
 * (crashdump.dmp, a Windows crash dump with a few patched pages, as
 * bsodmon writes it), both (the two files from one pass); each row then
 * says how many bytes of RAM the source handed out per run (one pass: the
 * RAM size, whatever the formats) and the allocated size of the files.
 * -m read makes the source copy every chunk (as process_vm_readv does)
 * instead of handing out pointers (a shm-backed guest). -b also times two
 * ceilings: write(2) of all RAM in 8 MiB pieces + fsync (as `cp` of a shm
 * file + sync), the same with O_DIRECT, and SHA-256 alone over the image.
 * -V checks the written file against the fake guest and the hash, once.
 * Every run starts after sync(2) with no dump in DIR; times include fsync
 * and the final renames. GB = 1e9 bytes of guest RAM.
 *
 * Measured on the development VM (2 cores AMD EPYC, virtio disk, ext4,
 * kernel 6.18, OpenSSL 3.0 with SHA-NI), -s 4 -r 3, medians, map source:
 * see the figures in the final report of the dump writer and in
 * src/dump/dump_raw.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dump/dump.h"

#define GIB (1ull << 30)
#define MAXRUNS 32

struct fake {
    uint8_t *mem;       /* RAM, contiguous; pa >= 4 GiB sits at pa - 1 GiB */
    uint64_t ram;
    struct dump_range ranges[2];
    size_t nranges;
    uint64_t handed;    /* bytes read or mapped by the writer */
};

static uint8_t *at(struct fake *f, uint64_t pa)
{
    return f->mem + (pa >= 4 * GIB ? pa - GIB : pa);
}

static int fake_read(void *ctx, uint64_t pa, void *buf, size_t len, struct bm_err *err)
{
    (void)err;
    ((struct fake *)ctx)->handed += len;
    memcpy(buf, at(ctx, pa), len);
    return 0;
}

static const void *fake_map(void *ctx, uint64_t pa, size_t len)
{
    ((struct fake *)ctx)->handed += len;
    return at(ctx, pa);
}

static uint64_t rng_state[4] = { 0x9e3779b97f4a7c15ull, 0xbf58476d1ce4e5b9ull,
                                 0x94d049bb133111ebull, 0x2545f4914f6cdd1dull };

static uint64_t rng(void) /* xoshiro256** */
{
    uint64_t *s = rng_state;
    uint64_t r = ((s[1] * 5) << 7 | (s[1] * 5) >> 57) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = s[3] << 45 | s[3] >> 19;
    return r;
}

static void fill_random(uint8_t *p, uint64_t n)
{
    uint64_t *w = (uint64_t *)(void *)p;
    for (uint64_t i = 0; i < n / 8; i++)
        w[i] = rng() | 1; /* no all-zero page by chance */
}

static void fill(struct fake *f, const char *c)
{
    if (strcmp(c, "random") == 0) {
        fill_random(f->mem, f->ram);
    } else if (strcmp(c, "half") == 0) {
        fill_random(f->mem, f->ram / 2);
        memset(f->mem + f->ram / 2, 0, f->ram - f->ram / 2);
    } else { /* mixed */
        for (uint64_t o = 0; o < f->ram; o += 64 << 10) {
            if (rng() & 1)
                fill_random(f->mem + o, 64 << 10);
            else
                memset(f->mem + o, 0, 64 << 10);
        }
    }
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void clean(const char *dir)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, DUMP_BIN_NAME);
    unlink(p);
    snprintf(p, sizeof p, "%s/%s", dir, DUMP_DMP_NAME);
    unlink(p);
    snprintf(p, sizeof p, "%s/%s", dir, DUMP_META_NAME);
    unlink(p);
    snprintf(p, sizeof p, "%s/baseline.bin", dir);
    unlink(p);
    sync();
}

/* write(2) all RAM to DIR/baseline.bin + fsync; seconds, or -1. */
static double baseline(struct fake *f, const char *dir, bool direct)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/baseline.bin", dir);
    double t0 = now();
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | (direct ? O_DIRECT : 0), 0600);
    if (fd < 0)
        return -1;
    for (uint64_t o = 0; o < f->ram; o += 8 << 20) {
        size_t n = f->ram - o < (8u << 20) ? (size_t)(f->ram - o) : 8u << 20;
        if (write(fd, f->mem + o, n) != (ssize_t)n) {
            close(fd);
            return -1;
        }
    }
    if (fsync(fd) < 0 || close(fd) < 0)
        return -1;
    double t = now() - t0;
    unlink(p);
    return t;
}

static double hash_only(struct fake *f)
{
    static uint8_t zeros[1 << 20];
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    double t0 = now();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    uint64_t pos = 0;
    for (size_t r = 0; r < f->nranges; r++) {
        for (; pos < f->ranges[r].start; pos += sizeof zeros)
            EVP_DigestUpdate(md, zeros, sizeof zeros);
        EVP_DigestUpdate(md, at(f, f->ranges[r].start), f->ranges[r].end - f->ranges[r].start + 1);
        pos = f->ranges[r].end + 1;
    }
    unsigned char out[32];
    EVP_DigestFinal_ex(md, out, NULL);
    EVP_MD_CTX_free(md);
    return now() - t0;
}

/* The written file against the fake guest and its own hash. */
static int verify(struct fake *f, const char *dir, const struct dump_result *res)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, DUMP_BIN_NAME);
    int fd = open(p, O_RDONLY);
    if (fd < 0)
        return -1;
    static uint8_t buf[8 << 20];
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    uint64_t size = f->ranges[f->nranges - 1].end + 1;
    int bad = 0;
    for (uint64_t o = 0; o < size; o += sizeof buf) {
        size_t n = size - o < sizeof buf ? (size_t)(size - o) : sizeof buf;
        if (pread(fd, buf, n, (off_t)o) != (ssize_t)n) {
            bad = 1;
            break;
        }
        EVP_DigestUpdate(md, buf, n);
        bool ram = false;
        for (size_t r = 0; r < f->nranges; r++)
            ram = ram || (o >= f->ranges[r].start && o <= f->ranges[r].end);
        if (ram ? memcmp(buf, at(f, o), n) != 0 : buf[0] != 0 || memcmp(buf, buf + 1, n - 1) != 0)
            bad = 1;
    }
    unsigned char out[32];
    EVP_DigestFinal_ex(md, out, NULL);
    EVP_MD_CTX_free(md);
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", out[i]);
    close(fd);
    if (strcmp(hex, res->sha256) != 0)
        bad = 1;
    return bad ? -1 : 0;
}

static const struct {
    const char *name;
    unsigned flags;
} variants[] = {
    { "default", 0 },
    { "buffered", DUMP_F_BUFFERED },
    { "inline-write", DUMP_F_INLINE_WRITE },
    { "inline-hash", DUMP_F_INLINE_HASH },
    { "inline", DUMP_F_INLINE_WRITE | DUMP_F_INLINE_HASH },
    { "buffered-inline-write", DUMP_F_BUFFERED | DUMP_F_INLINE_WRITE },
};

static const struct {
    const char *name;
    unsigned formats;
} formats[] = { { "raw", DUMP_RAW }, { "dmp", DUMP_DMP }, { "both", DUMP_RAW | DUMP_DMP } };

/* A dmp header's facts and a few patches, as bsodmon's crashinfo gives:
 * KDBG (2 pages), KiBugCheckData, two CONTEXTs. */
static uint8_t patch_bytes[4][4096];
static const struct dump_patch patches[] = {
    { 0x1a00000 + 0x800, 2048, patch_bytes[0] }, { 0x1a01000, 0x200, patch_bytes[1] },
    { 0x1c00100, 40, patch_bytes[2] }, { 0x2000000 + 0x300, 0x4d0, patch_bytes[3] },
};

static void dmp_facts(struct dump_dmp *d, unsigned nproc)
{
    memset(d, 0, sizeof *d);
    memset(patch_bytes, 0x5a, sizeof patch_bytes);
    d->major_version = 0xf;
    d->minor_version = 19041;
    d->directory_table_base = 0x1aa000;
    d->machine_image_type = 0x8664;
    d->number_processors = nproc;
    d->bugcheck_code = 0xe2;
    snprintf(d->comment, sizeof d->comment, "dump-writer-bench");
    d->patches = patches;
    d->npatches = sizeof patches / sizeof patches[0];
}

static bool in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)) != NULL; p += n)
        if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
            return true;
    return false;
}

static void usage(void)
{
    fprintf(stderr, "usage: dump-writer-bench [-s GiB] [-r runs] [-m map|read] [-c half,mixed,random]\n"
                    "         [-v default,buffered,inline-write,inline-hash,inline,buffered-inline-write]\n"
                    "         [-f raw,dmp,both] [-k chunk-MiB] [-b] [-V] DIR\n");
    exit(2);
}

int main(int argc, char **argv)
{
    unsigned gib = 4, runs = 3, chunk_mib = 0;
    const char *mode = "map", *cases = "half,random", *vlist = "default", *flist = "raw";
    bool base = false, check = false;
    int c;
    while ((c = getopt(argc, argv, "s:r:m:c:v:f:k:bV")) != -1) {
        switch (c) {
        case 's': gib = (unsigned)atoi(optarg); break;
        case 'r': runs = (unsigned)atoi(optarg); break;
        case 'm': mode = optarg; break;
        case 'c': cases = optarg; break;
        case 'v': vlist = optarg; break;
        case 'f': flist = optarg; break;
        case 'k': chunk_mib = (unsigned)atoi(optarg); break;
        case 'b': base = true; break;
        case 'V': check = true; break;
        default: usage();
        }
    }
    if (optind != argc - 1 || gib < 1 || gib > 64 || runs < 1 || runs > MAXRUNS ||
        (strcmp(mode, "map") != 0 && strcmp(mode, "read") != 0))
        usage();
    const char *dir = argv[optind];
    struct bm_err err = BM_ERR_INIT;
    if (dump_check_dir(dir, &err) < 0) {
        fprintf(stderr, "dump-writer-bench: %s\n", bm_err_msg(&err));
        return 1;
    }
    struct fake f = { .ram = (uint64_t)gib * GIB };
    f.mem = mmap(NULL, f.ram, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
                 -1, 0);
    if (f.mem == MAP_FAILED) {
        perror("dump-writer-bench: mmap");
        return 1;
    }
    if (f.ram > 3 * GIB) {
        f.ranges[0] = (struct dump_range){ 0, 3 * GIB - 1 };
        f.ranges[1] = (struct dump_range){ 4 * GIB, f.ram + GIB - 1 };
        f.nranges = 2;
    } else {
        f.ranges[0] = (struct dump_range){ 0, f.ram - 1 };
        f.nranges = 1;
    }
    struct dump_source src = { f.ranges, f.nranges, fake_read,
                               strcmp(mode, "map") == 0 ? fake_map : NULL, &f };
    struct dump_meta meta = { .code = 0xe2, .bugcheck_name = "MANUALLY_INITIATED_CRASH" };
    static struct dump_dmp dmp;
    dmp_facts(&dmp, 2);
    gettimeofday(&meta.time, NULL);
    uint64_t image = f.ranges[f.nranges - 1].end + 1;
    printf("# %u GiB of RAM (%zu ranges, image %" PRIu64 " MiB), source: %s, chunk %u MiB, "
           "%u runs, to %s\n", gib, f.nranges, image >> 20, mode, chunk_mib ? chunk_mib : 8, runs,
           dir);
    printf("%-8s %-27s %8s %8s %10s %7s %s\n", "case", "method", "s", "GB/s", "alloc MiB",
           "alloc%", "(median; each run's seconds; CPU seconds per run, user+system; RAM MiB "
           "handed out per run)");
    static const char *const all_cases[] = { "half", "mixed", "random" };
    for (size_t ci = 0; ci < 3; ci++) {
        if (!in_list(cases, all_cases[ci]))
            continue;
        fill(&f, all_cases[ci]);
        if (base) {
            double t[MAXRUNS], td[MAXRUNS], th[MAXRUNS];
            for (unsigned r = 0; r < runs; r++) {
                clean(dir);
                t[r] = baseline(&f, dir, false);
                clean(dir);
                td[r] = baseline(&f, dir, true);
                th[r] = hash_only(&f);
            }
            double m = median(t, (int)runs), md = median(td, (int)runs), mh = median(th, (int)runs);
            printf("%-8s %-22s %8.2f %8.2f\n", all_cases[ci], "write+fsync (cp+sync)", m,
                   (double)f.ram / m / 1e9);
            printf("%-8s %-22s %8.2f %8.2f\n", all_cases[ci], "write O_DIRECT+fsync", md,
                   (double)f.ram / md / 1e9);
            printf("%-8s %-22s %8.2f %8.2f   (SHA-256 of the %" PRIu64 " MiB image)\n",
                   all_cases[ci], "sha256 only", mh, (double)f.ram / mh / 1e9, image >> 20);
        }
        /* Runs interleave the variants and formats: a slow spell of the
         * disk hits all. */
        enum { NVV = sizeof variants / sizeof variants[0], NF = 3, NV = NVV * NF };
        double t[NV][MAXRUNS], cpu_u[NV] = { 0 }, cpu_s[NV] = { 0 };
        uint64_t alloc[NV] = { 0 }, handed[NV] = { 0 };
        bool direct[NV] = { false };
        for (unsigned r = 0; r < runs; r++) {
            for (size_t vi = 0; vi < NV; vi++) {
                size_t vv = vi / NF, fi = vi % NF;
                if (!in_list(vlist, variants[vv].name) || !in_list(flist, formats[fi].name))
                    continue;
                clean(dir);
                struct dump_tune tune = { variants[vv].flags, (size_t)chunk_mib << 20 };
                struct dump_result res;
                bm_err_clear(&err);
                struct rusage ru0, ru1;
                getrusage(RUSAGE_SELF, &ru0);
                f.handed = 0;
                if (dump_write(dir, formats[fi].formats, &src, &meta, &dmp, NULL, &tune, &res,
                               &err) < 0) {
                    fprintf(stderr, "dump-writer-bench: %s\n", bm_err_msg(&err));
                    return 1;
                }
                handed[vi] = f.handed;
                getrusage(RUSAGE_SELF, &ru1);
                cpu_u[vi] += (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
                             (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6;
                cpu_s[vi] += (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                             (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
                t[vi][r] = res.seconds;
                direct[vi] = res.direct;
                char p[4096];
                struct stat st;
                alloc[vi] = 0;
                for (unsigned k = 0; k < res.nfiles; k++) {
                    snprintf(p, sizeof p, "%s/%s", dir, res.file[k].name);
                    if (stat(p, &st) == 0)
                        alloc[vi] += (uint64_t)st.st_blocks * 512;
                }
                snprintf(p, sizeof p, "%s/%s", dir, DUMP_BIN_NAME);
                if (check && r == 0 && (formats[fi].formats & DUMP_RAW) &&
                    verify(&f, dir, &res) < 0) {
                    fprintf(stderr, "dump-writer-bench: %s does not match the guest or its "
                            "hash\n", p);
                    return 1;
                }
            }
        }
        for (size_t vi = 0; vi < NV; vi++) {
            size_t vv = vi / NF, fi = vi % NF;
            if (!in_list(vlist, variants[vv].name) || !in_list(flist, formats[fi].name))
                continue;
            double v[MAXRUNS];
            memcpy(v, t[vi], sizeof v);
            double m = median(v, (int)runs);
            char method[64];
            snprintf(method, sizeof method, "%s %s", formats[fi].name, variants[vv].name);
            printf("%-8s %-27s %8.2f %8.2f %10" PRIu64 " %6.1f%% %s(runs:", all_cases[ci],
                   method, m, (double)f.ram / m / 1e9, alloc[vi] >> 20,
                   100.0 * (double)alloc[vi] / (double)f.ram, direct[vi] ? "direct " : "");
            for (unsigned r = 0; r < runs; r++)
                printf(" %.2f", t[vi][r]);
            printf(") cpu %.1fu+%.1fs; read %" PRIu64 " MiB%s\n", cpu_u[vi] / runs,
                   cpu_s[vi] / runs, handed[vi] >> 20,
                   check && (formats[fi].formats & DUMP_RAW) ? " verified" : "");
        }
        fflush(stdout);
    }
    clean(dir);
    munmap(f.mem, f.ram);
    return 0;
}
