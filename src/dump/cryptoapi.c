/* cryptoapi.c - see cryptoapi.h. */
#include "dump/cryptoapi.h"

#include <pthread.h>

static struct crypto_api api;
static char load_error[BM_ERR_MSG_MAX];
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* BM_SONAME_CRYPTO: read from the library at build time (meson.build). */
static void load(void)
{
#define CRYPTO_API_SLOT(f) (void **)&api.f,
    static const char *const names[] = { CRYPTO_API_FUNCS(BM_DL_NAME) NULL };
    void **const slots[] = { CRYPTO_API_FUNCS(CRYPTO_API_SLOT) NULL };
#undef CRYPTO_API_SLOT
    bm_dl_load(BM_SONAME_CRYPTO, "for the crash dump's SHA-256", names, slots,
               load_error, sizeof load_error);
}

const struct crypto_api *crypto_api(struct bm_err *err)
{
    return bm_dl_once(&once, load, load_error, err) == 0 ? &api : NULL;
}

const struct crypto_api *crypto_api_loaded(void) { return &api; }
