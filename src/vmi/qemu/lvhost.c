/* lvhost.c - see lvhost.h. */
#include "vmi/qemu/lvhost.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "base/util.h"
#include "vmi/qemu/qmp.h"

#define PANIC_DETAILS_MAX 4096

int lvhost_parse_panic(const char *details, struct lvhost_panic *p, struct bm_err *err)
{
    memset(p, 0, sizeof *p);
    p->source = "pvpanic";
    if (details == NULL || details[0] == '\0')
        return 0;
    size_t len = strnlen(details, PANIC_DETAILS_MAX + 1);
    if (len > PANIC_DETAILS_MAX)
        return bm_err_set(err, "GUEST_PANICKED details exceed %d bytes", PANIC_DETAILS_MAX);
    json_tokener *tok = json_tokener_new_ex(QMP_MAX_DEPTH);
    if (tok == NULL)
        return bm_err_set(err, "out of memory for a JSON parser");
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *o = json_tokener_parse_ex(tok, details, (int)len);
    json_tokener_free(tok);
    if (o == NULL || !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        return bm_err_set(err, "GUEST_PANICKED details are not a JSON object");
    }
    json_object *v, *info;
    if (json_object_object_get_ex(o, "action", &v) && json_object_is_type(v, json_type_string))
        snprintf(p->action, sizeof p->action, "%s", json_object_get_string(v));
    if (json_object_object_get_ex(o, "info", &info) && json_object_is_type(info, json_type_object) &&
        json_object_object_get_ex(info, "type", &v) && json_object_is_type(v, json_type_string)) {
        const char *type = json_object_get_string(v);
        if (strcmp(type, "hyper-v") == 0) {
            p->source = "hyper-v";
            p->has_args = true;
            for (int i = 0; i < 5; i++) {
                char key[8];
                snprintf(key, sizeof key, "arg%d", i + 1);
                if (!json_object_object_get_ex(info, key, &v) || !json_object_is_type(v, json_type_int)) {
                    p->has_args = false;
                    break;
                }
                p->args[i] = json_object_get_uint64(v);
            }
        } else if (strcmp(type, "s390") == 0) {
            p->source = "s390";
        } else {
            p->source = "unknown";
        }
    }
    json_object_put(o);
    return 0;
}

#ifdef HAVE_LIBVIRT

#include "vmi/qemu/lvapi.h"

/* Every call below comes after lv_api() succeeded (lv_open, lvhost_new). */
#define LV lv_api_loaded()

#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 10000
#define MAX_FDS 8

struct lvhost {
    char uri[LV_URI_MAX];
    const struct lvhost_ops *ops;
    void *ctx;
    virConnectPtr conn;
    int lifecycle_id, qemu_id;
    int timer;           /* reconnect timer, -1 when none */
    int backoff_ms;
    bool quit;
    bool said_down;
    int fds[MAX_FDS], watches[MAX_FDS];
    size_t nfds;
};

static void quiet(void *opaque, virErrorPtr e)
{
    (void)opaque;
    (void)e;
}

static const char *last_error(void)
{
    const char *m = LV->virGetLastErrorMessage();
    return m != NULL ? m : "unknown libvirt error";
}

static void report_domain(struct lvhost *h, virDomainPtr dom)
{
    char uuid[VIR_UUID_STRING_BUFLEN];
    const char *name = LV->virDomainGetName(dom);
    if (name != NULL && LV->virDomainGetUUIDString(dom, uuid) == 0)
        h->ops->started(h->ctx, name, uuid);
}

void lvhost_rescan(struct lvhost *h)
{
    if (h->conn == NULL)
        return;
    virDomainPtr *doms = NULL;
    int n = LV->virConnectListAllDomains(h->conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
    for (int i = 0; i < n; i++) {
        report_domain(h, doms[i]);
        LV->virDomainFree(doms[i]);
    }
    free(doms);
}

static int on_lifecycle(virConnectPtr c, virDomainPtr dom, int event, int detail, void *opaque)
{
    (void)c;
    (void)detail;
    struct lvhost *h = opaque;
    char uuid[VIR_UUID_STRING_BUFLEN];
    if (event == VIR_DOMAIN_EVENT_STARTED || event == VIR_DOMAIN_EVENT_RESUMED) {
        report_domain(h, dom);
    } else if (event == VIR_DOMAIN_EVENT_STOPPED || event == VIR_DOMAIN_EVENT_UNDEFINED) {
        if (LV->virDomainGetUUIDString(dom, uuid) == 0)
            h->ops->stopped(h->ctx, uuid);
    }
    return 0;
}

static void on_qemu_event(virConnectPtr c, virDomainPtr dom, const char *event, long long secs,
                          unsigned int micros, const char *details, void *opaque)
{
    (void)c;
    (void)secs;
    (void)micros;
    struct lvhost *h = opaque;
    if (event == NULL || strcmp(event, "GUEST_PANICKED") != 0)
        return;
    struct lvhost_panic p;
    struct bm_err e = BM_ERR_INIT;
    char uuid[VIR_UUID_STRING_BUFLEN];
    const char *name = LV->virDomainGetName(dom);
    if (name == NULL || LV->virDomainGetUUIDString(dom, uuid) < 0)
        return;
    if (lvhost_parse_panic(details, &p, &e) < 0)
        lvhost_parse_panic(NULL, &p, &e);   /* still a panic, with nothing more known */
    h->ops->panicked(h->ctx, name, uuid, &p);
}

static void schedule_reconnect(struct lvhost *h);

static void disconnect(struct lvhost *h)
{
    if (h->conn == NULL)
        return;
    if (h->lifecycle_id >= 0)
        LV->virConnectDomainEventDeregisterAny(h->conn, h->lifecycle_id);
    if (h->qemu_id >= 0)
        LV->virConnectDomainQemuMonitorEventDeregister(h->conn, h->qemu_id);
    h->lifecycle_id = h->qemu_id = -1;
    LV->virConnectUnregisterCloseCallback(h->conn, NULL);
    LV->virConnectClose(h->conn);
    h->conn = NULL;
}

static void on_close(virConnectPtr c, int reason, void *opaque)
{
    (void)c;
    struct lvhost *h = opaque;
    if (h->quit)
        return;
    char why[64];
    snprintf(why, sizeof why, "libvirt connection closed (reason %d)", reason);
    h->ops->connection(h->ctx, false, why);
    /* Deregistering from inside the close callback is allowed; closing the
     * connection itself waits for the loop. */
    schedule_reconnect(h);
}

static int try_connect(struct lvhost *h)
{
    virConnectPtr c = LV->virConnectOpen(h->uri);
    if (c == NULL) {
        if (!h->said_down)
            h->ops->connection(h->ctx, false, last_error());
        h->said_down = true;
        return -1;
    }
    const char *type = LV->virConnectGetType(c);
    if (type == NULL || strcasecmp(type, "QEMU") != 0) {
        LV->virConnectClose(c);
        if (!h->said_down)
            h->ops->connection(h->ctx, false, "the libvirt URI is not a QEMU connection");
        h->said_down = true;
        return -1;
    }
    h->conn = c;
    LV->virConnectRegisterCloseCallback(c, on_close, h, NULL);
    /* Keepalive notices a daemon that hangs, not only one that exits. */
    LV->virConnectSetKeepAlive(c, 5, 3);
    h->lifecycle_id = LV->virConnectDomainEventRegisterAny(c, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                                       VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle), h,
                                                       NULL);
    h->qemu_id = LV->virConnectDomainQemuMonitorEventRegister(c, NULL, "GUEST_PANICKED", on_qemu_event,
                                                          h, NULL, 0);
    if (h->lifecycle_id < 0 || h->qemu_id < 0) {
        h->ops->connection(h->ctx, false, last_error());
        disconnect(h);
        return -1;
    }
    h->said_down = false;
    h->backoff_ms = BACKOFF_MIN_MS;
    h->ops->connection(h->ctx, true, NULL);
    lvhost_rescan(h);
    return 0;
}

static void on_timer(int timer, void *opaque)
{
    struct lvhost *h = opaque;
    LV->virEventRemoveTimeout(timer);
    h->timer = -1;
    if (h->quit)
        return;
    disconnect(h);
    if (try_connect(h) < 0)
        schedule_reconnect(h);
}

static void schedule_reconnect(struct lvhost *h)
{
    if (h->timer >= 0 || h->quit)
        return;
    h->timer = LV->virEventAddTimeout(h->backoff_ms, on_timer, h, NULL);
    h->backoff_ms = h->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : h->backoff_ms * 2;
}

static void on_fd(int watch, int fd, int events, void *opaque)
{
    (void)watch;
    (void)events;
    struct lvhost *h = opaque;
    h->ops->readable(h->ctx, fd);
}

struct lvhost *lvhost_new(const char *uri, const struct lvhost_ops *ops, void *ctx,
                          struct bm_err *err)
{
    if (lv_api(err) == NULL)
        return NULL;
    LV->virSetErrorFunc(NULL, quiet);
    if (LV->virEventRegisterDefaultImpl() < 0) {
        bm_err_set(err, "libvirt's event loop: %s", last_error());
        return NULL;
    }
    struct lvhost *h = calloc(1, sizeof *h);
    if (h == NULL) {
        bm_err_set(err, "out of memory");
        return NULL;
    }
    if (strlen(uri) >= sizeof h->uri) {
        free(h);
        bm_err_set(err, "libvirt URI too long");
        return NULL;
    }
    memcpy(h->uri, uri, strlen(uri) + 1);
    h->ops = ops;
    h->ctx = ctx;
    h->lifecycle_id = h->qemu_id = h->timer = -1;
    h->backoff_ms = BACKOFF_MIN_MS;
    if (try_connect(h) < 0)
        schedule_reconnect(h);
    return h;
}

int lvhost_watch_fd(struct lvhost *h, int fd, struct bm_err *err)
{
    if (h->nfds == MAX_FDS)
        return bm_err_set(err, "too many descriptors for the event loop");
    int w = LV->virEventAddHandle(fd, VIR_EVENT_HANDLE_READABLE, on_fd, h, NULL);
    if (w < 0)
        return bm_err_set(err, "watching descriptor %d: %s", fd, last_error());
    h->fds[h->nfds] = fd;
    h->watches[h->nfds++] = w;
    return 0;
}

int lvhost_run(struct lvhost *h, struct bm_err *err)
{
    while (!h->quit)
        if (LV->virEventRunDefaultImpl() < 0)
            return bm_err_set(err, "libvirt's event loop: %s", last_error());
    return 0;
}

void lvhost_quit(struct lvhost *h) { h->quit = true; }

void lvhost_free(struct lvhost *h)
{
    if (h == NULL)
        return;
    h->quit = true;
    if (h->timer >= 0)
        LV->virEventRemoveTimeout(h->timer);
    for (size_t i = 0; i < h->nfds; i++)
        LV->virEventRemoveHandle(h->watches[i]);
    disconnect(h);
    free(h);
}

#else /* !HAVE_LIBVIRT */

struct lvhost {
    int unused;
};

struct lvhost *lvhost_new(const char *uri, const struct lvhost_ops *ops, void *ctx,
                          struct bm_err *err)
{
    (void)uri;
    (void)ops;
    (void)ctx;
    bm_err_set(err, "this bsodmon was built without libvirt: no host mode");
    return NULL;
}

int lvhost_watch_fd(struct lvhost *h, int fd, struct bm_err *err)
{
    (void)h;
    (void)fd;
    return bm_err_set(err, "no libvirt");
}

void lvhost_rescan(struct lvhost *h) { (void)h; }
int lvhost_run(struct lvhost *h, struct bm_err *err)
{
    (void)h;
    return bm_err_set(err, "no libvirt");
}
void lvhost_quit(struct lvhost *h) { (void)h; }
void lvhost_free(struct lvhost *h) { (void)h; }

#endif /* HAVE_LIBVIRT */
