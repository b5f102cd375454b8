/* dynlib.c - see dynlib.h. */
#include "base/dynlib.h"

#include <dlfcn.h>
#include <stdio.h>

void *bm_dl_open(const char *soname, const char *purpose, char *error, size_t len)
{
    void *lib = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        const char *e = dlerror();
        snprintf(error, len, "cannot load %s, needed %s (%s): install the package that ships it",
                 soname, purpose, e != NULL ? e : "?");
    }
    return lib;
}

bool bm_dl_syms(void *const libs[], size_t nlibs, const char *soname, const char *const names[],
                void **const slots[], char *error, size_t len)
{
    for (size_t i = 0; names[i] != NULL; i++) {
        void *fn = NULL;
        for (size_t k = 0; k < nlibs && fn == NULL; k++)
            fn = dlsym(libs[k], names[i]);
        if (fn == NULL) {
            snprintf(error, len, "%s has no %s: a version older than the one bsodmon was "
                     "built with?", soname, names[i]);
            return false;
        }
        *slots[i] = fn;
    }
    return true;
}

bool bm_dl_load(const char *soname, const char *purpose, const char *const names[],
                void **const slots[], char *error, size_t len)
{
    void *lib = bm_dl_open(soname, purpose, error, len);
    return lib != NULL && bm_dl_syms(&lib, 1, soname, names, slots, error, len);
}

int bm_dl_once(pthread_once_t *once, void (*load)(void), const char *load_error,
               struct bm_err *err)
{
    pthread_once(once, load);
    return load_error[0] != '\0' ? bm_err_set(err, "%s", load_error) : 0;
}
