/* winmod.c - see winmod.h: a bounded walk of PsLoadedModuleList. */
#include "win/winmod.h"

#include <inttypes.h>
#include <string.h>

/* Loader entries and the head live in the kernel half. */
#define WINMOD_KERNEL_MIN UINT64_C(0xffff800000000000)
/* All the fields one entry needs lie within this many bytes of it (0x68 in
 * every shared table); a profile saying otherwise is refused. Only the span
 * the fields cover is read, so an entry at the end of a page is fine. */
#define WINMOD_ENTRY_SPAN 0x200

struct offs {
    uint64_t links, base, size, name, flink, ulen, ubuf;
    uint64_t span;                  /* bytes of an entry read */
};

static bool pick(const struct win_profile *p, struct offs *o)
{
    if (!p->list_entry_flink.present || !p->unicode_string_length.present ||
        !p->unicode_string_buffer.present)
        return false;
    o->flink = p->list_entry_flink.value;
    o->ulen = p->unicode_string_length.value;
    o->ubuf = p->unicode_string_buffer.value;
    if (p->kldr_links.present && p->kldr_dll_base.present && p->kldr_size_of_image.present &&
        p->kldr_base_dll_name.present) {
        o->links = p->kldr_links.value;
        o->base = p->kldr_dll_base.value;
        o->size = p->kldr_size_of_image.value;
        o->name = p->kldr_base_dll_name.value;
    } else if (p->ldr_links.present && p->ldr_dll_base.present &&
               p->ldr_size_of_image.present && p->ldr_base_dll_name.present) {
        o->links = p->ldr_links.value;
        o->base = p->ldr_dll_base.value;
        o->size = p->ldr_size_of_image.value;
        o->name = p->ldr_base_dll_name.value;
    } else {
        return false;
    }
    uint64_t span = o->links + o->flink + 8;
    if (o->base + 8 > span) span = o->base + 8;
    if (o->size + 4 > span) span = o->size + 4;
    if (o->name + o->ulen + 2 > span) span = o->name + o->ulen + 2;
    if (o->name + o->ubuf + 8 > span) span = o->name + o->ubuf + 8;
    o->span = span;
    return span <= WINMOD_ENTRY_SPAN && o->links <= WINMOD_ENTRY_SPAN;
}

static uint64_t rd64(const uint8_t *b, uint64_t off)
{
    uint64_t v;
    memcpy(&v, b + off, 8);
    return v;
}

static uint32_t rd32(const uint8_t *b, uint64_t off)
{
    uint32_t v;
    memcpy(&v, b + off, 4);
    return v;
}

static bool overlaps(const struct winmod_list *l, uint64_t base, uint32_t size)
{
    for (size_t i = 0; i < l->n; i++)
        if (base < l->m[i].base + l->m[i].size && l->m[i].base < base + size)
            return true;
    return false;
}

/* Entries seen (kept or dropped), for loop detection. */
static bool seen(const uint64_t *v, size_t n, uint64_t x)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == x)
            return true;
    return false;
}

int winmod_walk(pe_read_fn read, void *ctx, const struct win_profile *prof, uint64_t head,
                struct winmod_list *out, struct bm_err *err)
{
    out->n = 0;
    out->capped = out->looped = out->broken = false;
    out->overlaps = out->bad_sizes = 0;
    struct offs o;
    if (!pick(prof, &o))
        return bm_err_set(err, "the symbol profile lacks the loaded-module entry offsets "
                          "(_KLDR_DATA_TABLE_ENTRY or _LDR_DATA_TABLE_ENTRY, _LIST_ENTRY, "
                          "_UNICODE_STRING)");
    if (head < WINMOD_KERNEL_MIN)
        return bm_err_set(err, "PsLoadedModuleList at %#" PRIx64 " is not a kernel address", head);
    uint64_t link;
    if (read(ctx, head + o.flink, &link, 8, err) < 0)
        return -1;
    uint64_t visited[WINMOD_MAX];
    size_t nvisited = 0;
    while (link != head) {
        if (nvisited == WINMOD_MAX) {
            out->capped = true;
            break;
        }
        if (link < WINMOD_KERNEL_MIN + o.links) {
            out->broken = true;
            break;
        }
        uint64_t entry = link - o.links;
        if (seen(visited, nvisited, entry)) {
            out->looped = true;
            break;
        }
        visited[nvisited++] = entry;
        uint8_t b[WINMOD_ENTRY_SPAN];
        struct bm_err e = BM_ERR_INIT;
        if (read(ctx, entry, b, o.span, &e) < 0) {
            out->broken = true;
            break;
        }
        uint64_t base = rd64(b, o.base);
        uint32_t size = rd32(b, o.size);
        if (size == 0 || size > WINMOD_SIZE_MAX || base + size < base) {
            out->bad_sizes++;
        } else if (overlaps(out, base, size)) {
            out->overlaps++;
        } else {
            struct winmod_entry *m = &out->m[out->n++];
            m->entry = entry;
            m->base = base;
            m->size = size;
            memcpy(&m->name_len, b + o.name + o.ulen, 2);
            m->name_buf = rd64(b, o.name + o.ubuf);
            m->pos = (unsigned)(nvisited - 1);
        }
        link = rd64(b, o.links + o.flink);
    }
    return 0;
}

int winmod_find(const struct winmod_list *l, uint64_t va)
{
    for (size_t i = 0; i < l->n; i++)
        if (va >= l->m[i].base && va - l->m[i].base < l->m[i].size)
            return (int)i;
    return -1;
}

int winmod_ustr(pe_read_fn read, void *ctx, uint16_t len, uint64_t buf,
                char out[WINMOD_NAME_MAX + 1], bool *truncated, struct bm_err *err)
{
    out[0] = '\0';
    *truncated = false;
    size_t units = len / 2;
    if (units == 0)
        return bm_err_set(err, "the string at %#" PRIx64 " is empty", buf);
    if (units > WINMOD_NAME_MAX) {
        units = WINMOD_NAME_MAX;
        *truncated = true;
    }
    uint16_t w[WINMOD_NAME_MAX];
    if (read(ctx, buf, w, units * 2, err) < 0)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < units; i++) {
        if (w[i] == 0)
            break;
        out[n++] = w[i] >= 0x20 && w[i] < 0x7f ? (char)w[i] : '?';
    }
    out[n] = '\0';
    if (n == 0)
        return bm_err_set(err, "the string at %#" PRIx64 " is empty", buf);
    return 0;
}

int winmod_name(pe_read_fn read, void *ctx, const struct winmod_entry *m,
                char out[WINMOD_NAME_MAX + 1], bool *truncated, struct bm_err *err)
{
    if (winmod_ustr(read, ctx, m->name_len, m->name_buf, out, truncated, err) < 0) {
        bm_err_prefix(err, "name of the module at %#" PRIx64, m->base);
        return -1;
    }
    return 0;
}

int winmod_timestamp(pe_read_fn read, void *ctx, const struct winmod_entry *m,
                     uint32_t *ts, struct bm_err *err)
{
    struct pe_image img;
    if (pe_open(&img, read, ctx, m->base, err) < 0)
        return -1;
    *ts = img.timestamp;
    return 0;
}
