/* isf.c - read a Volatility 3 ISF symbol table into a struct win_profile.
 *
 * Why not parse the whole file with json-c, as LibVMI and DRAKVUF do: an
 * ntoskrnl ISF is 5-7 MB of JSON (40,000 symbols, 1,700 types) and json-c
 * turns that into a tree of hundreds of thousands of small objects, about
 * ten times the text size, while bsodmon needs 4 symbols and 20 offsets.
 * json-c has no streaming API, so this file splits the text itself and
 * hands json-c only the members it wants:
 *
 *   - the text arrives a chunk at a time (pstream), decompressed as it goes;
 *     the whole text is never held;
 *   - a small structural splitter tracks only strings, escapes and nesting
 *     depth (with the bracket kind, so mismatches are caught), plus the
 *     member grammar (name, ':', value, ',') of the top two object levels:
 *     the root and the "metadata", "symbols" and "user_types" objects;
 *   - the text of each wanted member ("metadata", symbols.KeBugCheck2,
 *     user_types._EPROCESS, ...) is copied out and parsed by json-c, its
 *     values read, and the tree freed at once.
 *
 * Everything else is skipped without building anything. Depth, key length,
 * member size and total size are capped; truncated or malformed text is an
 * error naming the byte offset. Only the splitter is hand-written; all JSON
 * value parsing is json-c's.
 */
#include "win/profile.h"

#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "win/pstream.h"

#define ISF_MAX_DEPTH    64             /* real ISF files nest ~10 deep */
#define ISF_MAX_KEY      256            /* longer names are never wanted */
#define ISF_MAX_MEMBER   (4u << 20)     /* _KPRCB, the largest wanted, ~60 KB */
#define ISF_MAX_METADATA (1u << 20)
#define ISF_MAX_OFFSET   (1u << 24)     /* no kernel structure is 16 MiB */
#define ISF_MAX_COUNT    4096u          /* ImageFileName has 15 */

enum section { SEC_NONE, SEC_METADATA, SEC_SYMBOLS, SEC_USER_TYPES };

/* Member grammar state of a tracked object level (root = 1, section = 2). */
enum lstate { L_KEY_OR_END, L_IN_KEY, L_COLON, L_VALUE, L_IN_VALUE, L_COMMA_OR_END };

struct level {
    enum lstate st;
    bool first;                 /* no member yet: '}' may follow '{' */
    bool scalar;                /* the value in progress is a bare literal */
    bool key_long;              /* key exceeded ISF_MAX_KEY: never wanted */
    size_t keylen;
    char key[ISF_MAX_KEY + 1];
};

struct isf {
    struct win_profile *prof;
    const char *path;
    struct bm_err *err;
    uint64_t pos;               /* offset of the chunk start in the text */
    bool in_str, esc;
    unsigned depth;
    char stack[ISF_MAX_DEPTH + 1];
    bool root_seen, root_closed;
    struct level lv[3];
    enum section sec;           /* what the depth-2 object is */
    bool seen_symbols, seen_user_types;
    /* capture of one wanted member's value text */
    bool cap_on;
    unsigned cap_level;
    enum section cap_kind;
    size_t span;                /* start of the capture in the current chunk */
    uint64_t cap_pos;           /* text offset where the capture began */
    size_t cap_len, cap_size, cap_limit;
    char *cap;
    char cap_key[ISF_MAX_KEY + 1];
};

static int fail(struct isf *x, size_t i, const char *what)
{
    return bm_err_set(x->err, "symbol profile %s: %s at byte %" PRIu64, x->path,
                      what, x->pos + i);
}

static bool tracked(const struct isf *x)
{
    return (x->depth == 1 || x->depth == 2) && x->stack[x->depth] == '{';
}

static int cap_append(struct isf *x, const char *d, size_t n)
{
    if (n > x->cap_limit - x->cap_len)
        return bm_err_set(x->err, "symbol profile %s: member %s is larger than %zu "
                          "bytes", x->path, x->cap_key, x->cap_limit);
    if (x->cap_len + n + 2 > x->cap_size) {
        size_t want = x->cap_size ? x->cap_size : 65536;
        while (want < x->cap_len + n + 2)
            want *= 2;
        char *p = realloc(x->cap, want);
        if (p == NULL)
            return bm_err_set(x->err, "symbol profile %s: out of memory", x->path);
        x->cap = p;
        x->cap_size = want;
    }
    memcpy(x->cap + x->cap_len, d, n);
    x->cap_len += n;
    return 0;
}

/* --- values out of json-c objects --- */

static int get_int(struct isf *x, json_object *o, const char *name, int64_t lo,
                   int64_t hi, const char *what, int64_t *out)
{
    json_object *v;
    if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_int))
        return bm_err_set(x->err, "symbol profile %s: %s.%s is missing or not an "
                          "integer", x->path, what, name);
    int64_t n = json_object_get_int64(v);
    if (n < lo || n > hi)
        return bm_err_set(x->err, "symbol profile %s: %s.%s = %" PRId64 " is out of "
                          "range", x->path, what, name, n);
    *out = n;
    return 0;
}

static int use_symbol(struct isf *x, json_object *o)
{
    int64_t addr;
    char what[ISF_MAX_KEY + 16];
    snprintf(what, sizeof what, "symbols.%s", x->cap_key);
    if (!json_object_is_type(o, json_type_object))
        return bm_err_set(x->err, "symbol profile %s: %s is not an object", x->path, what);
    if (get_int(x, o, "address", 0, UINT32_MAX, what, &addr) < 0)
        return -1;
    for (size_t i = 0; i < profile_nwant_symbols; i++)
        if (strcmp(profile_want_symbols[i].name, x->cap_key) == 0) {
            struct win_off *w = profile_slot(x->prof, profile_want_symbols[i].slot);
            w->value = (uint64_t)addr;
            w->present = true;
        }
    return 0;
}

static int use_field(struct isf *x, json_object *fields, const struct profile_want_field *f)
{
    json_object *fo, *type;
    char what[ISF_MAX_KEY + 80];
    snprintf(what, sizeof what, "user_types.%s.fields.%s", f->type, f->field);
    if (!json_object_object_get_ex(fields, f->field, &fo))
        return 0;                       /* absent in this build: not present */
    if (!json_object_is_type(fo, json_type_object))
        return bm_err_set(x->err, "symbol profile %s: %s is not an object", x->path, what);
    int64_t off, count;
    if (get_int(x, fo, "offset", 0, ISF_MAX_OFFSET, what, &off) < 0)
        return -1;
    struct win_off *w = profile_slot(x->prof, f->slot);
    w->value = (uint64_t)off;
    w->present = true;
    if (f->count_slot == 0 || !json_object_object_get_ex(fo, "type", &type) ||
        !json_object_is_type(type, json_type_object))
        return 0;
    json_object *kind;
    if (!json_object_object_get_ex(type, "kind", &kind) ||
        !json_object_is_type(kind, json_type_string) ||
        strcmp(json_object_get_string(kind), "array") != 0)
        return 0;
    if (get_int(x, type, "count", 1, ISF_MAX_COUNT, what, &count) < 0)
        return -1;
    w = profile_slot(x->prof, f->count_slot);
    w->value = (uint64_t)count;
    w->present = true;
    return 0;
}

static int use_type(struct isf *x, json_object *o)
{
    json_object *fields;
    if (!json_object_is_type(o, json_type_object) ||
        !json_object_object_get_ex(o, "fields", &fields) ||
        !json_object_is_type(fields, json_type_object))
        return bm_err_set(x->err, "symbol profile %s: user_types.%s has no \"fields\" "
                          "object", x->path, x->cap_key);
    for (size_t i = 0; i < profile_nwant_fields; i++)
        if (strcmp(profile_want_fields[i].type, x->cap_key) == 0 &&
            use_field(x, fields, &profile_want_fields[i]) < 0)
            return -1;
    return 0;
}

static int use_metadata(struct isf *x, json_object *o)
{
    json_object *win, *pdb, *guid, *db;
    if (!json_object_is_type(o, json_type_object))
        return bm_err_set(x->err, "symbol profile %s: metadata is not an object", x->path);
    if (!json_object_object_get_ex(o, "windows", &win) ||
        !json_object_object_get_ex(win, "pdb", &pdb) ||
        !json_object_is_type(pdb, json_type_object))
        return 0;                       /* no PDB identity recorded */
    if (json_object_object_get_ex(pdb, "database", &db) &&
        json_object_is_type(db, json_type_string))
        snprintf(x->prof->pdb_name, sizeof x->prof->pdb_name, "%s",
                 json_object_get_string(db));
    if (!json_object_object_get_ex(pdb, "GUID", &guid) ||
        !json_object_is_type(guid, json_type_string))
        return bm_err_set(x->err, "symbol profile %s: metadata.windows.pdb.GUID is "
                          "missing or not a string", x->path);
    int64_t age;
    if (get_int(x, pdb, "age", 0, UINT32_MAX, "metadata.windows.pdb", &age) < 0)
        return -1;
    return profile_set_guid(x->prof, json_object_get_string(guid), (uint32_t)age,
                            (uint32_t)age, x->err);
}

/* The captured member is complete: parse it with json-c and use it. */
static int finish_capture(struct isf *x)
{
    x->cap_on = false;
    x->cap[x->cap_len] = ' ';           /* ends a bare number for json-c */
    struct json_tokener *tok = json_tokener_new_ex(ISF_MAX_DEPTH);
    if (tok == NULL)
        return bm_err_set(x->err, "symbol profile %s: out of memory", x->path);
    json_object *o = json_tokener_parse_ex(tok, x->cap, (int)x->cap_len + 1);
    enum json_tokener_error je = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    int rc;
    if (o == NULL || je != json_tokener_success) {
        rc = bm_err_set(x->err, "symbol profile %s: member %s is not valid JSON (%s) "
                        "near byte %" PRIu64, x->path, x->cap_key,
                        je == json_tokener_success ? "no value" :
                        json_tokener_error_desc(je), x->cap_pos + end);
    } else if (x->cap_kind == SEC_METADATA) {
        rc = use_metadata(x, o);
    } else if (x->cap_kind == SEC_SYMBOLS) {
        rc = use_symbol(x, o);
    } else {
        rc = use_type(x, o);
    }
    json_object_put(o);
    x->cap_len = 0;
    return rc;
}

/* --- the splitter --- */

static void start_capture(struct isf *x, size_t i, unsigned level,
                          enum section kind, size_t limit)
{
    x->cap_on = true;
    x->cap_level = level;
    x->cap_kind = kind;
    x->cap_limit = limit;
    x->cap_len = 0;
    x->span = i;
    x->cap_pos = x->pos + i;
    memcpy(x->cap_key, x->lv[level].key, x->lv[level].keylen + 1);
}

/* The value of the current member of tracked level d begins at byte i. */
static int member_value(struct isf *x, unsigned d, size_t i)
{
    struct level *l = &x->lv[d];
    if (d == 1) {
        if (l->key[0] == '$')
            return fail(x, i, "top-level name begins with '$' (a Rekall profile?)");
        x->sec = SEC_NONE;
        if (strcmp(l->key, "metadata") == 0) {
            start_capture(x, i, 1, SEC_METADATA, ISF_MAX_METADATA);
        } else if (strcmp(l->key, "symbols") == 0) {
            x->sec = SEC_SYMBOLS;
            x->seen_symbols = true;
        } else if (strcmp(l->key, "user_types") == 0) {
            x->sec = SEC_USER_TYPES;
            x->seen_user_types = true;
        }
        return 0;
    }
    if (l->key_long)
        return 0;
    if ((x->sec == SEC_SYMBOLS && profile_wants_symbol(l->key)) ||
        (x->sec == SEC_USER_TYPES && profile_wants_type(l->key)))
        start_capture(x, i, 2, x->sec, ISF_MAX_MEMBER);
    return 0;
}

/* A member of tracked level d ended at byte i (a ',' or the closing '}'). */
static int member_end(struct isf *x, unsigned d, const char *chunk, size_t i)
{
    if (x->cap_on && x->cap_level == d) {
        if (cap_append(x, chunk + x->span, i - x->span) < 0 || finish_capture(x) < 0)
            return -1;
    }
    if (d == 1)
        x->sec = SEC_NONE;
    return 0;
}

/* A value (or key) begins at byte i with character c, outside strings. */
static int value_start(struct isf *x, size_t i, char c)
{
    if (x->depth == 0) {
        if (x->root_seen)
            return fail(x, i, "data after the top-level JSON object");
        if (c != '{')
            return fail(x, i, "top level is not a JSON object (not an ISF file)");
        x->root_seen = true;
        return 0;
    }
    if (!tracked(x))
        return 0;
    struct level *l = &x->lv[x->depth];
    switch (l->st) {
    case L_KEY_OR_END:
        if (c != '"')
            return fail(x, i, "expected a member name");
        l->st = L_IN_KEY;
        l->keylen = 0;
        l->key[0] = '\0';
        l->key_long = false;
        return 0;
    case L_VALUE:
        l->st = L_IN_VALUE;
        l->scalar = c != '"' && c != '{' && c != '[';
        return member_value(x, x->depth, i);
    case L_IN_VALUE:
        if (l->scalar && c != '"' && c != '{' && c != '[')
            return 0;                   /* more of the same literal */
        /* fall through */
    default:
        return fail(x, i, l->st == L_COLON ? "expected ':' after a member name"
                                           : "expected ',' or '}' between members");
    }
}

static int on_close(struct isf *x, const char *chunk, size_t i, char c)
{
    if (x->depth == 0)
        return fail(x, i, "unbalanced closing bracket");
    char open = x->stack[x->depth];
    if ((c == '}' && open != '{') || (c == ']' && open != '['))
        return fail(x, i, "mismatched closing bracket");
    if (tracked(x)) {
        struct level *l = &x->lv[x->depth];
        if (l->st == L_IN_VALUE || l->st == L_COMMA_OR_END) {
            if (member_end(x, x->depth, chunk, i) < 0)
                return -1;
        } else if (!(l->st == L_KEY_OR_END && l->first)) {
            return fail(x, i, l->st == L_KEY_OR_END ? "trailing comma before '}'"
                                                    : "member without a value");
        }
    }
    x->depth--;
    if (x->depth == 0)
        x->root_closed = true;
    else if (tracked(x) && x->lv[x->depth].st == L_IN_VALUE)
        x->lv[x->depth].st = L_COMMA_OR_END;    /* that container was the value */
    return 0;
}

static void on_string_end(struct isf *x)
{
    x->in_str = false;
    if (!tracked(x))
        return;
    struct level *l = &x->lv[x->depth];
    if (l->st == L_IN_KEY)
        l->st = L_COLON;
    else if (l->st == L_IN_VALUE)
        l->st = L_COMMA_OR_END;
}

static int feed(struct isf *x, const char *d, size_t n)
{
    x->span = 0;
    for (size_t i = 0; i < n; i++) {
        char c = d[i];
        if (x->in_str && !x->esc && !(tracked(x) && x->lv[x->depth].st == L_IN_KEY)) {
            /* Fast path through string bodies, most of the text. */
            while ((unsigned char)c >= 0x20 && c != '"' && c != '\\' && ++i < n)
                c = d[i];
            if (i == n)
                break;
        }
        if (x->in_str) {
            if (x->esc) {
                x->esc = false;
            } else if (c == '\\') {
                x->esc = true;
            } else if (c == '"') {
                on_string_end(x);
                continue;
            } else if ((unsigned char)c < 0x20) {
                return fail(x, i, "control character inside a string");
            }
            if (tracked(x) && x->lv[x->depth].st == L_IN_KEY) {
                struct level *l = &x->lv[x->depth];
                if (l->keylen < ISF_MAX_KEY) {
                    l->key[l->keylen++] = c;
                    l->key[l->keylen] = '\0';
                } else {
                    l->key_long = true;
                }
            }
            continue;
        }
        switch (c) {
        case ' ': case '\t': case '\r': case '\n':
            if (tracked(x) && x->lv[x->depth].st == L_IN_VALUE && x->lv[x->depth].scalar)
                x->lv[x->depth].st = L_COMMA_OR_END;
            while (i + 1 < n && d[i + 1] == ' ')    /* indentation runs */
                i++;
            break;
        case '"':
            if (value_start(x, i, c) < 0)
                return -1;
            x->in_str = true;
            break;
        case '{': case '[':
            if (value_start(x, i, c) < 0)
                return -1;
            if (x->depth >= ISF_MAX_DEPTH)
                return fail(x, i, "JSON nested deeper than 64 levels");
            x->stack[++x->depth] = c;
            if (tracked(x)) {
                memset(&x->lv[x->depth], 0, offsetof(struct level, key));
                x->lv[x->depth].st = L_KEY_OR_END;
                x->lv[x->depth].first = true;
            }
            break;
        case '}': case ']':
            if (on_close(x, d, i, c) < 0)
                return -1;
            break;
        case ':':
            if (!tracked(x)) {
                if (x->depth == 0)
                    return fail(x, i, "unexpected ':'");
                break;
            }
            if (x->lv[x->depth].st != L_COLON)
                return fail(x, i, "unexpected ':'");
            x->lv[x->depth].st = L_VALUE;
            break;
        case ',':
            if (!tracked(x)) {
                if (x->depth == 0)
                    return fail(x, i, "unexpected ','");
                break;
            }
            if (x->lv[x->depth].st != L_IN_VALUE && x->lv[x->depth].st != L_COMMA_OR_END)
                return fail(x, i, "unexpected ','");
            if (member_end(x, x->depth, d, i) < 0)
                return -1;
            x->lv[x->depth].st = L_KEY_OR_END;
            x->lv[x->depth].first = false;
            break;
        default:
            /* Literals: numbers, true, false, null. Anything else is not JSON. */
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                  (c >= 'A' && c <= 'Z') || c == '-' || c == '+' || c == '.'))
                return fail(x, i, "unexpected character (not JSON)");
            if (value_start(x, i, c) < 0)
                return -1;
            break;
        }
    }
    if (x->cap_on) {                    /* the member goes on in the next chunk */
        if (cap_append(x, d + x->span, n - x->span) < 0)
            return -1;
    }
    x->pos += n;
    return 0;
}

static int finish(struct isf *x)
{
    if (x->in_str)
        return fail(x, 0, "text ends inside a string (file truncated?)");
    if (!x->root_seen)
        return bm_err_set(x->err, "symbol profile %s is empty", x->path);
    if (!x->root_closed)
        return bm_err_set(x->err, "symbol profile %s is truncated: the text ends at "
                          "byte %" PRIu64 " inside %u open JSON levels", x->path,
                          x->pos, x->depth);
    if (!x->seen_symbols && !x->seen_user_types)
        return bm_err_set(x->err, "symbol profile %s has no \"symbols\" or "
                          "\"user_types\": not a Volatility 3 ISF file", x->path);
    return 0;
}

int isf_load(struct pstream *s, struct win_profile *prof, struct bm_err *err)
{
    struct isf *x = calloc(1, sizeof *x);
    if (x == NULL)
        return bm_err_set(err, "symbol profile %s: out of memory", pstream_path(s));
    x->prof = prof;
    x->path = pstream_path(s);
    x->err = err;
    prof->format = "Volatility 3 ISF";
    int rc = 0;
    for (;;) {
        const char *d;
        size_t n;
        if ((rc = pstream_read(s, &d, &n, err)) < 0)
            break;
        if (n == 0) {
            rc = finish(x);
            break;
        }
        if (x->pos == 0 && n >= 3 && memcmp(d, "\xef\xbb\xbf", 3) == 0) {
            d += 3, n -= 3;             /* UTF-8 byte-order mark */
            x->pos = 3;
        }
        if ((rc = feed(x, d, n)) < 0)
            break;
    }
    free(x->cap);
    free(x);
    return rc;
}
