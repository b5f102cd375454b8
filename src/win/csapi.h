/* csapi.h - capstone, loaded when first needed (base/dynlib.h).
 *
 * Only the KeBugCheckEx call scan (callscan.c, a kernel without a symbol
 * profile) decodes x86; a bsodmon given profiles never maps capstone, whose
 * relocated tables alone were 1.3 MiB of private memory. Private to
 * callscan.c.
 */
#ifndef BM_WIN_CSAPI_H
#define BM_WIN_CSAPI_H

#include <capstone/capstone.h>

#include "base/dynlib.h"
#include "base/err.h"

#define CS_API_FUNCS(X) X(cs_open) X(cs_option) X(cs_malloc) X(cs_disasm_iter) X(cs_free) X(cs_close)

struct cs_api {
    CS_API_FUNCS(BM_DL_FIELD)
};

/* The functions, loaded once (thread-safe); NULL with err when capstone
 * cannot be loaded. */
const struct cs_api *cs_api(struct bm_err *err);

#endif
