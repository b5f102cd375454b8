/* triage.h - what crashed and where, from a bug check's code and
 * parameters: the code Windows will report, the sub-code and its name, the
 * faulting IP and the module holding it, the exception, the critical
 * process, and a bucket for counting the same crash across a fleet.
 *
 * The meaning of each parameter comes from the data tables
 * (bugcheck_params.h); the structures are read by win/winmod and
 * win/wintrap at the profile's offsets. Every result field has a presence
 * flag: a read that fails, an offset the profile lacks, or a rule that does
 * not decide leaves that field absent, never guessed.
 *
 * The reported code (ReportedBugCheckCode) follows
 * ../shared/notes/bugcheck-parameters.md 2.3, only where it is decided by
 * what the entry state shows:
 *   0x4C  -> P1 (the hard-error status), always, and the reported
 *            parameters are the four hard-error parameters P2 points to;
 *   0xA   -> 0xD1 when the IP lies in a loaded module other than the first
 *            two of PsLoadedModuleList (ntoskrnl, HAL), or in none of them
 *            while both were read; when the IP is in ntoskrnl or HAL the
 *            kernel picks 0xA, 0xC5, 0xD3 or 0xD4 from pool-code bounds and
 *            the unloaded-driver list: absent;
 *   0x50  -> absent (0xCC..0xCF, 0xD5, 0xD6 depend on special pool and
 *            session state not read here);
 *   every other code of the parameter table -> itself (the note lists no
 *   rewrite for it).
 * Where those rules decide everything the kernel will store
 * (triage_wants_stored), they are the answer and the event does not wait.
 * Otherwise bsodmon follows the bug check to where the kernel has stored
 * its final data (bsodmon.c, vmi_run_to), and triage_final replaces the
 * rules with what KiBugCheckData holds then, with the final parameters
 * where they differ from the entry's and the driver KiBugCheckDriver
 * names; when the follow cannot get there the rules stay. At KeBugCheck2's
 * entry KiBugCheckData still holds zeros or an earlier crash, so it is
 * never read there.
 */
#ifndef BM_PLUGINS_BSODMON_TRIAGE_H
#define BM_PLUGINS_BSODMON_TRIAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "win/pe.h"
#include "win/profile.h"
#include "win/winbugcheck.h"
#include "win/winmod.h"

#define TRIAGE_BUCKET_MAX 128

struct triage_input {
    uint64_t code;                  /* RCX at KeBugCheck2's entry */
    uint64_t p[4];
    const struct win_profile *prof; /* NULL: no profile, little can be read */
    uint64_t kernel_base;
    pe_read_fn read;                /* guest virtual memory (kernel CR3) */
    void *ctx;
    struct winmod_list *modules;    /* scratch for the walk (large: caller's) */
};

struct triage {
    bool has_reported;
    uint32_t reported;
    bool reported_stored;           /* from KiBugCheckData, not the entry rules */
    bool has_reported_params;       /* the final P1..P4, when they differ */
    bool hard_error_params_read;    /* 0x4C: the four values at P2 were read */
    uint64_t reported_params[4];
    bool has_driver;                /* KiBugCheckDriver's name */
    char driver[WINMOD_NAME_MAX + 1];
    bool has_subcode;
    uint64_t subcode;
    const char *subcode_name;       /* NULL: undocumented value */
    bool has_ip;
    uint64_t ip;
    bool has_module;
    char module[WINMOD_NAME_MAX + 1];
    bool module_truncated;          /* its name was cut: has_module is false */
    uint64_t module_offset;
    uint32_t module_size;
    bool has_module_timestamp;
    uint32_t module_timestamp;
    bool has_exception;
    uint32_t exception_code;
    const char *exception_name;     /* NULL: not in ntstatus.tsv */
    bool has_process;
    uint8_t process[15];
    size_t process_len;
    bool has_bucket;
    char bucket[TRIAGE_BUCKET_MAX];
    unsigned failed_reads;          /* reads that failed (fields left out) */
    char first_error[160];          /* the first failure's message, for the log */
};

/* Never fails: what cannot be decoded is absent. Bounded: one module-list
 * walk (WINMOD_MAX entries) and a handful of record reads. */
void triage_analyse(const struct triage_input *in, struct triage *out);

/* Whether what KeBugCheck2 stores after entry could differ from what the
 * entry rules gave t, so that following the bug check is worth its cost
 * (under TCG a start and a stop of the VM, ~1 ms): the reported code
 * undecided (0x50; 0xA with the IP in ntoskrnl or HAL, or the module list
 * unread; a code the parameter table lacks), 0x4C's hard-error parameters
 * unread, or a code for which KeBugCheck2 names the failing driver in
 * KiBugCheckDriver (0xBE, 0xCB, 0xD8, 0xEA, 0xFC). For every other code
 * ../shared/notes/bugcheck-parameters.md 2.3 lists no change; what
 * KiFilterBugCheckInfo does after the rewrites is not known, and is not
 * waited for. */
bool triage_wants_stored(const struct triage_input *in, const struct triage *t);

/* What KeBugCheck2 stored (read once it had stored it) over the entry
 * rules: the reported code is KiBugCheckData[0]'s low 32 bits (a 0 there
 * means nothing was stored: the entry rules stay), the parameters when any
 * differs from the entry's, the driver when named; the bucket is made
 * again with the stored code. */
void triage_final(const struct triage_input *in, const struct winbc_final *f, struct triage *t);

#endif
