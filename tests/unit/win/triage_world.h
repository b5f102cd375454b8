/* triage_world.h - a small guest for the triage readers' tests: a profile
 * with the shared tables' triage offsets, a fake kernel with a loaded module
 * list (ntoskrnl, HAL, a driver, each a real PE image from pe_builder), and
 * helpers to add records and break things. */
#ifndef BM_TEST_TRIAGE_WORLD_H
#define BM_TEST_TRIAGE_WORLD_H

#include <stdbool.h>
#include <stdint.h>

#include "pe_builder.h"
#include "win/profile.h"

#define TW_KBASE   UINT64_C(0xfffff80000000000)  /* ntoskrnl's base */
#define TW_HEAD_RVA 0x5000u                        /* PsLoadedModuleList */
#define TW_ENTRIES UINT64_C(0xffffa00000000000)   /* loader entries, 0x100 apart */
#define TW_NAMES   UINT64_C(0xffffa00000200000)   /* names, 0x100 apart */
#define TW_RECORDS UINT64_C(0xffffa00000400000)   /* trap frames etc. */
#define TW_MOD(i)  (TW_KBASE + (uint64_t)(i) * 0x100000)  /* module i's base */
#define TW_DRV_TS  0x5f5e1234u                     /* the driver's TimeDateStamp */

struct tw {
    struct fakevm vm;
    struct win_profile prof;
    uint8_t head[0x1000];       /* the page holding the list head */
    unsigned n;                 /* entries linked */
};

/* A profile with the offsets all five shared tables have. */
void tw_profile(struct win_profile *p);

/* ntoskrnl.exe, hal.dll, then `names` (NULL-terminated) as drivers, each a
 * PB_SIZE image at TW_MOD(i), linked in order from the head. */
void tw_init(struct tw *w, const char *const *names);
void tw_free(struct tw *w);

/* Set entry i's fields in guest memory. */
void tw_set_entry(struct tw *w, unsigned i, uint64_t base, uint32_t size, uint64_t flink);
void tw_set_name(struct tw *w, unsigned i, const char *name, uint16_t len_bytes);
uint64_t tw_entry_va(unsigned i);

/* Map a page of zeros at va and write a value into it. */
void tw_put64(struct tw *w, uint64_t va, uint64_t v);
void tw_put32(struct tw *w, uint64_t va, uint32_t v);
void tw_put_bytes(struct tw *w, uint64_t va, const void *b, size_t len);

#endif
