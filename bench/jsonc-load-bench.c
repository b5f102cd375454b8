/* jsonc-load-bench.c - figure 3, the peer: load the same profile the way
 * LibVMI and DRAKVUF do (json_object_from_file: the whole text in memory,
 * then the whole tree with json-c), after decompressing it completely (they
 * take plain .json, so the .json.xz is inflated first), then look up
 * KeBugCheck2 and free everything. Prints one JSON line like
 * profile-load-bench.
 *
 *   jsonc-load-bench FILE
 */
#include <inttypes.h>
#include <json-c/json.h>
#include <lzma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "procmem.h"

/* The whole file, inflated when it is xz; NUL-terminated. */
static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 1 << 20, n = 0;
    unsigned char *raw = malloc(cap);
    size_t got;
    while (raw != NULL && (got = fread(raw + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            cap *= 2;
            raw = realloc(raw, cap);
        }
    }
    fclose(f);
    if (raw == NULL)
        return NULL;
    if (n < 6 || memcmp(raw, "\xfd" "7zXZ\0", 6) != 0) {
        raw = realloc(raw, n + 1);
        raw[n] = 0;
        *len = n;
        return (char *)raw;
    }
    lzma_stream s = LZMA_STREAM_INIT;
    if (lzma_stream_decoder(&s, UINT64_MAX, 0) != LZMA_OK) {
        free(raw);
        return NULL;
    }
    size_t ocap = n * 8, on = 0;
    unsigned char *out = malloc(ocap);
    s.next_in = raw;
    s.avail_in = n;
    lzma_ret r = LZMA_OK;
    while (out != NULL && r == LZMA_OK) {
        if (on + 1 >= ocap) {
            ocap *= 2;
            out = realloc(out, ocap);
            if (out == NULL)
                break;
        }
        s.next_out = out + on;
        s.avail_out = ocap - on - 1;
        r = lzma_code(&s, LZMA_FINISH);
        on = ocap - 1 - s.avail_out;
    }
    lzma_end(&s);
    free(raw);
    if (out == NULL || r != LZMA_STREAM_END) {
        free(out);
        return NULL;
    }
    out[on] = 0;
    *len = on;
    return (char *)out;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: jsonc-load-bench FILE\n");
        return 2;
    }
    long before = bench_status_kib("VmRSS");
    int reset = bench_reset_peak();
    double t0 = bench_now_ms();
    size_t len = 0;
    char *text = read_all(argv[1], &len);
    if (text == NULL) {
        fprintf(stderr, "jsonc-load-bench: cannot read or inflate %s\n", argv[1]);
        return 1;
    }
    json_object *root = json_tokener_parse(text);
    free(text);
    if (root == NULL) {
        fprintf(stderr, "jsonc-load-bench: %s is not JSON\n", argv[1]);
        return 1;
    }
    json_object *syms, *sym, *addr;
    int64_t rva = -1;
    if (json_object_object_get_ex(root, "symbols", &syms) &&
        json_object_object_get_ex(syms, "KeBugCheck2", &sym) &&
        json_object_object_get_ex(sym, "address", &addr))
        rva = json_object_get_int64(addr);
    long hwm = bench_status_kib("VmHWM");
    json_object_put(root);
    double t1 = bench_now_ms();
    printf("{\"ms\": %.3f, \"rss_before_kib\": %ld, \"hwm_kib\": %ld, \"hwm_reset\": %s, "
           "\"KeBugCheck2\": %" PRId64 ", \"present\": %s, \"text_bytes\": %zu}\n",
           t1 - t0, before, hwm, reset == 0 ? "true" : "false", rva,
           rva >= 0 ? "true" : "false", len);
    return 0;
}
