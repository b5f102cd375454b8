/* layout.h - the layout blob written by tests/guest/gen-layout (see its
 * docstring for the format): image bytes and the ISF's structure offsets. */
#ifndef GUEST_LAYOUT_H
#define GUEST_LAYOUT_H

#include "lib.h"

#define LAYOUT_ABSENT (~0ull)
#define PATCH_BUGCHECK2 1
#define PATCH_ISR 2
#define PATCH_RELOC 3
#define PATCH_CAPTURE 4
#define PATCH_SAVECTL 5

/* Open-addressing index of the keys, so that a lookup on the bug check's
 * path costs what a compiled-in offset costs Windows, not a scan of ~370
 * keys (under TCG a scan took tens of microseconds, part of every measured
 * detection latency). Blobs with more keys than half the slots are scanned. */
#define LAYOUT_INDEX_SLOTS 2048

struct layout {
    const u8 *blob;
    u64 size;
    u32 image_size;
    bool indexed;
    u16 index[LAYOUT_INDEX_SLOTS];   /* 0 empty, else key number + 1 */
    char pdb_name[33];
    char guid_age[49];
};

/* Validates the blob's header and every record's bounds; panics on damage. */
void layout_open(struct layout *l, const void *blob, u64 size);
/* Value of a key such as "off:_EPROCESS.Peb", or LAYOUT_ABSENT. */
u64 layout_get(const struct layout *l, const char *key);
/* As layout_get, panicking when the key is absent. */
u64 layout_need(const struct layout *l, const char *key);
/* Copies every chunk into the image at `image` (size image_size). */
void layout_copy_image(const struct layout *l, u8 *image);
/* Calls fn(rva, kind) for every patch record. */
void layout_patches(const struct layout *l, void (*fn)(u32 rva, u32 kind, void *ctx), void *ctx);

#endif
