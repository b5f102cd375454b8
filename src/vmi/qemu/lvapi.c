/* lvapi.c - see lvapi.h. */
#include "vmi/qemu/lvapi.h"

#ifdef HAVE_LIBVIRT

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

static struct lv_api api;
static char load_error[256];
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* libvirt.so.0 and libvirt-qemu.so.0: the sonames Debian's libvirt0 ships
 * (libvirt keeps them stable). */
static void load(void)
{
    void *lv = dlopen("libvirt.so.0", RTLD_NOW | RTLD_LOCAL);
    void *lq = lv != NULL ? dlopen("libvirt-qemu.so.0", RTLD_NOW | RTLD_LOCAL) : NULL;
    if (lq == NULL) {
        const char *e = dlerror();
        snprintf(load_error, sizeof load_error, "cannot load libvirt's client library (%s): "
                 "install libvirt0", e ? e : "?");
        return;
    }
#define LV_API_LOAD(f)                                                                 \
    if (load_error[0] == '\0') {                                                       \
        *(void **)&api.f = dlsym(lv, #f);                                              \
        if (api.f == NULL)                                                             \
            *(void **)&api.f = dlsym(lq, #f);                                          \
        if (api.f == NULL)                                                             \
            snprintf(load_error, sizeof load_error, "libvirt's library has no %s", #f); \
    }
    LV_API_FUNCS(LV_API_LOAD)
#undef LV_API_LOAD
}

const struct lv_api *lv_api(struct bm_err *err)
{
    pthread_once(&once, load);
    if (load_error[0] != '\0') {
        bm_err_set(err, "%s", load_error);
        return NULL;
    }
    return &api;
}

const struct lv_api *lv_api_loaded(void) { return &api; }

#endif /* HAVE_LIBVIRT */
