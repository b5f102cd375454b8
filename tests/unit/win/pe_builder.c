/* pe_builder.c - see pe_builder.h. */
#include "pe_builder.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

void pb_put16(uint8_t *img, uint32_t off, uint16_t v)
{
    img[off] = (uint8_t)v;
    img[off + 1] = (uint8_t)(v >> 8);
}

void pb_put32(uint8_t *img, uint32_t off, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        img[off + i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *img, uint32_t off, uint64_t v)
{
    pb_put32(img, off, (uint32_t)v);
    pb_put32(img, off + 4, (uint32_t)(v >> 32));
}

static void section(uint8_t *img, int i, const char *name, uint32_t rva,
                    uint32_t size, uint32_t flags)
{
    uint32_t s = PB_SECTIONS + 40u * (uint32_t)i;
    memcpy(img + s, name, strlen(name));
    pb_put32(img, s + 8, size);
    pb_put32(img, s + 12, rva);
    pb_put32(img, s + 16, size);
    pb_put32(img, s + 20, rva);
    pb_put32(img, s + 36, flags);
}

void pb_build(uint8_t img[PB_SIZE], const char *dll_name)
{
    memset(img, 0, PB_SIZE);
    img[0] = 'M', img[1] = 'Z';
    pb_put32(img, 0x3c, PB_LFANEW);
    memcpy(img + PB_LFANEW, "PE\0\0", 4);
    pb_put16(img, PB_LFANEW + 4, 0x8664);           /* Machine */
    pb_put16(img, PB_LFANEW + 6, 2);                /* NumberOfSections */
    pb_put32(img, PB_LFANEW + 8, 0x5f000000);       /* TimeDateStamp */
    pb_put16(img, PB_LFANEW + 20, 240);             /* SizeOfOptionalHeader */
    pb_put16(img, PB_LFANEW + 22, 0x22);            /* Characteristics */
    pb_put16(img, PB_OPT, 0x20b);
    pb_put32(img, PB_OPT + 16, PB_TEXT);            /* AddressOfEntryPoint */
    put64(img, PB_OPT + 24, UINT64_C(0x140000000)); /* ImageBase */
    pb_put32(img, PB_OPT + 32, 0x1000);
    pb_put32(img, PB_OPT + 36, 0x200);
    pb_put32(img, PB_OPT + 56, PB_SIZE);            /* SizeOfImage */
    pb_put32(img, PB_OPT + 60, 0x400);              /* SizeOfHeaders */
    pb_put32(img, PB_OPT + 108, 16);                /* NumberOfRvaAndSizes */
    pb_put32(img, PB_OPT + 112 + 0 * 8, PB_EXPORT_DIR);
    pb_put32(img, PB_OPT + 112 + 0 * 8 + 4, PB_EXPORT_SIZE);
    pb_put32(img, PB_OPT + 112 + 6 * 8, PB_DEBUG_DIR);
    pb_put32(img, PB_OPT + 112 + 6 * 8 + 4, 2 * 28);
    section(img, 0, ".text", PB_TEXT, 0x1000, 0x60000020);
    section(img, 1, ".rdata", 0x2000, 0x2000, 0x40000040);

    /* Export directory. */
    static const char *const names[] = { "KeBugCheck", "KeBugCheckEx", "KeFwd", "RtlZero" };
    static const uint32_t funcs[] = { 0x1000, 0x1100, PB_FORWARD, 0x1200 };
    uint32_t d = PB_EXPORT_DIR;
    pb_put32(img, d + 12, PB_DLLNAME);
    pb_put32(img, d + 16, 1);                       /* Base */
    pb_put32(img, d + 20, 4);                       /* NumberOfFunctions */
    pb_put32(img, d + 24, 4);                       /* NumberOfNames */
    pb_put32(img, d + 28, PB_FUNCS);
    pb_put32(img, d + 32, PB_NAMES);
    pb_put32(img, d + 36, PB_ORDS);
    strcpy((char *)img + PB_DLLNAME, dll_name);
    strcpy((char *)img + PB_FORWARD, "NTDLL.RtlFoo");
    uint32_t at = 0x2110;
    for (int i = 0; i < 4; i++) {
        /* Functions stored in reverse name order, so a lookup that skipped
         * the ordinal table would find the wrong address. */
        pb_put32(img, PB_FUNCS + 4u * (uint32_t)(3 - i), funcs[i]);
        pb_put32(img, PB_NAMES + 4u * (uint32_t)i, at);
        pb_put16(img, PB_ORDS + 2u * (uint32_t)i, (uint16_t)(3 - i));
        strcpy((char *)img + at, names[i]);
        at += (uint32_t)strlen(names[i]) + 1;
    }

    /* Debug directory: a POGO entry first (skipped), then CodeView. */
    pb_put32(img, PB_DEBUG_DIR + 12, 13);
    pb_put32(img, PB_DEBUG_DIR + 16, 8);
    pb_put32(img, PB_DEBUG_DIR + 20, 0x2480);
    pb_put32(img, PB_DEBUG_DIR + 28 + 12, 2);
    pb_put32(img, PB_DEBUG_DIR + 28 + 16, 24 + 13);
    pb_put32(img, PB_DEBUG_DIR + 28 + 20, PB_RSDS);
    static const uint8_t guid[16] = { 0x69, 0xA6, 0xC1, 0x32, 0xFF, 0xD5, 0xD4, 0xEF,
                                      0x10, 0x91, 0xF6, 0x36, 0xCF, 0xDB, 0x6E, 0x99 };
    memcpy(img + PB_RSDS, "RSDS", 4);
    memcpy(img + PB_RSDS + 4, guid, 16);
    pb_put32(img, PB_RSDS + 20, PB_AGE);
    strcpy((char *)img + PB_RSDS + 24, "ntkrnlmp.pdb");
}

void fakevm_init(struct fakevm *vm)
{
    memset(vm, 0, sizeof *vm);
}

void fakevm_free(struct fakevm *vm)
{
    for (int i = 0; i < vm->n; i++)
        free(vm->pages[i].data);
    vm->n = 0;
}

static uint8_t *page(struct fakevm *vm, uint64_t va)
{
    for (int i = 0; i < vm->n; i++)
        if (vm->pages[i].va == va)
            return vm->pages[i].data;
    return NULL;
}

void fakevm_map(struct fakevm *vm, uint64_t va, const void *data, size_t len)
{
    const uint8_t *src = data;
    for (size_t off = 0; off < len; off += 4096) {
        uint8_t *p = page(vm, va + off);
        if (p == NULL) {
            if (vm->n >= (int)(sizeof vm->pages / sizeof vm->pages[0]))
                abort();
            p = calloc(1, 4096);
            vm->pages[vm->n].va = va + off;
            vm->pages[vm->n++].data = p;
        }
        size_t n = len - off < 4096 ? len - off : 4096;
        memcpy(p, src + off, n);
    }
}

void fakevm_unmap(struct fakevm *vm, uint64_t va)
{
    for (int i = 0; i < vm->n; i++)
        if (vm->pages[i].va == va) {
            free(vm->pages[i].data);
            vm->pages[i] = vm->pages[--vm->n];
            return;
        }
}

int fakevm_read(void *ctx, uint64_t va, void *buf, size_t len, struct bm_err *err)
{
    struct fakevm *vm = ctx;
    uint8_t *out = buf;
    vm->reads++;
    while (len > 0) {
        uint8_t *p = page(vm, va & ~UINT64_C(0xfff));
        if (p == NULL)
            return bm_err_set(err, "fake: 0x%" PRIx64 " is not mapped", va);
        size_t off = va & 0xfff, n = 4096 - off;
        if (n > len)
            n = len;
        memcpy(out, p + off, n);
        out += n, va += n, len -= n;
    }
    return 0;
}
