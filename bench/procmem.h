/* procmem.h - what the profile-loading benchmarks measure about themselves:
 * a monotonic clock, and this process's resident memory from
 * /proc/self/status. The peak is reset just before the load (writing "5" to
 * /proc/self/clear_refs resets VmHWM), so "peak added" is what the load
 * itself cost on top of the process it ran in. */
#ifndef BENCH_PROCMEM_H
#define BENCH_PROCMEM_H

#include <stdio.h>
#include <string.h>
#include <time.h>

static inline double bench_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The "KEY:" line of a /proc file in KiB, or -1. */
static inline long bench_proc_kib(const char *path, const char *key)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, key, n) == 0 && line[n] == ':') {
            sscanf(line + n + 1, "%ld", &v);
            break;
        }
    fclose(f);
    return v;
}

/* "VmRSS" or "VmHWM" in KiB, or -1. */
static inline long bench_status_kib(const char *key)
{
    return bench_proc_kib("/proc/self/status", key);
}

/* 0 when VmHWM was reset to the current VmRSS. */
static inline int bench_reset_peak(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f == NULL)
        return -1;
    int rc = fputs("5", f) < 0 ? -1 : 0;
    if (fclose(f) != 0)
        rc = -1;
    return rc;
}

#endif
