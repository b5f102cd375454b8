/* crashdump.c - PLACEHOLDER until src/dump lands (replaced in this change). */
#include "plugins/bsodmon/crashdump.h"

int crashdump_check_dir(const char *dir, struct bm_err *err)
{
    (void)dir;
    return bm_err_set(err, "crash dumps are not built yet");
}

int crashdump_write(struct plugin_host *host, const struct crash *c, struct bm_err *err)
{
    (void)host;
    (void)c;
    return bm_err_set(err, "crash dumps are not built yet");
}
