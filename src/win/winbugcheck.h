/* winbugcheck.h - what KeBugCheck2 stored once its rewrites were done:
 * KiBugCheckData[0..4] (the code Windows reports and its four parameters,
 * ULONG_PTR slots) and KiBugCheckDriver (a PUNICODE_STRING naming the
 * driver Windows blames, NULL until it names one).
 * ../shared/notes/bugcheck-parameters.md 2.3-2.4.
 *
 * Both are guest data: the pointer may lead anywhere and the string's
 * Length be anything; the name is read as win/winmod reads module names
 * (at most WINMOD_NAME_MAX bytes; a longer one is cut and flagged, and the
 * caller leaves it out). Symbols and offsets come from the profile only.
 */
#ifndef BM_WIN_WINBUGCHECK_H
#define BM_WIN_WINBUGCHECK_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "win/pe.h"
#include "win/profile.h"
#include "win/winmod.h"

struct winbc_final {
    uint64_t data[5];               /* KiBugCheckData: code (low 32 bits), P1..P4 */
    bool has_driver;                /* KiBugCheckDriver set and its name read */
    char driver[WINMOD_NAME_MAX + 1];
    bool driver_truncated;          /* the name was longer: has_driver false */
    bool driver_failed;             /* set, but unreadable: driver_error says why */
    char driver_error[160];
};

/* Read both at `kernel_base` + their RVAs. -1 when the profile lacks
 * KiBugCheckData or it cannot be read; a KiBugCheckDriver that is absent,
 * NULL or unreadable only leaves has_driver false. Bounded: at most four
 * reads. */
int winbc_read(pe_read_fn read, void *ctx, const struct win_profile *prof, uint64_t kernel_base,
               struct winbc_final *out, struct bm_err *err);

#endif
