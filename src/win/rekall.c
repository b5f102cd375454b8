/* rekall.c - read a Rekall profile (what DRAKVUF's -r and LibVMI take).
 *
 * Format, as written by Rekall and by DRAKVUF's drakpdb.py:
 *   "$METADATA":  {"GUID_AGE": "<32 hex><age>", "PDBFile": "ntkrnlmp.pdb",
 *                  "ProfileClass": ..., "Type": "Profile", ...}
 *   "$CONSTANTS": {"<data symbol>": <RVA>, ...}
 *   "$FUNCTIONS": {"<function symbol>": <RVA>, ...}   (drakpdb puts functions
 *                  such as KeBugCheck2 here; Rekall's own files use $CONSTANTS)
 *   "$STRUCTS":   {"_EPROCESS": [<size>, {"UniqueProcessId": [<offset>,
 *                  ["Pointer", {...}]], "ImageFileName": [<offset>, ["Array",
 *                  {"count": 15, "target": "unsigned char"}]], ...}], ...}
 * Rekall writes the GUID_AGE age in hex, drakpdb in decimal; both readings
 * are kept (win_profile.age / age_alt).
 *
 * These files are a few MB, so json-c parses the whole text (fed a chunk
 * at a time, capped), the wanted values are copied and the tree is freed.
 */
#include "win/profile.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "win/pstream.h"

#define REKALL_MAX_TEXT  (128u << 20)
#define REKALL_MAX_DEPTH 64
#define REKALL_MAX_OFFSET (1u << 24)
#define REKALL_MAX_COUNT 4096

static int bad(struct bm_err *err, const struct win_profile *p, const char *what)
{
    return bm_err_set(err, "Rekall profile %s: %s", p->path, what);
}

static bool get_index_int(json_object *arr, size_t idx, int64_t lo, int64_t hi,
                          int64_t *out)
{
    json_object *v = json_object_array_get_idx(arr, idx);
    if (v == NULL || !json_object_is_type(v, json_type_int))
        return false;
    *out = json_object_get_int64(v);
    return *out >= lo && *out <= hi;
}

static int read_metadata(json_object *root, struct win_profile *p, struct bm_err *err)
{
    json_object *md, *v;
    if (!json_object_object_get_ex(root, "$METADATA", &md))
        return 0;
    if (!json_object_is_type(md, json_type_object))
        return bad(err, p, "$METADATA is not an object");
    if (json_object_object_get_ex(md, "PDBFile", &v) && json_object_is_type(v, json_type_string))
        snprintf(p->pdb_name, sizeof p->pdb_name, "%s", json_object_get_string(v));
    if (!json_object_object_get_ex(md, "GUID_AGE", &v))
        return 0;                       /* no identity: cannot be checked */
    const char *ga = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
    size_t n = strlen(ga);
    char guid[33];
    if (n < 33 || n > 40)
        goto malformed;
    memcpy(guid, ga, 32);
    guid[32] = '\0';
    const char *tail = ga + 32;
    for (const char *c = tail; *c; c++)
        if (!isxdigit((unsigned char)*c))
            goto malformed;
    errno = 0;
    unsigned long hex = strtoul(tail, NULL, 16);
    bool decimal = strspn(tail, "0123456789") == strlen(tail);
    unsigned long dec = decimal ? strtoul(tail, NULL, 10) : hex;
    if (errno != 0 || hex > UINT32_MAX || dec > UINT32_MAX)
        goto malformed;
    return profile_set_guid(p, guid, (uint32_t)hex, (uint32_t)dec, err);
malformed:
    return bm_err_set(err, "Rekall profile %s: $METADATA.GUID_AGE '%.60s' is not a "
                      "GUID followed by an age", p->path, ga);
}

static int read_symbols(json_object *root, struct win_profile *p, struct bm_err *err)
{
    static const char *const sections[] = { "$CONSTANTS", "$FUNCTIONS" };
    for (size_t s = 0; s < 2; s++) {
        json_object *sec, *v;
        if (!json_object_object_get_ex(root, sections[s], &sec))
            continue;
        if (!json_object_is_type(sec, json_type_object))
            return bm_err_set(err, "Rekall profile %s: %s is not an object", p->path,
                              sections[s]);
        for (size_t i = 0; i < profile_nwant_symbols; i++) {
            struct win_off *w = profile_slot(p, profile_want_symbols[i].slot);
            if (w->present || !json_object_object_get_ex(sec, profile_want_symbols[i].name, &v))
                continue;
            int64_t rva = json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : -1;
            if (rva < 0 || rva > UINT32_MAX)
                return bm_err_set(err, "Rekall profile %s: %s.%s is not an RVA "
                                  "(an integer 0..0xffffffff)", p->path, sections[s],
                                  profile_want_symbols[i].name);
            w->value = (uint64_t)rva;
            w->present = true;
        }
    }
    return 0;
}

static int read_field(json_object *fields, const struct profile_want_field *f,
                      struct win_profile *p, struct bm_err *err)
{
    json_object *m;
    if (!json_object_object_get_ex(fields, f->field, &m))
        return 0;                       /* absent: not present */
    int64_t off, count;
    if (!json_object_is_type(m, json_type_array) ||
        !get_index_int(m, 0, 0, REKALL_MAX_OFFSET, &off))
        return bm_err_set(err, "Rekall profile %s: $STRUCTS.%s.%s is not [offset, "
                          "type] with an integer offset", p->path, f->type, f->field);
    struct win_off *w = profile_slot(p, f->slot);
    w->value = (uint64_t)off;
    w->present = true;
    if (f->count_slot == 0)
        return 0;
    json_object *type = json_object_array_get_idx(m, 1), *name, *args, *cnt;
    if (type == NULL || !json_object_is_type(type, json_type_array) ||
        (name = json_object_array_get_idx(type, 0)) == NULL ||
        !json_object_is_type(name, json_type_string) ||
        strcmp(json_object_get_string(name), "Array") != 0 ||
        (args = json_object_array_get_idx(type, 1)) == NULL ||
        !json_object_object_get_ex(args, "count", &cnt))
        return 0;                       /* not an array type: no count */
    count = json_object_is_type(cnt, json_type_int) ? json_object_get_int64(cnt) : -1;
    if (count < 1 || count > REKALL_MAX_COUNT)
        return bm_err_set(err, "Rekall profile %s: $STRUCTS.%s.%s array count is not "
                          "an integer 1..%d", p->path, f->type, f->field, REKALL_MAX_COUNT);
    w = profile_slot(p, f->count_slot);
    w->value = (uint64_t)count;
    w->present = true;
    return 0;
}

static int read_structs(json_object *root, struct win_profile *p, struct bm_err *err)
{
    json_object *structs, *st;
    if (!json_object_object_get_ex(root, "$STRUCTS", &structs))
        return 0;
    if (!json_object_is_type(structs, json_type_object))
        return bad(err, p, "$STRUCTS is not an object");
    for (size_t i = 0; i < profile_nwant_fields; i++) {
        const struct profile_want_field *f = &profile_want_fields[i];
        if (!json_object_object_get_ex(structs, f->type, &st))
            continue;
        json_object *fields = json_object_is_type(st, json_type_array)
                              ? json_object_array_get_idx(st, 1) : NULL;
        if (fields == NULL || !json_object_is_type(fields, json_type_object))
            return bm_err_set(err, "Rekall profile %s: $STRUCTS.%s is not [size, "
                              "{fields}]", p->path, f->type);
        if (read_field(fields, f, p, err) < 0)
            return -1;
    }
    return 0;
}

static bool all_space(const char *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (d[i] != ' ' && d[i] != '\t' && d[i] != '\r' && d[i] != '\n')
            return false;
    return true;
}

/* Parse the whole stream with json-c, fed chunk by chunk. */
static json_object *parse_all(struct pstream *s, struct win_profile *p,
                              struct bm_err *err)
{
    struct json_tokener *tok = json_tokener_new_ex(REKALL_MAX_DEPTH);
    if (tok == NULL) {
        bad(err, p, "out of memory");
        return NULL;
    }
    json_object *root = NULL;
    enum json_tokener_error je = json_tokener_continue;
    uint64_t pos = 0;
    for (;;) {
        const char *d;
        size_t n;
        if (pstream_read(s, &d, &n, err) < 0)
            goto fail;
        if (n == 0)
            break;
        if (pstream_total(s) > REKALL_MAX_TEXT) {
            bad(err, p, "larger than 128 MiB of text; refusing it");
            goto fail;
        }
        if (root != NULL) {
            if (!all_space(d, n)) {
                bad(err, p, "data after the top-level JSON object");
                goto fail;
            }
        } else {
            root = json_tokener_parse_ex(tok, d, (int)n);
            je = json_tokener_get_error(tok);
            size_t end = json_tokener_get_parse_end(tok);
            if (je != json_tokener_success && je != json_tokener_continue) {
                bm_err_set(err, "Rekall profile %s is not valid JSON (%s) near byte %"
                           PRIu64, p->path, json_tokener_error_desc(je), pos + end);
                goto fail;
            }
            if (root != NULL && !all_space(d + end, n - end)) {
                bad(err, p, "data after the top-level JSON object");
                goto fail;
            }
        }
        pos += n;
    }
    if (root == NULL) {
        bm_err_set(err, "Rekall profile %s is truncated: the JSON ends at byte %" PRIu64
                   " before the top-level object closes", p->path, pos);
        goto fail;
    }
    json_tokener_free(tok);
    return root;
fail:
    json_object_put(root);
    json_tokener_free(tok);
    return NULL;
}

int rekall_load(struct pstream *s, struct win_profile *prof, struct bm_err *err)
{
    prof->format = "Rekall";
    json_object *root = parse_all(s, prof, err);
    if (root == NULL)
        return -1;
    int rc = -1;
    json_object *v;
    if (!json_object_is_type(root, json_type_object) ||
        !(json_object_object_get_ex(root, "$STRUCTS", &v) ||
          json_object_object_get_ex(root, "$CONSTANTS", &v) ||
          json_object_object_get_ex(root, "$FUNCTIONS", &v)))
        bad(err, prof, "no $STRUCTS, $CONSTANTS or $FUNCTIONS: not a Rekall profile");
    else if (read_metadata(root, prof, err) == 0 && read_symbols(root, prof, err) == 0 &&
             read_structs(root, prof, err) == 0)
        rc = 0;
    json_object_put(root);
    return rc;
}
