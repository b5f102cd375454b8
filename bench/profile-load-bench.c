/* profile-load-bench.c - figure 3, bsodmon's side: load one profile with
 * profile_load() (streamed decompression and parse, only the wanted values
 * kept) and print one JSON line: time, resident memory before, peak during,
 * and the KeBugCheck2 RVA read (so the run can be checked against the peer).
 *
 *   profile-load-bench FILE
 */
#include <inttypes.h>
#include <stdio.h>

#include "procmem.h"
#include "win/profile.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: profile-load-bench FILE\n");
        return 2;
    }
    static struct win_profile prof;
    struct bm_err err = BM_ERR_INIT;
    long before = bench_status_kib("VmRSS");
    int reset = bench_reset_peak();
    double t0 = bench_now_ms();
    int rc = profile_load(argv[1], &prof, &err);
    double t1 = bench_now_ms();
    long hwm = bench_status_kib("VmHWM");
    if (rc < 0) {
        fprintf(stderr, "profile-load-bench: %s\n", bm_err_msg(&err));
        return 1;
    }
    printf("{\"ms\": %.3f, \"rss_before_kib\": %ld, \"hwm_kib\": %ld, \"hwm_reset\": %s, "
           "\"KeBugCheck2\": %" PRIu64 ", \"present\": %s}\n",
           t1 - t0, before, hwm, reset == 0 ? "true" : "false", prof.KeBugCheck2.value,
           prof.KeBugCheck2.present ? "true" : "false");
    return 0;
}
