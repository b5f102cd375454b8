/* crashdump.h - bsodmon's crash dump: all guest RAM and a metadata file
 * into --crashdump-dir, with the guest paused until it is complete. */
#ifndef BM_PLUGINS_BSODMON_CRASHDUMP_H
#define BM_PLUGINS_BSODMON_CRASHDUMP_H

#include <stdint.h>
#include <sys/time.h>

#include "base/err.h"
#include "output/output.h"
#include "plugins/plugin.h"

/* What was caught, for the metadata file. */
struct crash {
    const char *dir;            /* where to write; NULL: --crashdump-dir */
    uint64_t code, p[4];            /* at KeBugCheck2's entry (the event's) */
    /* What KiBugCheckData held when the bug check was followed to where
     * Windows stores it (the dump is then taken there): the .dmp header
     * and its KiBugCheckData carry it. */
    bool has_final;
    uint64_t final_code, final_p[4];
    const struct vmi_regs *regs;    /* the crashing vCPU's at the entry; NULL: read them */
    unsigned vcpu;
    uint64_t cr3, rsp;
    struct timeval time;
    const char *name;
    const struct output_field *analysis;    /* the event's analysis fields */
    size_t nanalysis;
};

/* --crashdump-format raw|dmp|both into DUMP_RAW/DUMP_DMP bits; prints
 * the error (command-line parsing). */
int crashdump_parse_format(const char *s, unsigned *formats);

/* Checked at start-up, before the guest is touched: the directory is
 * usable (created 0700 when missing) and the dump's hashing library loads,
 * or a clear error. */
int crashdump_check_dir(const char *dir, struct bm_err *err);

/* Write DIR/crashdump.bin and/or DIR/crashdump.dmp (one pass over RAM) and
 * DIR/crashdump.metadata. 0, or -1 with nothing that looks like a complete
 * dump left behind. What crashdump.dmp could not be given (an absent or
 * undecodable KDBG, ...) is a warning on stderr, not a failure. */
int crashdump_write(struct plugin_host *host, const struct crash *c, struct bm_err *err);

#endif
