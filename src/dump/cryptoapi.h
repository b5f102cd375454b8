/* cryptoapi.h - libcrypto's SHA-256, loaded when first needed (base/dynlib.h).
 *
 * Only a crash dump hashes; a monitor that never writes one never maps
 * libcrypto (2.9 MiB of a host-mode bsodmon's resident memory otherwise).
 * Private to dump_raw.c.
 */
#ifndef BM_DUMP_CRYPTOAPI_H
#define BM_DUMP_CRYPTOAPI_H

#include <openssl/evp.h>

#include "base/dynlib.h"
#include "base/err.h"

#define CRYPTO_API_FUNCS(X)                                                    \
    X(EVP_MD_CTX_new) X(EVP_MD_CTX_free) X(EVP_sha256) X(EVP_DigestInit_ex)   \
    X(EVP_DigestUpdate) X(EVP_DigestFinal_ex)

struct crypto_api {
    CRYPTO_API_FUNCS(BM_DL_FIELD)
};

/* The functions, loaded once (thread-safe); NULL with err when libcrypto
 * cannot be loaded. */
const struct crypto_api *crypto_api(struct bm_err *err);
/* The same, once crypto_api() has succeeded. */
const struct crypto_api *crypto_api_loaded(void);

#endif
