/* bsodmon.h - the bsodmon plugin: a trap on KeBugCheck2, one event per
 * bug check, optionally a crash dump, and with -b the kernel-panic exit. */
#ifndef BM_PLUGINS_BSODMON_H
#define BM_PLUGINS_BSODMON_H

#include "plugins/plugin.h"

#define BSODMON_EXIT_KERNEL_PANIC 10

extern const struct plugin_ops bsodmon_plugin;

#endif
