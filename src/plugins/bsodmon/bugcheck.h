/* bugcheck.h - names of Windows bug check codes (the BugCheckName field).
 *
 * The table lives in bugcheck_table.c, generated from bugchecks.tsv by
 * gen-bugcheck-table; edit the TSV, never the .c. It holds every code of
 * Microsoft's Bug Check Code Reference and Kernel Live Dump Code Reference and
 * of the SDK's bugcodes.h, sorted by code, each code once.
 *
 * None of these functions can fail; they allocate nothing and are safe to call
 * from any thread.
 */
#ifndef BM_PLUGINS_BSODMON_BUGCHECK_H
#define BM_PLUGINS_BSODMON_BUGCHECK_H

#include <stddef.h>
#include <stdint.h>

/* The name reported for a code the table does not know. */
#define BUGCHECK_UNKNOWN_NAME "UNKNOWN_CODE"

/* The symbolic name of a bug check code, e.g. 0x50 ->
 * "PAGE_FAULT_IN_NONPAGED_AREA". Bug check codes are 32-bit: a code with any
 * of bits 32..63 set, like a code absent from the table, gives
 * BUGCHECK_UNKNOWN_NAME. Never NULL; the string is static. */
const char *bugcheck_name(uint64_t code);

/* Number of entries in the table (for --list-bugchecks). */
size_t bugcheck_count(void);

/* Entry i (0 <= i < bugcheck_count()), in ascending order of code. Either
 * output pointer may be NULL. For i out of range, *code is 0 and *name is
 * NULL. */
void bugcheck_entry(size_t i, uint32_t *code, const char **name);

#endif
