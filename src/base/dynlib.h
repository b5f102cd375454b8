/* dynlib.h - a library that only some runs need, loaded when first needed.
 *
 * A shared library linked into bsodmon is mapped, relocated and partly
 * faulted in by every run, whether it calls it or not: capstone (only the
 * no-profile KeBugCheck2 scan) and libcrypto (only a crash dump's SHA-256)
 * were 4.8 and 2.9 MiB of a host-mode bsodmon's resident memory, libvirt
 * and what it pulls in 8 MiB of a monitor watching a plain QEMU. Such a
 * library's functions are looked up with dlopen()/dlsym() the first time
 * they are needed, by the library's own prototypes (its -dev headers, as
 * usual), into a table of typed pointers (vmi/qemu/lvapi.c, win/csapi.c,
 * dump/cryptoapi.c). The SONAME comes from the build (meson reads it from
 * the library pkg-config names, scripts/soname), not from a hand-written
 * version.
 */
#ifndef BM_BASE_DYNLIB_H
#define BM_BASE_DYNLIB_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"

/* dlopen(soname, RTLD_NOW | RTLD_LOCAL). NULL with a message in error[len]:
 * which library, what it is needed for (`purpose`) and dlerror(). */
void *bm_dl_open(const char *soname, const char *purpose, char *error, size_t len);

/* Each names[i] (a NULL-terminated list), looked up in libs[0..nlibs-1] in
 * turn, into *slots[i]. false with a message naming the first one missing. */
bool bm_dl_syms(void *const libs[], size_t nlibs, const char *soname, const char *const names[],
                void **const slots[], char *error, size_t len);

/* bm_dl_open, then bm_dl_syms in that one library. */
bool bm_dl_load(const char *soname, const char *purpose, const char *const names[],
                void **const slots[], char *error, size_t len);

/* Runs load() once (thread-safe); -1 with err = load_error when it left
 * one there. */
int bm_dl_once(pthread_once_t *once, void (*load)(void), const char *load_error,
               struct bm_err *err);

/* A table's fields and names from one X-macro list of functions (each
 * module writes its slots, `(void **)&table.f,`, the same way). */
#define BM_DL_FIELD(f) __typeof__(f) *f;
#define BM_DL_NAME(f) #f,

#endif
