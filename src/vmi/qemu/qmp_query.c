/* qmp_query.c - typed QMP queries over any channel (chan.h): run state,
 * vCPUs, memory backends. Every reply is checked for shape and bounded. */
#include "vmi/qemu/qmp.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static json_object *member(json_object *o, const char *key, json_type t)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, t))
        return NULL;
    return v;
}

/* --- typed queries ------------------------------------------------------- */

static int copy_name(char *dst, size_t cap, json_object *v, const char *what,
                     struct bm_err *err)
{
    if (v == NULL)
        return bm_err_set(err, "QMP reply lacks %s", what);
    size_t n = (size_t)json_object_get_string_len(v);
    if (n >= cap)
        return bm_err_set(err, "QMP %s is longer than %zu bytes", what,
                          cap - 1);
    memcpy(dst, json_object_get_string(v), n + 1);
    return 0;
}

int qmp_query_status(struct qemu_chan *c, struct qmp_status *st,
                     struct bm_err *err)
{
    json_object *r;
    if (chan_execute(c, "query-status", NULL, &r, err) < 0)
        return -1;
    json_object *running = member(r, "running", json_type_boolean);
    int rc = copy_name(st->status, sizeof st->status,
                       member(r, "status", json_type_string), "status", err);
    if (rc == 0 && running == NULL)
        rc = bm_err_set(err, "query-status reply lacks 'running'");
    if (rc == 0)
        st->running = json_object_get_boolean(running);
    json_object_put(r);
    return rc;
}

int qmp_query_cpus(struct qemu_chan *c, struct qmp_cpu *cpus, size_t cap,
                   size_t *n, struct bm_err *err)
{
    json_object *r;
    if (chan_execute(c, "query-cpus-fast", NULL, &r, err) < 0)
        return -1;
    int rc = 0;
    size_t count = json_object_is_type(r, json_type_array)
                   ? json_object_array_length(r) : 0;
    if (count == 0)
        rc = bm_err_set(err, "query-cpus-fast returned no vCPUs");
    else if (count > cap)
        rc = bm_err_set(err, "query-cpus-fast lists %zu vCPUs, more than "
                        "%zu", count, cap);
    for (size_t i = 0; rc == 0 && i < count; i++) {
        json_object *e = json_object_array_get_idx(r, i);
        json_object *idx = member(e, "cpu-index", json_type_int);
        json_object *tid = member(e, "thread-id", json_type_int);
        int64_t vi = idx ? json_object_get_int64(idx) : -1;
        int64_t vt = tid ? json_object_get_int64(tid) : -1;
        if (vi < 0 || vi > 65535 || vt <= 0 || vt > INT32_MAX)
            rc = bm_err_set(err, "query-cpus-fast entry %zu has no valid "
                            "cpu-index and thread-id", i);
        else
            cpus[i] = (struct qmp_cpu){ (int)vi, (pid_t)vt };
    }
    if (rc == 0)
        *n = count;
    json_object_put(r);
    return rc;
}

static int qom_get_string(struct qemu_chan *c, const char *path,
                          const char *prop, char *dst, size_t cap,
                          struct bm_err *err)
{
    json_object *args = json_object_new_object(), *r = NULL;
    json_object_object_add(args, "path", json_object_new_string(path));
    json_object_object_add(args, "property", json_object_new_string(prop));
    int rc = chan_execute(c, "qom-get", args, &r, err);
    json_object_put(args);
    if (rc == 0)
        rc = copy_name(dst, cap, json_object_is_type(r, json_type_string)
                       ? r : NULL, prop, err);
    json_object_put(r);
    return rc;
}

static int memdev_details(struct qemu_chan *c, struct qmp_memdev *d,
                          struct bm_err *err)
{
    char path[QMP_NAME_MAX + 16];
    snprintf(path, sizeof path, "/objects/%s", d->id);
    if (qom_get_string(c, path, "type", d->type, sizeof d->type, err) < 0)
        return -1;
    if (strcmp(d->type, "memory-backend-file") != 0)
        return 0;
    return qom_get_string(c, path, "mem-path", d->mem_path,
                          sizeof d->mem_path, err);
}

int qmp_query_memdevs(struct qemu_chan *c, struct qmp_memdev *devs, size_t cap,
                      size_t *n, struct bm_err *err)
{
    json_object *r;
    if (chan_execute(c, "query-memdev", NULL, &r, err) < 0)
        return -1;
    int rc = 0;
    size_t count = json_object_is_type(r, json_type_array)
                   ? json_object_array_length(r) : 0;
    if (count > cap)
        rc = bm_err_set(err, "query-memdev lists %zu backends, more than %zu",
                        count, cap);
    for (size_t i = 0; rc == 0 && i < count; i++) {
        json_object *e = json_object_array_get_idx(r, i);
        json_object *size = member(e, "size", json_type_int);
        json_object *share = member(e, "share", json_type_boolean);
        struct qmp_memdev *d = &devs[i];
        memset(d, 0, sizeof *d);
        rc = copy_name(d->id, sizeof d->id, member(e, "id", json_type_string),
                       "memdev id", err);
        if (rc == 0 && (size == NULL || share == NULL))
            rc = bm_err_set(err, "query-memdev entry %zu lacks size or share",
                            i);
        if (rc == 0) {
            d->size = json_object_get_uint64(size);
            d->share = json_object_get_boolean(share);
        }
        /* Only [A-Za-z0-9._-] ids are legal, so the QOM path is safe. */
        if (rc == 0 && strpbrk(d->id, "/ ,\"\\") != NULL)
            rc = bm_err_set(err, "odd memdev id '%s'", d->id);
        if (rc == 0)
            rc = memdev_details(c, d, err);
    }
    if (rc == 0)
        *n = count;
    json_object_put(r);
    return rc;
}
