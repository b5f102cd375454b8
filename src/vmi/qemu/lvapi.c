/* lvapi.c - see lvapi.h. */
#include "vmi/qemu/lvapi.h"

#ifdef HAVE_LIBVIRT

#include <pthread.h>

#include "base/dynlib.h"

static struct lv_api api;
static char load_error[BM_ERR_MSG_MAX];
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* BM_SONAME_LIBVIRT, BM_SONAME_LIBVIRT_QEMU: read from the libraries at
 * build time (meson.build, scripts/soname). */
static void load(void)
{
    void *libs[2];
    if ((libs[0] = bm_dl_open(BM_SONAME_LIBVIRT, "to reach libvirt (-d NAME, --all-domains)",
                              load_error, sizeof load_error)) == NULL ||
        (libs[1] = bm_dl_open(BM_SONAME_LIBVIRT_QEMU, "for QEMU's monitor through libvirt",
                              load_error, sizeof load_error)) == NULL)
        return;
#define LV_API_SLOT(f) (void **)&api.f,
    static const char *const names[] = { LV_API_FUNCS(BM_DL_NAME) NULL };
    void **const slots[] = { LV_API_FUNCS(LV_API_SLOT) NULL };
#undef LV_API_SLOT
    bm_dl_syms(libs, 2, BM_SONAME_LIBVIRT, names, slots, load_error, sizeof load_error);
}

const struct lv_api *lv_api(struct bm_err *err)
{
    return bm_dl_once(&once, load, load_error, err) == 0 ? &api : NULL;
}

const struct lv_api *lv_api_loaded(void) { return &api; }

#endif /* HAVE_LIBVIRT */
