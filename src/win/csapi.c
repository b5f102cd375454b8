/* csapi.c - see csapi.h. */
#include "win/csapi.h"

#include <pthread.h>

static struct cs_api api;
static char load_error[BM_ERR_MSG_MAX];
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* BM_SONAME_CAPSTONE: read from the library at build time (meson.build). */
static void load(void)
{
#define CS_API_SLOT(f) (void **)&api.f,
    static const char *const names[] = { CS_API_FUNCS(BM_DL_NAME) NULL };
    void **const slots[] = { CS_API_FUNCS(CS_API_SLOT) NULL };
#undef CS_API_SLOT
    bm_dl_load(BM_SONAME_CAPSTONE, "to find KeBugCheck2 without a symbol profile", names, slots,
               load_error, sizeof load_error);
}

const struct cs_api *cs_api(struct bm_err *err)
{
    return bm_dl_once(&once, load, load_error, err) == 0 ? &api : NULL;
}
