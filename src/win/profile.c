/* profile.c - see profile.h: what is wanted from a profile, choosing the
 * format, finding a profile by GUID, and refusing the wrong one. The two
 * formats are read by isf.c and rekall.c from the tables below, so adding
 * a wanted value is one line here plus one member in struct win_profile. */
#include "win/profile.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "win/pstream.h"

#define F(t, f, m) { t, f, offsetof(struct win_profile, m), 0 }

const struct profile_want_field profile_want_fields[] = {
    F("_KPCR", "Self", kpcr_self),
    F("_KPCR", "CurrentPrcb", kpcr_current_prcb),
    F("_KPCR", "Prcb", kpcr_prcb),
    F("_KPCR", "IdtBase", kpcr_idt_base),
    F("_KPRCB", "CurrentThread", kprcb_current_thread),
    F("_KTHREAD", "ApcState", kthread_apc_state),
    F("_KTHREAD", "Process", kthread_process),
    F("_KAPC_STATE", "Process", kapc_state_process),
    F("_ETHREAD", "Cid", ethread_cid),
    F("_CLIENT_ID", "UniqueProcess", client_id_unique_process),
    F("_CLIENT_ID", "UniqueThread", client_id_unique_thread),
    F("_EPROCESS", "UniqueProcessId", eprocess_pid),
    F("_EPROCESS", "InheritedFromUniqueProcessId", eprocess_ppid),
    { "_EPROCESS", "ImageFileName", offsetof(struct win_profile, eprocess_image_file_name),
      offsetof(struct win_profile, eprocess_image_file_name_len) },
    F("_EPROCESS", "Peb", eprocess_peb),
    F("_EPROCESS", "Pcb", eprocess_pcb),
    F("_EPROCESS", "ActiveProcessLinks", eprocess_active_links),
    F("_KPROCESS", "DirectoryTableBase", kprocess_dtb),
    F("_PEB", "SessionId", peb_session_id),
    F("_KPRCB", "Context", kprcb_context),
    F("_KPRCB", "ProcessorState", kprcb_processor_state),
    F("_KPROCESSOR_STATE", "ContextFrame", kprocessor_state_context_frame),
    F("_KUSER_SHARED_DATA", "InterruptTime", kuser_interrupt_time),
    F("_KUSER_SHARED_DATA", "SystemTime", kuser_system_time),
    F("_KUSER_SHARED_DATA", "NtProductType", kuser_product_type),
    F("_KUSER_SHARED_DATA", "SuiteMask", kuser_suite_mask),
    F("_DBGKD_GET_VERSION64", "MajorVersion", dbgkd_major_version),
    F("_DBGKD_GET_VERSION64", "MinorVersion", dbgkd_minor_version),
    F("_DBGKD_GET_VERSION64", "KdSecondaryVersion", dbgkd_kd_secondary_version),
#define C(i, f) F("_CONTEXT", f, context[i])
    C(0, "ContextFlags"), C(1, "MxCsr"), C(2, "SegCs"), C(3, "SegDs"), C(4, "SegEs"),
    C(5, "SegFs"), C(6, "SegGs"), C(7, "SegSs"), C(8, "EFlags"), C(9, "Rax"), C(10, "Rcx"),
    C(11, "Rdx"), C(12, "Rbx"), C(13, "Rsp"), C(14, "Rbp"), C(15, "Rsi"), C(16, "Rdi"),
    C(17, "R8"), C(18, "R9"), C(19, "R10"), C(20, "R11"), C(21, "R12"), C(22, "R13"),
    C(23, "R14"), C(24, "R15"), C(25, "Rip"), C(26, "FltSave"),
#undef C
    /* FltSave is an _XSAVE_FORMAT: its MxCsr is the second copy kdmp-parser
     * checks against the first. */
    F("_XSAVE_FORMAT", "MxCsr", context[27]),
    F("_KLDR_DATA_TABLE_ENTRY", "InLoadOrderLinks", kldr_links),
    F("_KLDR_DATA_TABLE_ENTRY", "DllBase", kldr_dll_base),
    F("_KLDR_DATA_TABLE_ENTRY", "SizeOfImage", kldr_size_of_image),
    F("_KLDR_DATA_TABLE_ENTRY", "BaseDllName", kldr_base_dll_name),
    F("_LDR_DATA_TABLE_ENTRY", "InLoadOrderLinks", ldr_links),
    F("_LDR_DATA_TABLE_ENTRY", "DllBase", ldr_dll_base),
    F("_LDR_DATA_TABLE_ENTRY", "SizeOfImage", ldr_size_of_image),
    F("_LDR_DATA_TABLE_ENTRY", "BaseDllName", ldr_base_dll_name),
    F("_LIST_ENTRY", "Flink", list_entry_flink),
    F("_UNICODE_STRING", "Length", unicode_string_length),
    F("_UNICODE_STRING", "Buffer", unicode_string_buffer),
    F("_KTRAP_FRAME", "Rip", ktrap_frame_rip),
    F("_KTRAP_FRAME", "Rsp", ktrap_frame_rsp),
    F("_EXCEPTION_RECORD", "ExceptionCode", exception_record_code),
    F("_EXCEPTION_RECORD", "ExceptionAddress", exception_record_address),
    F("_CONTEXT", "Rip", context_rip),
    F("_CONTEXT", "Rsp", context_rsp),
};
const size_t profile_nwant_fields = sizeof profile_want_fields / sizeof profile_want_fields[0];

#define S(n) { #n, offsetof(struct win_profile, n) }
const struct profile_want_symbol profile_want_symbols[] = {
    S(KeBugCheck2), S(KeBugCheckEx), S(KeBugCheck), S(KiSystemCall64),
    S(KdDebuggerDataBlock), S(KdpDataBlockEncoded), S(KiWaitNever), S(KiWaitAlways),
    S(KiProcessorBlock), S(KiBugCheckData), S(MmPfnDatabase), S(PsActiveProcessHead),
    S(PsLoadedModuleList), S(PsInitialSystemProcess), S(KdVersionBlock), S(KeNumberProcessors),
    S(KiBugCheckDriver), S(HvlLogGuestCrashInformation), S(KiDisplayBlueScreen),
};
const size_t profile_nwant_symbols = sizeof profile_want_symbols / sizeof profile_want_symbols[0];

bool profile_wants_type(const char *name)
{
    for (size_t i = 0; i < profile_nwant_fields; i++)
        if (strcmp(profile_want_fields[i].type, name) == 0)
            return true;
    return false;
}

bool profile_wants_symbol(const char *name)
{
    for (size_t i = 0; i < profile_nwant_symbols; i++)
        if (strcmp(profile_want_symbols[i].name, name) == 0)
            return true;
    return false;
}

static bool is_hex_guid(const char *s)
{
    for (int i = 0; i < 32; i++)
        if (!isxdigit((unsigned char)s[i]))
            return false;
    return s[32] == '\0';
}

void profile_format_guid_age(const char *guid, uint32_t age, char *out, size_t len)
{
    snprintf(out, len, "%.32s%" PRIX32, guid, age);
}

int profile_set_guid(struct win_profile *prof, const char *guid, uint32_t age,
                     uint32_t age_alt, struct bm_err *err)
{
    if (!is_hex_guid(guid))
        return bm_err_set(err, "symbol profile %s: PDB GUID '%.40s' is not 32 hex "
                          "digits", prof->path, guid);
    for (int i = 0; i < 32; i++)
        prof->guid[i] = (char)toupper((unsigned char)guid[i]);
    prof->guid[32] = '\0';
    prof->age = age;
    prof->age_alt = age_alt;
    prof->has_guid = true;
    profile_format_guid_age(prof->guid, age, prof->guid_age, sizeof prof->guid_age);
    return 0;
}

int profile_parse_guid_age(const char *s, char guid[33], uint32_t *age,
                           struct bm_err *err)
{
    size_t n = strlen(s);
    char head[33];
    if (n < 33 || n > 41)
        goto bad;
    memcpy(head, s, 32);
    head[32] = '\0';
    if (!is_hex_guid(head))
        goto bad;
    const char *tail = s + 32;
    int base = 16;
    if (*tail == '-') {                 /* Volatility file-name form */
        tail++;
        base = 10;
    }
    if (*tail == '\0' || !isxdigit((unsigned char)*tail))
        goto bad;
    char *end;
    errno = 0;
    unsigned long v = strtoul(tail, &end, base);
    if (*end != '\0' || errno != 0 || v > UINT32_MAX)
        goto bad;
    for (int i = 0; i < 32; i++)
        guid[i] = (char)toupper((unsigned char)head[i]);
    guid[32] = '\0';
    *age = (uint32_t)v;
    return 0;
bad:
    return bm_err_set(err, "'%.60s' is not a PDB GUID and age (expected 32 hex digits "
                      "followed by the age, e.g. 32C1A669D5FFEFD41091F636CFDB6E991)", s);
}

/* Where the top-level JSON object's first key starts with '$', the file is
 * Rekall's; otherwise ISF. Also rejects what is not JSON at all. */
static int detect_format(struct pstream *s, bool *rekall, struct bm_err *err)
{
    const char *d;
    size_t n, i = 0;
    if (pstream_peek(s, &d, &n, err) < 0)
        return -1;
    if (n >= 3 && memcmp(d, "\xef\xbb\xbf", 3) == 0)
        i = 3;                              /* UTF-8 byte-order mark */
    while (i < n && strchr(" \t\r\n", d[i]) != NULL && d[i] != '\0')
        i++;
    if (i == n && n == PSTREAM_CHUNK) {
        *rekall = false;                    /* a chunk of blanks: let ISF judge */
        return 0;
    }
    if (i == n)
        return bm_err_set(err, "symbol profile %s is empty", pstream_path(s));
    if (d[i] != '{') {
        unsigned char b[4] = { 0 };
        memcpy(b, d + i, n - i < 4 ? n - i : 4);
        return bm_err_set(err, "%s is not a symbol profile: expected a JSON object "
                          "(plain, xz or gzip), found bytes %02x %02x %02x %02x",
                          pstream_path(s), b[0], b[1], b[2], b[3]);
    }
    for (i++; i < n && strchr(" \t\r\n", d[i]) != NULL && d[i] != '\0'; i++)
        ;
    *rekall = i + 1 < n && d[i] == '"' && d[i + 1] == '$';
    return 0;
}

int profile_load(const char *path, struct win_profile *prof, struct bm_err *err)
{
    memset(prof, 0, sizeof *prof);
    snprintf(prof->path, sizeof prof->path, "%s", path);
    struct pstream *s = pstream_open(path, err);
    if (s == NULL)
        return -1;
    bool rekall = false;
    int rc = detect_format(s, &rekall, err);
    if (rc == 0)
        rc = rekall ? rekall_load(s, prof, err) : isf_load(s, prof, err);
    pstream_close(s);
    if (rc < 0) {
        char path_copy[PROFILE_PATH_MAX];
        snprintf(path_copy, sizeof path_copy, "%s", prof->path);
        memset(prof, 0, sizeof *prof);
        snprintf(prof->path, sizeof prof->path, "%s", path_copy);
    }
    return rc;
}

/* A PDB name from the guest, reduced to a safe base name, or -1. */
static int safe_pdb_name(const char *pdb_name, char *out, size_t len,
                         struct bm_err *err)
{
    const char *base = pdb_name;
    for (const char *p = pdb_name; *p; p++)
        if (*p == '\\' || *p == '/')
            base = p + 1;
    size_t n = strlen(base);
    bool ok = n > 0 && n < len && n <= 64 && base[0] != '.';
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)base[i]) || strchr("._-", base[i]) != NULL;
    if (!ok)
        return bm_err_set(err, "PDB name '%.80s' is not a plain file name; not "
                          "searching for a profile with it", pdb_name);
    memcpy(out, base, n + 1);
    return 0;
}

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int profile_find_in_dir(const char *dir, const char *pdb_name, const char *guid_age,
                        char *path_out, size_t len, struct bm_err *err)
{
    char pdb[65], guid[33], lower[33];
    uint32_t age;
    if (safe_pdb_name(pdb_name, pdb, sizeof pdb, err) < 0 ||
        profile_parse_guid_age(guid_age, guid, &age, err) < 0)
        return -1;
    for (int i = 0; i < 33; i++)
        lower[i] = (char)tolower((unsigned char)guid[i]);

    static const char *const layouts[] = { "%s/windows/%s/%s-%" PRIu32 "%s",
                                           "%s/%s/%s-%" PRIu32 "%s" };
    static const char *const exts[] = { ".json.xz", ".json.gz", ".json" };
    const char *const guids[] = { guid, lower };
    char cand[PROFILE_PATH_MAX + 128];
    for (size_t l = 0; l < 3; l++)
        for (size_t g = 0; g < 2; g++)
            for (size_t e = 0; e < 3; e++) {
                if (l < 2)
                    snprintf(cand, sizeof cand, layouts[l], dir, pdb, guids[g], age,
                             exts[e]);
                else    /* DIR is the PDB's own folder */
                    snprintf(cand, sizeof cand, "%s/%s-%" PRIu32 "%s", dir,
                             guids[g], age, exts[e]);
                if (!is_file(cand))
                    continue;
                if (strlen(cand) >= len)
                    return bm_err_set(err, "profile path %s is too long", cand);
                memcpy(path_out, cand, strlen(cand) + 1);
                return 0;
            }
    return bm_err_set(err, "no symbol profile for %s GUID %s age %" PRIu32 " in %s "
                      "(looked for %s/windows/%s/%s-%" PRIu32 ".json.xz, .json.gz, "
                      ".json); create it with volatility3 (it downloads and converts "
                      "the PDB) or get it from a public ISF collection",
                      pdb, guid, age, dir, dir, pdb, guid, age);
}

int profile_check_guid(const struct win_profile *prof, const char *kernel_guid_age,
                       struct bm_err *err)
{
    char guid[33];
    uint32_t age;
    if (profile_parse_guid_age(kernel_guid_age, guid, &age, err) < 0) {
        bm_err_prefix(err, "checking symbol profile %s", prof->path);
        return -1;
    }
    if (!prof->has_guid)
        return 0;
    if (strcmp(guid, prof->guid) == 0 && (age == prof->age || age == prof->age_alt))
        return 0;
    return bm_err_set(err, "symbol profile %s was made for a different kernel: it is "
                      "for GUID %s age %" PRIu32 ", the running kernel is GUID %s age %"
                      PRIu32 "; use the matching profile (Volatility name windows/%s/"
                      "%s-%" PRIu32 ".json.xz)", prof->path, prof->guid, prof->age,
                      guid, age, prof->pdb_name[0] ? prof->pdb_name : "ntkrnlmp.pdb",
                      guid, age);
}
