/* pe_builder.h - builds a small, valid PE32+ image in a buffer for tests,
 * and a fake virtual memory to read it (and other pages) through. */
#ifndef BM_TEST_PE_BUILDER_H
#define BM_TEST_PE_BUILDER_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define PB_SIZE 0x4000u         /* SizeOfImage of the built image */
/* Fixed layout of the built image (RVAs). */
#define PB_LFANEW      0x80u
#define PB_OPT         (PB_LFANEW + 24u)
#define PB_SECTIONS    (PB_OPT + 240u)
#define PB_EXPORT_DIR  0x2000u
#define PB_EXPORT_SIZE 0x200u
#define PB_FUNCS       0x2040u
#define PB_NAMES       0x2060u
#define PB_ORDS        0x2080u
#define PB_DLLNAME     0x2100u
#define PB_FORWARD     0x2180u
#define PB_DEBUG_DIR   0x2400u
#define PB_RSDS        0x2500u
#define PB_TEXT        0x1000u  /* .text: 0x1000..0x2000, executable */

/* The GUID the image's RSDS record carries, and its age. */
#define PB_GUID "32C1A669D5FFEFD41091F636CFDB6E99"
#define PB_AGE 1

/* Names exported, sorted: KeBugCheck 0x1000, KeBugCheckEx 0x1100,
 * KeFwd (forwarder "NTDLL.RtlFoo"), RtlZero 0x1200. */
void pb_build(uint8_t img[PB_SIZE], const char *dll_name);

void pb_put16(uint8_t *img, uint32_t off, uint16_t v);
void pb_put32(uint8_t *img, uint32_t off, uint32_t v);

/* Sparse fake virtual memory: 4 KiB pages at arbitrary addresses. A page
 * may be "absent" (reads fail, as for an unmapped guest page). */
struct fakevm {
    int n;
    struct { uint64_t va; uint8_t *data; } pages[4096];
    int reads;
};

void fakevm_init(struct fakevm *vm);
void fakevm_free(struct fakevm *vm);
/* Copy `len` bytes (page-aligned length) to `va` (page-aligned). */
void fakevm_map(struct fakevm *vm, uint64_t va, const void *data, size_t len);
void fakevm_unmap(struct fakevm *vm, uint64_t va);
int fakevm_read(void *ctx, uint64_t va, void *buf, size_t len, struct bm_err *err);

#endif
