/* triage_world.c - see triage_world.h. */
#include "triage_world.h"

#include <stdlib.h>
#include <string.h>

#define ON(f, v) do { p->f.value = (v); p->f.present = true; } while (0)

void tw_profile(struct win_profile *p)
{
    memset(p, 0, sizeof *p);
    ON(PsLoadedModuleList, TW_HEAD_RVA);
    ON(ldr_links, 0);
    ON(ldr_dll_base, 0x30);
    ON(ldr_size_of_image, 0x40);
    ON(ldr_base_dll_name, 0x58);
    ON(list_entry_flink, 0);
    ON(unicode_string_length, 0);
    ON(unicode_string_buffer, 8);
    ON(ktrap_frame_rip, 0x168);
    ON(ktrap_frame_rsp, 0x180);
    ON(exception_record_code, 0);
    ON(exception_record_address, 0x10);
    ON(context_rip, 0xF8);
    ON(context_rsp, 0x98);
    ON(eprocess_image_file_name, 0x5A8);
    ON(eprocess_image_file_name_len, 15);
}

void tw_put_bytes(struct tw *w, uint64_t va, const void *b, size_t len)
{
    const uint8_t *src = b;
    while (len > 0) {
        uint64_t pg = va & ~UINT64_C(0xfff);
        size_t off = (size_t)(va - pg), n = 4096 - off < len ? 4096 - off : len;
        uint8_t page[4096];
        struct bm_err e = BM_ERR_INIT;
        int reads = w->vm.reads;
        if (fakevm_read(&w->vm, pg, page, 4096, &e) < 0)
            memset(page, 0, sizeof page);
        w->vm.reads = reads;
        memcpy(page + off, src, n);
        fakevm_map(&w->vm, pg, page, 4096);
        va += n;
        src += n;
        len -= n;
    }
}

void tw_put64(struct tw *w, uint64_t va, uint64_t v) { tw_put_bytes(w, va, &v, 8); }
void tw_put32(struct tw *w, uint64_t va, uint32_t v) { tw_put_bytes(w, va, &v, 4); }

uint64_t tw_entry_va(unsigned i) { return TW_ENTRIES + (uint64_t)i * 0x100; }

void tw_set_entry(struct tw *w, unsigned i, uint64_t base, uint32_t size, uint64_t flink)
{
    uint64_t e = tw_entry_va(i);
    tw_put64(w, e, flink);
    tw_put64(w, e + 0x30, base);
    tw_put32(w, e + 0x40, size);
}

void tw_set_name(struct tw *w, unsigned i, const char *name, uint16_t len_bytes)
{
    uint64_t e = tw_entry_va(i), buf = TW_NAMES + (uint64_t)i * 0x1000;
    size_t n = strlen(name);
    uint16_t *u = calloc(n + 1, 2);
    for (size_t k = 0; k < n; k++)
        u[k] = (uint8_t)name[k];
    tw_put_bytes(w, buf, u, n * 2);
    free(u);
    tw_put_bytes(w, e + 0x58, &len_bytes, 2);
    tw_put64(w, e + 0x58 + 8, buf);
}

void tw_init(struct tw *w, const char *const *names)
{
    memset(w, 0, sizeof *w);
    fakevm_init(&w->vm);
    tw_profile(&w->prof);
    const char *all[16] = { "ntoskrnl.exe", "hal.dll" };
    unsigned n = 2;
    for (; names != NULL && names[n - 2] != NULL && n < 16; n++)
        all[n] = names[n - 2];
    uint64_t head = TW_KBASE + TW_HEAD_RVA;
    for (unsigned i = 0; i < n; i++) {
        static uint8_t img[PB_SIZE];
        pb_build(img, all[i]);
        pb_put32(img, PB_LFANEW + 8, TW_DRV_TS + i);
        fakevm_map(&w->vm, TW_MOD(i), img, PB_SIZE);
        tw_set_entry(w, i, TW_MOD(i), PB_SIZE, i + 1 < n ? tw_entry_va(i + 1) : head);
        tw_set_name(w, i, all[i], (uint16_t)(strlen(all[i]) * 2));
    }
    tw_put64(w, head, tw_entry_va(0));
    w->n = n;
}

void tw_free(struct tw *w) { fakevm_free(&w->vm); }
