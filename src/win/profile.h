/* profile.h - kernel symbol profiles: the few symbol RVAs and structure
 * offsets bsodmon needs, loaded from a Volatility 3 ISF file (.json,
 * .json.xz, .json.gz) or a Rekall profile (what DRAKVUF's -r takes).
 *
 * Only what is listed in struct win_profile is kept; the JSON is freed as
 * soon as each value is read. Every value carries a presence flag, because
 * profiles differ (a Rekall profile may lack a type, a build may rename a
 * field) and the layers above decide what they can do without.
 */
#ifndef BM_WIN_PROFILE_H
#define BM_WIN_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

/* One value from a profile: a symbol RVA or a structure member offset. */
struct win_off {
    uint64_t value;
    bool present;
};

#define PROFILE_PATH_MAX 512
#define PROFILE_GUID_AGE_MAX 48     /* 32 hex + up to 8 hex age + NUL, rounded */

struct win_profile {
    /* Where the values came from. */
    char path[PROFILE_PATH_MAX];    /* the file loaded */
    const char *format;             /* "Volatility 3 ISF" or "Rekall" */
    char pdb_name[64];              /* "ntkrnlmp.pdb" if the file says, else "" */

    /* Identity of the PDB the profile was made from, when the file carries
     * it (ISF metadata.windows.pdb; Rekall $METADATA.GUID_AGE). */
    bool has_guid;
    char guid[33];                  /* 32 uppercase hex digits */
    uint32_t age;
    uint32_t age_alt;               /* Rekall GUID_AGE ages are hex (Rekall) or
                                       decimal (DRAKVUF's drakpdb): the other
                                       reading, equal to age when unambiguous */
    char guid_age[PROFILE_GUID_AGE_MAX];    /* symbol-server form, e.g.
                                       "32C1A669D5FFEFD41091F636CFDB6E991" */

    /* Kernel symbols: RVAs from the ntoskrnl image base. */
    struct win_off KeBugCheck2;             /* the breakpoint target */
    struct win_off KeBugCheckEx;
    struct win_off KeBugCheck;
    struct win_off KiSystemCall64;          /* LSTAR target: kernel discovery */
    /* For the Windows crash dump (win/crashinfo.c, win/kdbg.c). */
    struct win_off KdDebuggerDataBlock;
    struct win_off KdpDataBlockEncoded;
    struct win_off KiWaitNever;
    struct win_off KiWaitAlways;
    struct win_off KiProcessorBlock;
    struct win_off KiBugCheckData;
    struct win_off MmPfnDatabase;
    struct win_off PsActiveProcessHead;
    struct win_off PsLoadedModuleList;
    struct win_off PsInitialSystemProcess;
    struct win_off KdVersionBlock;
    struct win_off KeNumberProcessors;
    /* What KeBugCheck2 stores after its rewrites (win/winbugcheck.h), and
     * two functions it calls once they are done. */
    struct win_off KiBugCheckDriver;
    struct win_off HvlLogGuestCrashInformation;
    struct win_off KiDisplayBlueScreen;

    /* Structure member offsets, in bytes. */
    struct win_off kpcr_self;               /* _KPCR.Self: validates GS base */
    struct win_off kpcr_current_prcb;       /* _KPCR.CurrentPrcb */
    struct win_off kpcr_prcb;               /* _KPCR.Prcb (embedded _KPRCB) */
    struct win_off kpcr_idt_base;           /* _KPCR.IdtBase */
    struct win_off kprcb_current_thread;    /* _KPRCB.CurrentThread */
    struct win_off kthread_apc_state;       /* _KTHREAD.ApcState (_KAPC_STATE) */
    struct win_off kapc_state_process;      /* _KAPC_STATE.Process */
    struct win_off kthread_process;         /* _KTHREAD.Process */
    struct win_off ethread_cid;             /* _ETHREAD.Cid (_CLIENT_ID) */
    struct win_off client_id_unique_process;/* _CLIENT_ID.UniqueProcess */
    struct win_off client_id_unique_thread; /* _CLIENT_ID.UniqueThread */
    struct win_off eprocess_pid;            /* _EPROCESS.UniqueProcessId */
    struct win_off eprocess_ppid;           /* _EPROCESS.InheritedFromUniqueProcessId */
    struct win_off eprocess_image_file_name;/* _EPROCESS.ImageFileName */
    struct win_off eprocess_image_file_name_len; /* its element count (15) */
    struct win_off eprocess_peb;            /* _EPROCESS.Peb */
    struct win_off eprocess_pcb;            /* _EPROCESS.Pcb (_KPROCESS, at 0) */
    struct win_off eprocess_active_links;   /* _EPROCESS.ActiveProcessLinks */
    struct win_off kprocess_dtb;            /* _KPROCESS.DirectoryTableBase */
    struct win_off peb_session_id;          /* _PEB.SessionId */
    /* For the Windows crash dump. */
    struct win_off kprcb_context;           /* _KPRCB.Context (a _CONTEXT pointer) */
    struct win_off kprcb_processor_state;   /* _KPRCB.ProcessorState */
    struct win_off kprocessor_state_context_frame; /* _KPROCESSOR_STATE.ContextFrame */
    struct win_off kuser_interrupt_time;    /* _KUSER_SHARED_DATA.InterruptTime */
    struct win_off kuser_system_time;       /* _KUSER_SHARED_DATA.SystemTime */
    struct win_off kuser_product_type;      /* _KUSER_SHARED_DATA.NtProductType */
    struct win_off kuser_suite_mask;        /* _KUSER_SHARED_DATA.SuiteMask */
    struct win_off dbgkd_major_version;     /* _DBGKD_GET_VERSION64.MajorVersion */
    struct win_off dbgkd_minor_version;     /* _DBGKD_GET_VERSION64.MinorVersion */
    struct win_off dbgkd_kd_secondary_version; /* _DBGKD_GET_VERSION64.KdSecondaryVersion */
    /* _CONTEXT members, in the order of enum win_ctx_field (win/crashinfo.h). */
    struct win_off context[32];

    /* Triage (bsodmon's analysis; win/winmod.h, win/wintrap.h). The loaded
     * module entries are _KLDR_DATA_TABLE_ENTRY (Windows 10+) or, in tables
     * without it, _LDR_DATA_TABLE_ENTRY: both are kept, winmod uses the first
     * it finds complete. */
    struct win_off kldr_links;              /* _KLDR_DATA_TABLE_ENTRY.InLoadOrderLinks */
    struct win_off kldr_dll_base;           /* .DllBase */
    struct win_off kldr_size_of_image;      /* .SizeOfImage */
    struct win_off kldr_base_dll_name;      /* .BaseDllName (_UNICODE_STRING) */
    struct win_off ldr_links;               /* _LDR_DATA_TABLE_ENTRY.InLoadOrderLinks */
    struct win_off ldr_dll_base;            /* .DllBase */
    struct win_off ldr_size_of_image;       /* .SizeOfImage */
    struct win_off ldr_base_dll_name;       /* .BaseDllName */
    struct win_off list_entry_flink;        /* _LIST_ENTRY.Flink */
    struct win_off unicode_string_length;   /* _UNICODE_STRING.Length (bytes) */
    struct win_off unicode_string_buffer;   /* _UNICODE_STRING.Buffer */
    struct win_off ktrap_frame_rip;         /* _KTRAP_FRAME.Rip */
    struct win_off ktrap_frame_rsp;         /* _KTRAP_FRAME.Rsp */
    struct win_off exception_record_code;   /* _EXCEPTION_RECORD.ExceptionCode */
    struct win_off exception_record_address;/* _EXCEPTION_RECORD.ExceptionAddress */
    struct win_off context_rip;             /* _CONTEXT.Rip */
    struct win_off context_rsp;             /* _CONTEXT.Rsp */
};

/* Load a profile, choosing the format by content: xz and gzip by their
 * magic bytes, then ISF or Rekall by the first top-level key (Rekall's
 * all begin with '$'). Fails with a message naming the file. */
int profile_load(const char *path, struct win_profile *prof, struct bm_err *err);

/* Find the profile for a PDB in a directory laid out like Volatility 3's
 * symbol store: DIR/windows/<pdb_name>/<GUID>-<AGE>.json{.xz,.gz,} (AGE in
 * decimal, as volatility3's pdbutil names them; also DIR/<pdb_name>/... and
 * DIR/<GUID>-<AGE>...). `pdb_name` usually comes from the guest, so it is
 * reduced to its base name and refused unless it is a plain file name.
 * `guid_age` is in symbol-server form ("GUID" + hex age) or "GUID-<age>". */
int profile_find_in_dir(const char *dir, const char *pdb_name, const char *guid_age,
                        char *path_out, size_t len, struct bm_err *err);

/* Refuse a profile made for another kernel: compare its GUID and age with
 * the running kernel's (`kernel_guid_age` as for profile_find_in_dir). The
 * message names both. A profile that carries no GUID cannot be checked and
 * passes (has_guid tells the caller, who may warn). */
int profile_check_guid(const struct win_profile *prof, const char *kernel_guid_age,
                       struct bm_err *err);

/* Symbol-server form of a GUID and age: GUID followed by the age in
 * uppercase hex ("32C1A669D5FFEFD41091F636CFDB6E991"). */
void profile_format_guid_age(const char *guid, uint32_t age, char *out, size_t len);

/* Parse "GUID" + hex age or "GUID-<decimal age>"; `guid` gets 32 uppercase
 * hex digits. */
int profile_parse_guid_age(const char *s, char guid[33], uint32_t *age,
                           struct bm_err *err);

/* --- For the format back ends (isf.c, rekall.c) only. --- */

struct pstream;

/* What the back ends look for: (type, field) pairs and symbol names, each
 * with the offsetof() of its struct win_off in struct win_profile. */
struct profile_want_field {
    const char *type;
    const char *field;
    size_t slot;
    size_t count_slot;              /* array element count slot, or 0 */
};
struct profile_want_symbol {
    const char *name;
    size_t slot;
};
extern const struct profile_want_field profile_want_fields[];
extern const size_t profile_nwant_fields;
extern const struct profile_want_symbol profile_want_symbols[];
extern const size_t profile_nwant_symbols;

static inline struct win_off *profile_slot(struct win_profile *p, size_t slot)
{
    return (struct win_off *)(void *)((char *)p + slot);
}

/* True if a type or symbol name is one the tables above ask for. */
bool profile_wants_type(const char *name);
bool profile_wants_symbol(const char *name);

/* Record the PDB identity; validates the GUID text. */
int profile_set_guid(struct win_profile *prof, const char *guid, uint32_t age,
                     uint32_t age_alt, struct bm_err *err);

int isf_load(struct pstream *s, struct win_profile *prof, struct bm_err *err);
int rekall_load(struct pstream *s, struct win_profile *prof, struct bm_err *err);

#endif
