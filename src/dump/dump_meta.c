/* dump_meta.c - crashdump.metadata: one JSON object on one line. First the
 * fields of bsodmon-plugin.md with their names and formats (KernelBase,
 * BugCheckCode, Param1-Param4, CR3, RSP: lowercase hex without 0x), then
 * ours: BugCheckName, VCPU, TimeStamp, PdbGuid, DumpFormat ("raw", "dmp"
 * or "both"), DumpSize, RamRanges (["0x<start>", "0x<end inclusive>"]
 * pairs), Sha256 (DumpSize and Sha256: of the first file, crashdump.bin
 * when it is written), Complete, Files (each file's Name, Format, Size
 * and Sha256) and, when crashdump.dmp lacks something, DmpWarnings; then the extra
 * fields the caller passes (bsodmon's analysis), hex numbers as "0x..."
 * strings. */
#include "dump/dump.h"

#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static json_object *hex(uint64_t v, bool prefix)
{
    char buf[24];
    snprintf(buf, sizeof buf, prefix ? "0x%" PRIx64 : "%" PRIx64, v);
    return json_object_new_string(buf);
}

int dump_meta_write(int fd, const struct dump_meta *m, const struct dump_source *src,
                    const struct dump_result *res, struct bm_err *err)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "KernelBase", hex(m->kernel_base, false));
    json_object_object_add(o, "BugCheckCode", hex(m->code, false));
    static const char *const pnames[4] = { "Param1", "Param2", "Param3", "Param4" };
    for (int i = 0; i < 4; i++)
        json_object_object_add(o, pnames[i], hex(m->p[i], false));
    json_object_object_add(o, "CR3", hex(m->cr3, false));
    json_object_object_add(o, "RSP", hex(m->rsp, false));
    json_object_object_add(o, "BugCheckName",
                           json_object_new_string(m->bugcheck_name ? m->bugcheck_name : "UNKNOWN_CODE"));
    json_object_object_add(o, "VCPU", json_object_new_int((int32_t)m->vcpu));
    char ts[48];
    snprintf(ts, sizeof ts, "%lld.%06ld", (long long)m->time.tv_sec, (long)m->time.tv_usec);
    json_object_object_add(o, "TimeStamp", json_object_new_string(ts));
    json_object_object_add(o, "PdbGuid", m->pdb_guid ? json_object_new_string(m->pdb_guid) : NULL);
    bool raw = false, dmp = false;
    for (unsigned i = 0; i < res->nfiles; i++) {
        raw = raw || strcmp(res->file[i].format, "raw") == 0;
        dmp = dmp || strcmp(res->file[i].format, "dmp") == 0;
    }
    json_object_object_add(o, "DumpFormat",
                           json_object_new_string(raw && dmp ? "both" : dmp ? "dmp" : "raw"));
    json_object_object_add(o, "DumpSize", json_object_new_int64((int64_t)res->size));
    json_object *ranges = json_object_new_array();
    for (size_t i = 0; i < src->nranges; i++) {
        json_object *pair = json_object_new_array();
        json_object_array_add(pair, hex(src->ranges[i].start, true));
        json_object_array_add(pair, hex(src->ranges[i].end, true));
        json_object_array_add(ranges, pair);
    }
    json_object_object_add(o, "RamRanges", ranges);
    json_object_object_add(o, "Sha256", json_object_new_string(res->sha256));
    uint64_t ram = 0;
    for (size_t i = 0; i < src->nranges; i++)
        ram += src->ranges[i].end - src->ranges[i].start + 1;
    /* Every RAM byte went to the image (always so for a committed dump). */
    json_object_object_add(o, "Complete", json_object_new_boolean(res->ram_bytes == ram));
    json_object *files = json_object_new_array();
    for (unsigned i = 0; i < res->nfiles; i++) {
        json_object *f = json_object_new_object();
        json_object_object_add(f, "Name", json_object_new_string(res->file[i].name));
        json_object_object_add(f, "Format", json_object_new_string(res->file[i].format));
        json_object_object_add(f, "Size", json_object_new_int64((int64_t)res->file[i].size));
        json_object_object_add(f, "Sha256", json_object_new_string(res->file[i].sha256));
        json_object_array_add(files, f);
    }
    json_object_object_add(o, "Files", files);
    if (dmp && m->dmp_warnings != NULL && m->dmp_warnings[0] != '\0')
        json_object_object_add(o, "DmpWarnings", json_object_new_string(m->dmp_warnings));
    for (size_t i = 0; i < m->nextra && i < DUMP_META_EXTRA_MAX; i++) {
        const struct dump_meta_field *f = &m->extra[i];
        if (!f->is_str) {
            json_object_object_add(o, f->name, hex(f->num, true));
            continue;
        }
        char s[256];
        size_t n = f->str_len < sizeof s ? f->str_len : sizeof s - 1;
        for (size_t k = 0; k < n; k++) {
            unsigned char ch = (unsigned char)f->str[k];
            s[k] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
        }
        json_object_object_add(o, f->name, json_object_new_string_len(s, (int)n));
    }
    /* One line, as DRAKVUF writes it (json-c's default, spaced). */
    const char *json = o != NULL ? json_object_to_json_string_ext(o, JSON_C_TO_STRING_SPACED |
                                                                   JSON_C_TO_STRING_NOSLASHESCAPE)
                                 : NULL;
    char *text = json != NULL ? malloc(strlen(json) + 2) : NULL;
    if (text == NULL) {
        json_object_put(o);
        return bm_err_set(err, "out of memory for " DUMP_META_NAME);
    }
    size_t len = (size_t)sprintf(text, "%s\n", json);
    json_object_put(o);
    int rc = 0;
    for (size_t done = 0; done < len;) {
        ssize_t n = write(fd, text + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = bm_err_sys(err, n < 0 ? errno : EIO, "writing " DUMP_META_NAME);
            break;
        }
        done += (size_t)n;
    }
    free(text);
    return rc;
}
