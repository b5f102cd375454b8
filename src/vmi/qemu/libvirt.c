/* libvirt.c - QMP through libvirt's pass-through (see libvirt.h). */
#include "vmi/qemu/libvirt.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/util.h"
#include "vmi/qemu/qmp.h"

#define LV_REPLY_MAX (4u << 20) /* bytes of one reply, as QMP_MAX_MESSAGE */
#define LV_CPUS_MAX 256

/* --- the reply parser: built with or without libvirt (tests, fuzzing) --- */

static json_object *member(json_object *o, const char *key, json_type t)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, t))
        return NULL;
    return v;
}

int lv_parse_reply(const char *text, size_t len, const char *cmd, json_object **ret,
                   struct bm_err *err)
{
    char snip[64];
    if (text == NULL || len == 0)
        return bm_err_set(err, "libvirt returned an empty reply to '%s'", cmd);
    if (len > LV_REPLY_MAX)
        return bm_err_set(err, "libvirt's reply to '%s' exceeds %u bytes", cmd, LV_REPLY_MAX);
    json_tokener *tok = json_tokener_new_ex(QMP_MAX_DEPTH);
    if (tok == NULL)
        return bm_err_set(err, "out of memory for a JSON parser");
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS |
                                    JSON_TOKENER_VALIDATE_UTF8);
    json_object *o = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error je = json_tokener_get_error(tok);
    size_t used = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    int rc = 0;
    if (o == NULL)
        rc = bm_err_set(err, "libvirt's reply to '%s' is not JSON (%s): '%s'", cmd,
                        je == json_tokener_continue ? "truncated" : json_tokener_error_desc(je),
                        bm_excerpt(text, len, snip, sizeof snip));
    else if (used != len && strspn(text + used, " \t\r\n") != len - used)
        rc = bm_err_set(err, "libvirt's reply to '%s' has bytes after the JSON value", cmd);
    else if (!json_object_is_type(o, json_type_object))
        rc = bm_err_set(err, "libvirt's reply to '%s' is not a QMP reply object: '%s'", cmd,
                        bm_excerpt(text, len, snip, sizeof snip));
    if (rc < 0) {
        json_object_put(o);
        return rc;
    }
    json_object *e = member(o, "error", json_type_object), *rv;
    if (e != NULL) {
        json_object *cls = member(e, "class", json_type_string);
        json_object *desc = member(e, "desc", json_type_string);
        rc = bm_err_set(err, "QMP command '%s' failed (through libvirt): %s (%s)", cmd,
                        desc ? json_object_get_string(desc) : "?",
                        cls ? json_object_get_string(cls) : "no error class");
    } else if (!json_object_object_get_ex(o, "return", &rv)) {
        rc = bm_err_set(err, "libvirt's reply to '%s' has neither 'return' nor 'error': '%s'",
                        cmd, bm_excerpt(text, len, snip, sizeof snip));
    } else if (ret != NULL) {
        *ret = json_object_get(rv);
    }
    json_object_put(o);
    return rc;
}

bool lv_cmdline_names(const char *cmdline, size_t len, const char *name)
{
    /* The word after "-name": "guest=NAME" then ',' or its end. */
    const char *end = cmdline + len;
    for (const char *p = cmdline; p < end;) {
        size_t n = strnlen(p, (size_t)(end - p));
        const char *next = p + n + 1;
        if (n == 5 && memcmp(p, "-name", 5) == 0 && next < end) {
            const char *v = next, *vend = v + strnlen(v, (size_t)(end - v));
            if (vend - v < 6 || memcmp(v, "guest=", 6) != 0)
                return false;
            v += 6;
            for (const char *s = name; *s != '\0'; s++) {
                if (v >= vend || *v != *s)
                    return false;
                v++;
                if (*s == ',') {   /* doubled in QEMU's option syntax */
                    if (v >= vend || *v != ',')
                        return false;
                    v++;
                }
            }
            /* ",," would be an escaped comma: the name goes on. */
            return v == vend || (*v == ',' && (v + 1 == vend || v[1] != ','));
        }
        p = next;
    }
    return false;
}

#ifdef HAVE_LIBVIRT

#include "vmi/qemu/lvapi.h"

/* Every call below comes after lv_api() succeeded (lv_open, lvhost_new). */
#define LV lv_api_loaded()

struct lv_dom {
    struct qemu_chan chan;   /* first: an lv_dom is a channel */
    virConnectPtr conn;
    virDomainPtr dom;
    char uri[LV_URI_MAX];
    char name[LV_NAME_MAX];
    char uuid[LV_UUID_LEN + 1];
};

const char *lv_default_uri(void)
{
    const char *u = getenv("LIBVIRT_DEFAULT_URI");
    return u != NULL && u[0] != '\0' ? u : "qemu:///system";
}

/* libvirt prints every error on stderr unless told otherwise; ours carry
 * them in struct bm_err instead. */
static void quiet(void *opaque, virErrorPtr e)
{
    (void)opaque;
    (void)e;
}

static int lv_fail(struct bm_err *err, const char *fmt, const char *arg)
{
    const char *msg = LV->virGetLastErrorMessage();
    char what[LV_URI_MAX + 128];
    snprintf(what, sizeof what, fmt, arg);
    return bm_err_set(err, "%s: %s", what, msg != NULL ? msg : "unknown libvirt error");
}

static int lv_code(void)
{
    virErrorPtr e = LV->virGetLastError();
    return e != NULL ? e->code : VIR_ERR_OK;
}

static int exec_lv(struct qemu_chan *ch, const char *cmd, json_object *args, json_object **ret,
                   struct bm_err *err)
{
    struct lv_dom *d = (struct lv_dom *)ch;
    json_object *req = json_object_new_object();
    json_object_object_add(req, "execute", json_object_new_string(cmd));
    if (args != NULL)
        json_object_object_add(req, "arguments", json_object_get(args));
    const char *s = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN |
                                                            JSON_C_TO_STRING_NOSLASHESCAPE);
    char *reply = NULL;
    int r = LV->virDomainQemuMonitorCommand(d->dom, s, &reply, 0);
    json_object_put(req);
    if (r < 0) {
        int code = lv_code();
        if (code == VIR_ERR_OPERATION_DENIED || code == VIR_ERR_AUTH_FAILED)
            return lv_fail(err, "libvirt at %s refused a monitor command (monitor commands "
                           "need a read-write connection)", d->uri);
        if (code == VIR_ERR_OPERATION_INVALID || code == VIR_ERR_NO_DOMAIN)
            return lv_fail(err, "libvirt domain '%s' is not running any more", d->name);
        return lv_fail(err, "monitor command through libvirt (domain '%s')", d->name);
    }
    int rc = lv_parse_reply(reply, reply ? strlen(reply) : 0, cmd, ret, err);
    free(reply);
    return rc;
}

static void close_lv(struct qemu_chan *ch)
{
    struct lv_dom *d = (struct lv_dom *)ch;
    if (d->dom != NULL)
        LV->virDomainFree(d->dom);
    if (d->conn != NULL)
        LV->virConnectClose(d->conn);
    free(d);
}

static const struct qemu_chan_ops lv_ops = { exec_lv, close_lv };

static bool is_uuid(const char *s)
{
    if (strlen(s) != LV_UUID_LEN)
        return false;
    for (int i = 0; i < LV_UUID_LEN; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : bm_hexdigit((unsigned char)s[i]) < 0)
            return false;
    }
    return true;
}

static const char *state_name(int st)
{
    switch (st) {
    case VIR_DOMAIN_RUNNING: return "running";
    case VIR_DOMAIN_BLOCKED: return "blocked";
    case VIR_DOMAIN_PAUSED: return "paused";
    case VIR_DOMAIN_SHUTDOWN: return "shutting down";
    case VIR_DOMAIN_SHUTOFF: return "shut off";
    case VIR_DOMAIN_CRASHED: return "crashed";
    case VIR_DOMAIN_PMSUSPENDED: return "suspended by guest power management";
    default: return "in no known state";
    }
}

static virConnectPtr connect_patiently(const char *uri, int patience_ms, struct bm_err *err)
{
    int64_t deadline = bm_now_ms() + (patience_ms > 0 ? patience_ms : 0);
    for (;;) {
        virConnectPtr c = LV->virConnectOpen(uri);
        if (c != NULL)
            return c;
        /* Only a daemon that cannot be reached is worth waiting for. */
        virErrorPtr e = LV->virGetLastError();
        bool unreachable = e != NULL && (e->domain == VIR_FROM_RPC || e->code == VIR_ERR_NO_CONNECT ||
                                         e->code == VIR_ERR_SYSTEM_ERROR);
        if (!unreachable || bm_ms_left(deadline) == 0) {
            lv_fail(err, "cannot connect to libvirt at '%s'", uri);
            return NULL;
        }
        struct timespec ts = { 0, 100 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
}

struct lv_dom *lv_open(const char *uri, const char *domain, int patience_ms, struct bm_err *err)
{
    if (lv_api(err) == NULL)
        return NULL;
    LV->virSetErrorFunc(NULL, quiet);
    if (strlen(uri) >= LV_URI_MAX || strlen(domain) >= LV_NAME_MAX) {
        bm_err_set(err, "libvirt URI or domain name too long");
        return NULL;
    }
    struct lv_dom *d = calloc(1, sizeof *d);
    if (d == NULL) {
        bm_err_set(err, "out of memory");
        return NULL;
    }
    d->chan.ops = &lv_ops;
    snprintf(d->uri, sizeof d->uri, "%s", uri);
    if ((d->conn = connect_patiently(uri, patience_ms, err)) == NULL)
        goto fail;
    const char *type = LV->virConnectGetType(d->conn);
    if (type == NULL || strcasecmp(type, "QEMU") != 0) {
        bm_err_set(err, "libvirt at '%s' drives %s, not QEMU: bsodmon needs a qemu:// URI", uri,
                   type ? type : "an unknown hypervisor");
        goto fail;
    }
    char *canon = LV->virConnectGetURI(d->conn);
    if (canon != NULL) {
        snprintf(d->uri, sizeof d->uri, "%s", canon);
        free(canon);
    }
    d->dom = LV->virDomainLookupByName(d->conn, domain);
    if (d->dom == NULL && is_uuid(domain))
        d->dom = LV->virDomainLookupByUUIDString(d->conn, domain);
    if (d->dom == NULL) {
        if (lv_code() == VIR_ERR_NO_DOMAIN)
            bm_err_set(err, "no libvirt domain named '%s' at %s (virsh -c %s list --all)", domain,
                       d->uri, d->uri);
        else
            lv_fail(err, "looking up libvirt domain '%s'", domain);
        goto fail;
    }
    const char *name = LV->virDomainGetName(d->dom);
    snprintf(d->name, sizeof d->name, "%s", name ? name : domain);
    if (LV->virDomainGetUUIDString(d->dom, d->uuid) < 0) {
        lv_fail(err, "UUID of libvirt domain '%s'", d->name);
        goto fail;
    }
    int state = 0, reason = 0;
    if (LV->virDomainGetState(d->dom, &state, &reason, 0) < 0) {
        lv_fail(err, "state of libvirt domain '%s'", d->name);
        goto fail;
    }
    if (state != VIR_DOMAIN_RUNNING && state != VIR_DOMAIN_PAUSED && state != VIR_DOMAIN_BLOCKED) {
        bm_err_set(err, "libvirt domain '%s' is %s, not running", d->name, state_name(state));
        goto fail;
    }
    return d;
fail:
    close_lv(&d->chan);
    return NULL;
}

struct qemu_chan *lv_chan(struct lv_dom *d) { return &d->chan; }
const char *lv_name(const struct lv_dom *d) { return d->name; }
const char *lv_uuid(const struct lv_dom *d) { return d->uuid; }
const char *lv_uri(const struct lv_dom *d) { return d->uri; }

#else /* !HAVE_LIBVIRT */

struct lv_dom {
    struct qemu_chan chan;
};

const char *lv_default_uri(void) { return "qemu:///system"; }

struct lv_dom *lv_open(const char *uri, const char *domain, int patience_ms, struct bm_err *err)
{
    (void)uri;
    (void)patience_ms;
    bm_err_set(err, "'%s' is not a QMP socket, and this bsodmon was built without libvirt, so "
               "it cannot name a libvirt domain", domain);
    return NULL;
}

struct qemu_chan *lv_chan(struct lv_dom *d) { return &d->chan; }
const char *lv_name(const struct lv_dom *d) { (void)d; return ""; }
const char *lv_uuid(const struct lv_dom *d) { (void)d; return ""; }
const char *lv_uri(const struct lv_dom *d) { (void)d; return ""; }

#endif /* HAVE_LIBVIRT */

/* --- facts about the domain's QEMU, from the domain itself ---------------- */

static ssize_t read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    size_t got = 0;
    while (got < cap) {
        ssize_t n = read(fd, buf + got, cap - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    return (ssize_t)got;
}

int lv_qemu_pid(struct lv_dom *d, pid_t *pid, struct bm_err *err)
{
    struct qmp_cpu cpus[LV_CPUS_MAX];
    size_t n = 0;
    if (qmp_query_cpus(lv_chan(d), cpus, LV_CPUS_MAX, &n, err) < 0)
        return -1;
    long tgid = -1;
    for (size_t i = 0; i < n; i++) {
        long t;
        if (bm_proc_status_num(cpus[i].thread_id, "Tgid", &t) < 0)
            return bm_err_set(err, "vCPU %d's host thread %d is not on this host: bsodmon must run "
                              "on the host of libvirt domain '%s'", cpus[i].index,
                              (int)cpus[i].thread_id, lv_name(d));
        if (tgid >= 0 && t != tgid)
            return bm_err_set(err, "the vCPU threads of '%s' belong to two processes (%ld, %ld)",
                              lv_name(d), tgid, t);
        tgid = t;
    }
    if (tgid <= 0 || tgid > INT32_MAX)
        return bm_err_set(err, "no QEMU process found for libvirt domain '%s'", lv_name(d));
    char path[PATH_MAX], buf[8192];
    snprintf(path, sizeof path, "/proc/%ld/cmdline", tgid);
    ssize_t len = read_small(path, buf, sizeof buf);
    if (len <= 0 || !lv_cmdline_names(buf, (size_t)len, lv_name(d)))
        return bm_err_set(err, "process %ld, which runs the vCPUs of '%s', is not QEMU started "
                          "for that domain (no -name guest=%s)", tgid, lv_name(d), lv_name(d));
    /* libvirt's pid file, when this host's daemon keeps one for it. */
    if (strchr(lv_name(d), '/') == NULL) {
        snprintf(path, sizeof path, "/run/libvirt/qemu/%s.pid", lv_name(d));
        len = read_small(path, buf, sizeof buf - 1);
        if (len > 0) {
            buf[len] = '\0';
            char *end;
            long fp = strtol(buf, &end, 10);
            if (end != buf && fp != tgid)
                return bm_err_set(err, "%s says QEMU is %ld, but the vCPUs of '%s' run in %ld",
                                  path, fp, lv_name(d), tgid);
        }
    }
    *pid = (pid_t)tgid;
    return 0;
}

int lv_private_dir(struct lv_dom *d, pid_t qemu_pid, char *dir, size_t cap, struct bm_err *err)
{
    char mon[PATH_MAX];
    if (qmp_chardev_path(lv_chan(d), "charmonitor", mon, sizeof mon, err) < 0) {
        bm_err_prefix(err, "finding the private directory of libvirt domain '%s'", lv_name(d));
        return -1;
    }
    char *slash = strrchr(mon, '/');
    if (slash == NULL || slash == mon)
        return bm_err_set(err, "libvirt's monitor socket '%s' has no private directory", mon);
    *slash = '\0';
    if (strlen(mon) >= cap)
        return bm_err_set(err, "private directory '%s' is too long", mon);
    struct stat st;
    long uid;
    if (lstat(mon, &st) < 0)
        return bm_err_sys(err, errno, "private directory %s of domain '%s'", mon, lv_name(d));
    if (!S_ISDIR(st.st_mode))
        return bm_err_set(err, "%s (the domain's private directory) is not a directory", mon);
    if (bm_proc_status_num(qemu_pid, "Uid", &uid) < 0)
        return bm_err_set(err, "cannot read QEMU's user (process %d)", (int)qemu_pid);
    if ((st.st_uid != (uid_t)uid && st.st_uid != 0) || (st.st_mode & S_IWOTH))
        return bm_err_set(err, "%s is not private to the domain's QEMU (owner %u, mode %o)", mon,
                          (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
    memcpy(dir, mon, strlen(mon) + 1);
    return 0;
}
