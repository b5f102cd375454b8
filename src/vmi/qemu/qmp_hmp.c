/* qmp_hmp.c - HMP commands through QMP and parsers of their text output.
 *
 * HMP output is meant for people and has no schema, so every parser here
 * accepts only the exact shapes QEMU 7.2 prints (measured), walks a
 * NUL-terminated string with explicit bounds, and fails loudly on a miss:
 * a wrong guest RAM map or IDT base would silently poison everything above.
 */
#include "vmi/qemu/qmp.h"

#include "base/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Length of the line at p without its "\r\n" or "\n"; *next is after it. */
static size_t line_at(const char *p, const char **next)
{
    const char *eol = strchr(p, '\n');
    size_t len = eol ? (size_t)(eol - p) : strlen(p);
    *next = eol ? eol + 1 : p + len;
    if (len > 0 && p[len - 1] == '\r')
        len--;
    return len;
}

/* First non-empty line, for error messages. */
static const char *first_line(const char *text, char *out, size_t max)
{
    const char *next;
    size_t len;
    while ((len = line_at(text, &next)) == 0 && *next != '\0')
        text = next;
    return bm_excerpt(text, len, out, max);
}

static int hexdigit(char c) { return bm_hexdigit((unsigned char)c); }

static bool hex(const char **p, const char *end, unsigned maxdigits,
                uint64_t *out)
{
    uint64_t v = 0;
    unsigned n = 0;
    while (*p < end && hexdigit(**p) >= 0) {
        if (++n > maxdigits)
            return false;
        v = v << 4 | (uint64_t)hexdigit(**p);
        (*p)++;
    }
    *out = v;
    return n > 0;
}

static bool lit(const char **p, const char *end, const char *s)
{
    size_t n = strlen(s);
    if ((size_t)(end - *p) < n || memcmp(*p, s, n) != 0)
        return false;
    *p += n;
    return true;
}

/* Characters up to `stop` (or end), 1..cap-1 of them, into dst. */
static bool token(const char **p, const char *end, char stop, char *dst,
                  size_t cap)
{
    const char *s = *p;
    while (*p < end && **p != stop)
        (*p)++;
    size_t n = (size_t)(*p - s);
    if (n == 0 || n >= cap)
        return false;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return true;
}

int qmp_hmp(struct qemu_chan *c, const char *cmdline, char **out,
            struct bm_err *err)
{
    json_object *args = json_object_new_object(), *r = NULL;
    json_object_object_add(args, "command-line",
                           json_object_new_string(cmdline));
    int rc = chan_execute(c, "human-monitor-command", args, &r, err);
    json_object_put(args);
    if (rc == 0 && !json_object_is_type(r, json_type_string))
        rc = bm_err_set(err, "HMP '%s' returned no text", cmdline);
    if (rc == 0 && (*out = strdup(json_object_get_string(r))) == NULL)
        rc = bm_err_set(err, "out of memory for HMP output");
    json_object_put(r);
    return rc;
}

/* --- info mtree -f --------------------------------------------------------- */

/* "  0000000000100000-0000000007ffffff (prio 0, ram): pc.ram @0000000000100000"
 * optionally followed by " KVM". Returns 1 for RAM, 0 for another type, -1
 * if the line is malformed. "@offset" is printed only when non-zero. RAM
 * that the chipset maps read-only shows as "rom" (on pc, the BIOS shadow
 * at 0xc0000-0xfffff: "(rom): pc.ram @..."): it is RAM all the same, and
 * counts; whether a region is guest RAM at all (pc.ram) or a firmware ROM
 * (pc.bios, also "rom") is the memory backends' to say (ram.c). "romd" (a
 * ROM device such as pflash) and "ramd" are device memory. */
static int parse_range(const char *p, const char *end,
                       struct qmp_ram_range *r)
{
    uint64_t last;
    char type[16];
    if (!hex(&p, end, 16, &r->gpa_start) || !lit(&p, end, "-") ||
        !hex(&p, end, 16, &last) || !lit(&p, end, " (prio "))
        return -1;
    (void)lit(&p, end, "-");   /* priorities may be negative */
    const char *digits = p;
    while (p < end && *p >= '0' && *p <= '9' && p - digits < 10)
        p++;
    /* The type may carry "nv-" (non-volatile); only plain "ram" and "rom"
     * count. */
    if (p == digits || !lit(&p, end, ", ") ||
        !token(&p, end, ')', type, sizeof type) || !lit(&p, end, "): ") ||
        !token(&p, end, ' ', r->block, sizeof r->block))
        return -1;
    r->offset = 0;
    if (lit(&p, end, " @") && !hex(&p, end, 16, &r->offset))
        return -1;
    if (last < r->gpa_start || last == UINT64_MAX)
        return -1;
    r->gpa_end = last + 1;
    return strcmp(type, "ram") == 0 || strcmp(type, "rom") == 0;
}

int qmp_parse_mtree(const char *text, struct qmp_ram_range *ranges,
                    size_t cap, size_t *n, struct bm_err *err)
{
    bool in_memory = false, found = false;
    size_t count = 0;
    char snip[96];
    for (const char *p = text, *next; *p != '\0'; p = next) {
        size_t len = line_at(p, &next);
        const char *end = p + len, *s = p;
        if (lit(&s, end, "FlatView #")) {
            if (found)
                break;   /* the "memory" view is complete */
            continue;
        }
        while (s < end && *s == ' ')
            s++;
        /* A view's header lists every address space rendered by it; the
         * system view is not always #0 (measured: #1 after cpu-smm-0). */
        if (lit(&s, end, "AS \"memory\",")) {
            in_memory = found = true;
            continue;
        }
        /* Further "AS ..." names of the same view and its root line start
         * with letters that are also hex digits ('A'): skip them by name. */
        if (lit(&s, end, "AS ") || lit(&s, end, "Root memory region") ||
            lit(&s, end, "No rendered"))
            continue;
        if (!in_memory || s == end || hexdigit(*s) < 0)
            continue;
        struct qmp_ram_range r;
        int kind = parse_range(s, end, &r);
        if (kind < 0)
            return bm_err_set(err, "malformed line in 'info mtree -f': '%s'",
                              bm_excerpt(p, len, snip, sizeof snip));
        if (kind == 0)
            continue;
        if (count == cap)
            return bm_err_set(err, "more than %zu RAM ranges in 'info mtree "
                              "-f'", cap);
        ranges[count++] = r;
    }
    if (!found)
        return bm_err_set(err, "no FlatView of address space \"memory\" in "
                          "'info mtree -f' output (starts '%s')",
                          first_line(text, snip, sizeof snip));
    if (count == 0)
        return bm_err_set(err, "no RAM in the \"memory\" FlatView of 'info "
                          "mtree -f'");
    *n = count;
    return 0;
}

int qmp_ram_layout(struct qemu_chan *c, struct qmp_ram_range *ranges,
                   size_t cap, size_t *n, struct bm_err *err)
{
    char *text;
    if (qmp_hmp(c, "info mtree -f", &text, err) < 0)
        return -1;
    int rc = qmp_parse_mtree(text, ranges, cap, n, err);
    free(text);
    return rc;
}

/* --- gpa2hva --------------------------------------------------------------- */

int qmp_parse_gpa2hva(const char *text, uint64_t gpa, uint64_t *hva,
                      char block[QMP_NAME_MAX], struct bm_err *err)
{
    const char *next;
    const char *p = text, *end = text + line_at(text, &next);
    uint64_t echoed, v;
    char name[QMP_NAME_MAX], snip[96];
    if (!lit(&p, end, "Host virtual address for 0x") ||
        !hex(&p, end, 16, &echoed) || !lit(&p, end, " (") ||
        !token(&p, end, ')', name, sizeof name) ||
        !lit(&p, end, ") is 0x") || !hex(&p, end, 16, &v) || p != end ||
        *next != '\0')
        return bm_err_set(err, "gpa2hva 0x%" PRIx64 ": %s", gpa,
                          first_line(text, snip, sizeof snip));
    if (echoed != gpa)
        return bm_err_set(err, "gpa2hva 0x%" PRIx64 " answered for 0x%"
                          PRIx64, gpa, echoed);
    *hva = v;
    if (block != NULL)
        memcpy(block, name, strlen(name) + 1);
    return 0;
}

int qmp_gpa2hva(struct qemu_chan *c, uint64_t gpa, uint64_t *hva,
                char block[QMP_NAME_MAX], struct bm_err *err)
{
    char cmd[48], *text;
    snprintf(cmd, sizeof cmd, "gpa2hva 0x%" PRIx64, gpa);
    if (qmp_hmp(c, cmd, &text, err) < 0)
        return -1;
    int rc = qmp_parse_gpa2hva(text, gpa, hva, block, err);
    free(text);
    return rc;
}

/* --- info registers: IDT --------------------------------------------------- */

/* "IDT=     fffffe0000000000 00000fff" in long mode, 8-digit base in legacy
 * modes. */
int qmp_parse_idt(const char *text, uint64_t *base, uint32_t *limit,
                  struct bm_err *err)
{
    char snip[96];
    for (const char *p = text, *next; *p != '\0'; p = next) {
        const char *s = p, *end = p + line_at(p, &next);
        uint64_t b, l;
        if (!lit(&s, end, "IDT="))
            continue;
        while (s < end && *s == ' ')
            s++;
        if (!hex(&s, end, 16, &b) || !lit(&s, end, " "))
            break;
        while (s < end && *s == ' ')
            s++;
        if (!hex(&s, end, 8, &l))
            break;
        while (s < end && *s == ' ')
            s++;
        if (s != end)
            break;
        *base = b;
        *limit = (uint32_t)l;
        return 0;
    }
    return bm_err_set(err, "no valid IDT= line in 'info registers' output: '%s'",
                      first_line(text, snip, sizeof snip));
}

int qmp_idt(struct qemu_chan *c, int vcpu, uint64_t *base, uint32_t *limit,
            struct bm_err *err)
{
    char cmd[40], *text;
    if (vcpu < 0)
        return bm_err_set(err, "no vCPU %d", vcpu);
    snprintf(cmd, sizeof cmd, "info registers %d", vcpu);
    if (qmp_hmp(c, cmd, &text, err) < 0)
        return -1;
    int rc = qmp_parse_idt(text, base, limit, err);
    free(text);
    if (rc < 0)
        bm_err_prefix(err, "vCPU %d", vcpu);
    return rc;
}

/* --- info chardev ---------------------------------------------------------- */

/* "charmonitor: filename=unix:/var/lib/libvirt/qemu/domain-1-vm/monitor.sock,server=on"
 * (measured, libvirt 9.0 + QEMU 7.2; a monitor libvirt passed as an fd still
 * shows its path). The path ends at the first comma: QEMU prints the options
 * after it. */
int qmp_parse_chardev_path(const char *text, const char *id, char *path, size_t cap,
                           struct bm_err *err)
{
    char snip[96];
    size_t idlen = strlen(id);
    for (const char *p = text, *next; *p != '\0'; p = next) {
        const char *s = p, *end = p + line_at(p, &next);
        if ((size_t)(end - s) <= idlen || memcmp(s, id, idlen) != 0)
            continue;
        s += idlen;
        if (!lit(&s, end, ": filename="))
            continue;
        if (!lit(&s, end, "unix:"))
            return bm_err_set(err, "chardev '%s' is not a unix socket: '%s'", id,
                              bm_excerpt(p, (size_t)(end - p), snip, sizeof snip));
        const char *e = memchr(s, ',', (size_t)(end - s));
        size_t n = (size_t)((e ? e : end) - s);
        if (n == 0 || n >= cap || s[0] != '/')
            return bm_err_set(err, "chardev '%s' has no usable absolute path: '%s'", id,
                              bm_excerpt(p, (size_t)(end - p), snip, sizeof snip));
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
                return bm_err_set(err, "chardev '%s' path has a control character", id);
        memcpy(path, s, n);
        path[n] = '\0';
        return 0;
    }
    return bm_err_set(err, "no chardev '%s' in 'info chardev' output: '%s'", id,
                      first_line(text, snip, sizeof snip));
}

int qmp_chardev_path(struct qemu_chan *c, const char *id, char *path, size_t cap,
                     struct bm_err *err)
{
    char *text;
    if (qmp_hmp(c, "info chardev", &text, err) < 0)
        return -1;
    int rc = qmp_parse_chardev_path(text, id, path, cap, err);
    free(text);
    return rc;
}

/* --- gdbserver ----------------------------------------------------------- */

static int expect_prefix(struct qemu_chan *c, const char *cmd,
                         const char *want, struct bm_err *err)
{
    char *text, snip[128];
    if (qmp_hmp(c, cmd, &text, err) < 0)
        return -1;
    int rc = 0;
    if (strncmp(text, want, strlen(want)) != 0)
        rc = bm_err_set(err, "HMP '%s' failed: %s", cmd,
                        first_line(text, snip, sizeof snip));
    free(text);
    return rc;
}

int qmp_gdbserver_start(struct qemu_chan *c, const char *path,
                        struct bm_err *err)
{
    /* HMP splits arguments at spaces and honours quotes; the chardev syntax
     * splits options at commas. Refuse rather than escape. */
    size_t len = strlen(path);
    if (len == 0 || len > 100 || strpbrk(path, ", \t\"'\\") != NULL)
        return bm_err_set(err, "cannot use '%s' as a gdbserver socket path "
                          "(empty, longer than 100, or contains a comma, "
                          "quote, backslash or blank)", path);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)path[i] < 0x20 || path[i] == 0x7f)
            return bm_err_set(err, "gdbserver socket path has a control "
                              "character");
    char cmd[160];
    snprintf(cmd, sizeof cmd, "gdbserver unix:%s,server=on,wait=off", path);
    return expect_prefix(c, cmd, "Waiting for gdb connection", err);
}

int qmp_gdbserver_stop(struct qemu_chan *c, struct bm_err *err)
{
    return expect_prefix(c, "gdbserver none", "Disabled gdbserver", err);
}
