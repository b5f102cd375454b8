/* registry.c - the plugins this build was configured with. */
#include <string.h>

#include "plugins/plugin.h"
#ifdef ENABLE_PLUGIN_BSODMON
#include "plugins/bsodmon/bsodmon.h"
#endif

const struct plugin_ops *const plugin_registry[] = {
#ifdef ENABLE_PLUGIN_BSODMON
    &bsodmon_plugin,
#endif
    NULL,
};

const struct plugin_ops *plugin_find(const char *name)
{
    for (size_t i = 0; plugin_registry[i] != NULL; i++)
        if (strcmp(plugin_registry[i]->name, name) == 0)
            return plugin_registry[i];
    return NULL;
}
