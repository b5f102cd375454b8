/* layout.c - reading the layout blob (format: tests/guest/gen-layout). */
#include "layout.h"

struct blob_hdr {
    char magic[8];
    u32 version, total;
    u32 n_kv, kv_off, n_chunks, chunks_off, n_patches, patches_off;
    u32 image_size, reserved;
    char pdb_name[32];
    char guid_age[48];
} __attribute__((packed));

struct blob_kv {
    char key[56];
    u64 value;
} __attribute__((packed));

static const struct blob_hdr *hdr(const struct layout *l)
{
    return (const struct blob_hdr *)l->blob;
}

static void build_index(struct layout *l);

void layout_open(struct layout *l, const void *blob, u64 size)
{
    l->blob = blob;
    l->size = size;
    const struct blob_hdr *h = blob;
    if (size < sizeof *h || memcmp(h->magic, "BSODLAY1", 8) != 0 || h->version != 1)
        panic("layout blob missing or not BSODLAY1 v1 (size %lu)", size);
    if (h->total > size || (u64)h->kv_off + (u64)h->n_kv * sizeof(struct blob_kv) > h->total ||
        h->chunks_off > h->total || (u64)h->patches_off + (u64)h->n_patches * 8 > h->total)
        panic("layout blob damaged: records out of bounds");
    if (h->image_size == 0 || h->image_size > (64u << 20))
        panic("layout blob: bad image size %u", h->image_size);
    l->image_size = h->image_size;
    memcpy(l->pdb_name, h->pdb_name, 32);
    l->pdb_name[32] = 0;
    memcpy(l->guid_age, h->guid_age, 48);
    l->guid_age[48] = 0;
    build_index(l);
}

/* FNV-1a of a key: its bytes up to a NUL or `max`; *len gets their count. */
static u32 key_hash(const char *k, size_t max, size_t *len)
{
    u32 h = 2166136261u;
    size_t n = 0;
    for (; n < max && k[n]; n++)
        h = (h ^ (u8)k[n]) * 16777619u;
    *len = n;
    return h;
}

static bool key_is(const struct blob_kv *kv, const char *key, size_t klen)
{
    return klen < 56 && memcmp(kv->key, key, klen) == 0 && kv->key[klen] == 0;
}

/* The first of equal keys wins, as in a scan. */
static void build_index(struct layout *l)
{
    const struct blob_hdr *h = hdr(l);
    const struct blob_kv *kv = (const struct blob_kv *)(l->blob + h->kv_off);
    l->indexed = false;
    if (h->n_kv > LAYOUT_INDEX_SLOTS / 2)
        return;
    memset(l->index, 0, sizeof l->index);
    for (u32 i = 0; i < h->n_kv; i++) {
        size_t len;
        u32 s = key_hash(kv[i].key, 56, &len) & (LAYOUT_INDEX_SLOTS - 1);
        if (len == 56)
            continue;               /* no NUL: no key can equal it */
        while (l->index[s] && !key_is(&kv[l->index[s] - 1], kv[i].key, len))
            s = (s + 1) & (LAYOUT_INDEX_SLOTS - 1);
        if (!l->index[s])
            l->index[s] = (u16)(i + 1);
    }
    l->indexed = true;
}

u64 layout_get(const struct layout *l, const char *key)
{
    const struct blob_hdr *h = hdr(l);
    const struct blob_kv *kv = (const struct blob_kv *)(l->blob + h->kv_off);
    size_t klen;
    u32 s = key_hash(key, 56, &klen) & (LAYOUT_INDEX_SLOTS - 1);
    if (l->indexed) {
        for (; l->index[s]; s = (s + 1) & (LAYOUT_INDEX_SLOTS - 1))
            if (key_is(&kv[l->index[s] - 1], key, klen))
                return kv[l->index[s] - 1].value;
        return LAYOUT_ABSENT;
    }
    for (u32 i = 0; i < h->n_kv; i++)
        if (key_is(&kv[i], key, klen))
            return kv[i].value;
    return LAYOUT_ABSENT;
}

u64 layout_need(const struct layout *l, const char *key)
{
    u64 v = layout_get(l, key);
    if (v == LAYOUT_ABSENT)
        panic("layout blob has no %s", key);
    return v;
}

void layout_copy_image(const struct layout *l, u8 *image)
{
    const struct blob_hdr *h = hdr(l);
    u64 off = h->chunks_off;
    for (u32 i = 0; i < h->n_chunks; i++) {
        if (off + 8 > h->patches_off)
            panic("layout blob: chunk %u header out of bounds", i);
        u32 rva, len;
        memcpy(&rva, l->blob + off, 4);
        memcpy(&len, l->blob + off + 4, 4);
        if (off + 8 + len > h->patches_off || (u64)rva + len > h->image_size)
            panic("layout blob: chunk %u (rva %x len %u) out of bounds", i, rva, len);
        memcpy(image + rva, l->blob + off + 8, len);
        off += (8 + len + 7) & ~7ull;
    }
}

void layout_patches(const struct layout *l, void (*fn)(u32 rva, u32 kind, void *ctx), void *ctx)
{
    const struct blob_hdr *h = hdr(l);
    for (u32 i = 0; i < h->n_patches; i++) {
        u32 rec[2];
        memcpy(rec, l->blob + h->patches_off + i * 8, 8);
        if ((u64)rec[0] + 8 > h->image_size)
            panic("layout blob: patch %u out of bounds", i);
        fn(rec[0], rec[1], ctx);
    }
}
