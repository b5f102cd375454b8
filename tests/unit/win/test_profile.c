/* Unit tests for win/profile (isf.c, rekall.c, pstream.c): the real
 * Windows ISF files in $SHARED_DIR, the same text as .json and .json.gz,
 * a Rekall fixture, finding files by GUID, GUID checks, and broken input
 * of every kind, each of which must end in a clear error. The expected
 * values were read from the ISF files with Python's json module. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <lzma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "win/profile.h"

struct truth {
    const char *guid;
    uint64_t kebugcheck2, kebugcheckex, kebugcheck, kisystemcall64;
    uint64_t pid, ppid, name, peb, links, cid;
};

static const struct truth truths[] = {
    { "32C1A669D5FFEFD41091F636CFDB6E99", 0x5618c0, 4281744, 4281712, 4355776,
      1088, 1344, 1448, 1360, 1096, 1224 },
    { "8B11040A5928757B11390AC78F6B6925", 2685152, 1783264, 1783232, 1852096,
      736, 992, 1104, 1016, 744, 1592 },
    { "FC57F1C841C2C3F793D57AC134DC0EFA", 5314736, 4156448, 4156416, 4227264,
      1088, 1344, 1448, 1360, 1096, 1144 },
};

static char symdir[512];    /* $SHARED_DIR/symbols */
static char tmpdir[64];

static void isf_path(const char *guid, char *out, size_t len)
{
    snprintf(out, len, "%s/windows/ntkrnlmp.pdb/%s-1.json.xz", symdir, guid);
}

static int group_setup(void **state)
{
    (void)state;
    const char *shared = getenv("SHARED_DIR");
    if (shared == NULL) {
        fprintf(stderr, "SHARED_DIR is not set (run through meson test)\n");
        return -1;
    }
    snprintf(symdir, sizeof symdir, "%s/symbols", shared);
    strcpy(tmpdir, "/tmp/bsodmon-test-profile-XXXXXX");
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* --- helpers --- */

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    if (buf == NULL)
        abort();
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static char *xz_decompress(const char *path, size_t *len)
{
    size_t in_len;
    char *in = read_file(path, &in_len);
    size_t cap = 16u << 20, pos = 0, in_pos = 0;
    uint64_t memlimit = UINT64_MAX;
    char *out = malloc(cap);
    if (out == NULL)
        abort();
    assert_int_equal(lzma_stream_buffer_decode(&memlimit, 0, NULL, (uint8_t *)in, &in_pos,
                                               in_len, (uint8_t *)out, &pos, cap), LZMA_OK);
    free(in);
    *len = pos;
    return out;
}

static void tmp_path(const char *name, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", tmpdir, name);
}

/* Write `text` to a temp file and expect profile_load to fail with a
 * message containing `needle`. */
static void expect_fail_text(const char *name, const void *text, size_t len,
                             const char *needle)
{
    char path[128];
    tmp_path(name, path, sizeof path);
    write_file(path, text, len);
    struct win_profile p;
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(profile_load(path, &p, &e), -1);
    if (strstr(bm_err_msg(&e), needle) == NULL)
        fail_msg("%s: message '%s' lacks '%s'", name, bm_err_msg(&e), needle);
    assert_non_null(strstr(bm_err_msg(&e), path));  /* names the file */
    assert_false(p.KeBugCheck2.present);            /* nothing half-loaded */
}

static void expect_fail(const char *name, const char *text, const char *needle)
{
    expect_fail_text(name, text, strlen(text), needle);
}

static void load_ok(const char *path, struct win_profile *p)
{
    struct bm_err e = BM_ERR_INIT;
    if (profile_load(path, p, &e) != 0)
        fail_msg("%s", bm_err_msg(&e));
}

static void check_truth(const struct win_profile *p, const struct truth *t)
{
    assert_true(p->has_guid);
    assert_string_equal(p->guid, t->guid);
    assert_int_equal(p->age, 1);
    assert_string_equal(p->pdb_name, "ntkrnlmp.pdb");
    assert_true(p->KeBugCheck2.present);
    assert_int_equal(p->KeBugCheck2.value, t->kebugcheck2);
    assert_int_equal(p->KeBugCheckEx.value, t->kebugcheckex);
    assert_int_equal(p->KeBugCheck.value, t->kebugcheck);
    assert_int_equal(p->KiSystemCall64.value, t->kisystemcall64);
    assert_int_equal(p->eprocess_pid.value, t->pid);
    assert_int_equal(p->eprocess_ppid.value, t->ppid);
    assert_int_equal(p->eprocess_image_file_name.value, t->name);
    assert_int_equal(p->eprocess_peb.value, t->peb);
    assert_int_equal(p->eprocess_active_links.value, t->links);
    assert_int_equal(p->ethread_cid.value, t->cid);
    /* Same in every shared build. */
    const struct { const struct win_off *o; uint64_t v; } common[] = {
        { &p->kpcr_self, 24 }, { &p->kpcr_current_prcb, 32 }, { &p->kpcr_prcb, 384 },
        { &p->kpcr_idt_base, 56 }, { &p->kprcb_current_thread, 8 },
        { &p->kthread_apc_state, 152 }, { &p->kthread_process, 544 },
        { &p->kapc_state_process, 32 }, { &p->client_id_unique_process, 0 },
        { &p->client_id_unique_thread, 8 }, { &p->eprocess_pcb, 0 },
        { &p->kprocess_dtb, 40 }, { &p->peb_session_id, 704 },
        { &p->eprocess_image_file_name_len, 15 },
    };
    for (size_t i = 0; i < sizeof common / sizeof common[0]; i++) {
        assert_true(common[i].o->present);
        assert_int_equal(common[i].o->value, common[i].v);
    }
}

/* The triage offsets and symbols (ISF tables; the Rekall fixture predates
 * them and gives them absent, which the analysis handles). */
static void check_triage(const struct win_profile *p)
{
    const struct { const struct win_off *o; uint64_t v; } common[] = {
        { &p->ldr_links, 0 }, { &p->ldr_dll_base, 0x30 }, { &p->ldr_size_of_image, 0x40 },
        { &p->ldr_base_dll_name, 0x58 }, { &p->list_entry_flink, 0 },
        { &p->unicode_string_length, 0 }, { &p->unicode_string_buffer, 8 },
        { &p->ktrap_frame_rip, 0x168 }, { &p->ktrap_frame_rsp, 0x180 },
        { &p->exception_record_code, 0 }, { &p->exception_record_address, 0x10 },
        { &p->context_rip, 0xF8 }, { &p->context_rsp, 0x98 },
    };
    for (size_t i = 0; i < sizeof common / sizeof common[0]; i++) {
        assert_true(common[i].o->present);
        assert_int_equal(common[i].o->value, common[i].v);
    }
    assert_true(p->PsLoadedModuleList.present && p->PsLoadedModuleList.value != 0);
    /* _KLDR_DATA_TABLE_ENTRY is absent from the Windows 7 and 8.1 tables. */
    if (p->kldr_dll_base.present)
        assert_int_equal(p->kldr_dll_base.value, 0x30);
}

/* --- ISF --- */

static void test_shared_isf_xz(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof truths / sizeof truths[0]; i++) {
        char path[600];
        struct win_profile p;
        isf_path(truths[i].guid, path, sizeof path);
        load_ok(path, &p);
        assert_string_equal(p.format, "Volatility 3 ISF");
        check_truth(&p, &truths[i]);
        check_triage(&p);
    }
}

static void test_isf_plain_and_gzip(void **state)
{
    (void)state;
    char src[600], json[128], gz[128];
    isf_path(truths[0].guid, src, sizeof src);
    size_t len;
    char *text = xz_decompress(src, &len);
    tmp_path("plain.json", json, sizeof json);
    write_file(json, text, len);
    /* gzip, named .bin: the format comes from the magic, not the name. */
    tmp_path("gzipped.bin", gz, sizeof gz);
    gzFile g = gzopen(gz, "wb9");
    assert_non_null(g);
    assert_int_equal(gzwrite(g, text, (unsigned)len), (int)len);
    gzclose(g);
    struct win_profile p;
    load_ok(json, &p);
    check_truth(&p, &truths[0]);
    load_ok(gz, &p);
    check_truth(&p, &truths[0]);

    /* Truncated halfway: plain and gzip. */
    expect_fail_text("half.json", text, len / 2, "truncated");
    size_t gz_len;
    char *gzdata = read_file(gz, &gz_len);
    expect_fail_text("half.json.gz", gzdata, gz_len / 2, "truncated");
    /* Damaged CRC in the gzip trailer: zlib's own check catches it. */
    memset(gzdata + gz_len - 8, 0x55, 4);
    expect_fail_text("crc.json.gz", gzdata, gz_len, "gzip");
    /* Damaged body: whichever notices first (zlib or the JSON splitter)
     * names the file. */
    memset(gzdata + gz_len / 2, 0x55, 64);
    expect_fail_text("bad.json.gz", gzdata, gz_len, "bad.json.gz");
    free(gzdata);
    /* With a UTF-8 byte-order mark in front. */
    char *bom = malloc(len + 3);
    if (bom == NULL)
        abort();
    memcpy(bom, "\xef\xbb\xbf", 3);
    memcpy(bom + 3, text, len);
    write_file(json, bom, len + 3);
    load_ok(json, &p);
    check_truth(&p, &truths[0]);
    free(bom);
    free(text);
}

static void test_xz_damaged(void **state)
{
    (void)state;
    char src[600];
    isf_path(truths[1].guid, src, sizeof src);
    size_t len;
    char *data = read_file(src, &len);
    expect_fail_text("trunc.json.xz", data, len / 3, "truncated");
    expect_fail_text("tiny.json.xz", data, 8, "xz");
    memset(data + len / 2, 0xa5, 256);
    expect_fail_text("corrupt.json.xz", data, len, "corrupt");
    free(data);
}

static void test_isf_minimal_and_missing(void **state)
{
    (void)state;
    /* Only some values present; the rest stay absent. No metadata. */
    const char *t =
        "{\"symbols\": {\"A\": {\"address\": 1}, \"KeBugCheck2\": {\"address\": 4096},"
        " \"K\\\"x\": {\"address\": 2}},\n \"base_types\": {\"x\": [1, 2, {\"y\": null}]},"
        " \"user_types\": {\"_EPROCESS\": {\"fields\": {\"UniqueProcessId\": "
        "{\"offset\": 8, \"type\": {\"kind\": \"pointer\"}}, \"ImageFileName\": "
        "{\"offset\": 16, \"type\": {\"kind\": \"struct\", \"name\": \"X\"}}},"
        " \"kind\": \"struct\", \"size\": 64}, \"_PEB\": {\"fields\": {}}}}";
    char path[128];
    tmp_path("min.json", path, sizeof path);
    write_file(path, t, strlen(t));
    struct win_profile p;
    load_ok(path, &p);
    assert_false(p.has_guid);
    assert_true(p.KeBugCheck2.present);
    assert_int_equal(p.KeBugCheck2.value, 4096);
    assert_false(p.KeBugCheckEx.present);
    assert_int_equal(p.eprocess_pid.value, 8);
    assert_true(p.eprocess_image_file_name.present);
    assert_false(p.eprocess_image_file_name_len.present);   /* not an array */
    assert_false(p.peb_session_id.present);
    assert_false(p.kpcr_self.present);
}

static void test_isf_wrong_types(void **state)
{
    (void)state;
    expect_fail("off.json", "{\"user_types\": {\"_EPROCESS\": {\"fields\": "
                "{\"UniqueProcessId\": {\"offset\": \"x\"}}}}}",
                "user_types._EPROCESS.fields.UniqueProcessId.offset is missing or not an integer");
    expect_fail("neg.json", "{\"user_types\": {\"_EPROCESS\": {\"fields\": "
                "{\"Peb\": {\"offset\": -8}}}}}", "out of range");
    expect_fail("addr.json", "{\"symbols\": {\"KeBugCheck2\": {\"address\": \"x\"}}}",
                "symbols.KeBugCheck2.address");
    expect_fail("addr2.json", "{\"symbols\": {\"KeBugCheck2\": [1]}}", "not an object");
    expect_fail("fields.json", "{\"user_types\": {\"_KPCR\": {\"fields\": 3}}}",
                "no \"fields\"");
    expect_fail("count.json", "{\"user_types\": {\"_EPROCESS\": {\"fields\": "
                "{\"ImageFileName\": {\"offset\": 8, \"type\": {\"kind\": \"array\", "
                "\"count\": 99999}}}}}}", "count");
    expect_fail("guid.json", "{\"metadata\": {\"windows\": {\"pdb\": {\"GUID\": \"xyz\","
                " \"age\": 1}}}, \"symbols\": {}}", "not 32 hex digits");
    expect_fail("age.json", "{\"metadata\": {\"windows\": {\"pdb\": {\"GUID\": "
                "\"32C1A669D5FFEFD41091F636CFDB6E99\", \"age\": \"1\"}}}, \"symbols\": {}}",
                "metadata.windows.pdb.age");
    expect_fail("badval.json", "{\"symbols\": {\"KeBugCheck2\": {\"address\": 12x}}}",
                "not valid JSON");
}

static void test_isf_structure_errors(void **state)
{
    (void)state;
    expect_fail("empty.json", "", "is empty");
    expect_fail("spaces.json", "  \n\t ", "is empty");
    expect_fail("text.json", "hello world", "not a symbol profile");
    expect_fail("zip.json", "PK\x03\x04zipzipzip", "found bytes 50 4b 03 04");
    expect_fail("bz2.json", "BZh91AY&SY", "not a symbol profile");
    expect_fail("array.json", "[1, 2]", "expected a JSON object");
    expect_fail("noisf.json", "{\"a\": 1, \"b\": {\"c\": [true, false, null]}}",
                "not a Volatility 3 ISF");
    expect_fail("trunc.json", "{\"symbols\": {\"KeBugCheck2\": {\"addr", "truncated");
    expect_fail("trunc2.json", "{\"symbols\": {\"KeBugCheck2\": {\"address\": 5}", "truncated");
    expect_fail("trail.json", "{\"symbols\": {}} x", "data after the top-level");
    expect_fail("trail2.json", "{\"symbols\": {}} {}", "data after the top-level");
    expect_fail("mismatch.json", "{\"symbols\": [}", "mismatched");
    expect_fail("unbal.json", "{\"symbols\": {}}}", "unbalanced closing bracket");
    expect_fail("comma.json", "{\"symbols\": {\"A\": {\"address\": 1},}}", "trailing comma");
    expect_fail("colon.json", "{\"symbols\" {}}", "expected ':'");
    expect_fail("colon2.json", "{\"symbols\": {\"A\" 1}}", "expected ':'");
    expect_fail("twoval.json", "{\"symbols\": {} {}}", "expected ',' or '}'");
    expect_fail("noval.json", "{\"symbols\": }", "member without a value");
    expect_fail("noname.json", "{\"symbols\": {1: 2}}", "expected a member name");
    expect_fail("ctrl.json", "{\"symbols\": {\"A\x01\": 1}}", "control character");
    expect_fail("garbage.json", "{\"symbols\": {\"A\": #}}", "unexpected character");
    expect_fail("rekallish.json", "{\"symbols\": {}, \"$X\": 1}", "'$'");
}

static void test_isf_huge_nesting(void **state)
{
    (void)state;
    size_t n = 100000;
    char *t = malloc(n * 2 + 64);
    if (t == NULL)
        abort();
    size_t k = (size_t)sprintf(t, "{\"symbols\": ");
    memset(t + k, '[', n);
    memset(t + k + n, ']', n);
    strcpy(t + k + 2 * n, "}");
    expect_fail_text("deep.json", t, strlen(t), "deeper than 64");
    /* Deep inside a wanted member too. */
    k = (size_t)sprintf(t, "{\"symbols\": {\"KeBugCheck2\": ");
    memset(t + k, '[', 1000);
    t[k + 1000] = 0;
    expect_fail_text("deep2.json", t, strlen(t), "deeper than 64");
    free(t);
}

static void test_isf_member_too_big(void **state)
{
    (void)state;
    size_t n = (5u << 20);
    char *t = malloc(n + 128);
    if (t == NULL)
        abort();
    size_t k = (size_t)sprintf(t, "{\"user_types\": {\"_EPROCESS\": {\"x\": \"");
    memset(t + k, 'a', n);
    strcpy(t + k + n, "\"}}}");
    expect_fail_text("big.json", t, strlen(t), "larger than");
    /* The same size in a member nobody wants is just skipped. */
    memcpy(strstr(t, "_EPROCESS"), "_XPROCESS", 9);
    char path[128];
    tmp_path("bigskip.json", path, sizeof path);
    write_file(path, t, strlen(t));
    struct win_profile p;
    load_ok(path, &p);
    free(t);
}

static void test_missing_file(void **state)
{
    (void)state;
    struct win_profile p;
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(profile_load("/nonexistent/x.json.xz", &p, &e), -1);
    assert_non_null(strstr(bm_err_msg(&e), "cannot open symbol profile /nonexistent/x.json.xz"));
}

/* --- Rekall --- */

static void test_rekall_fixture(void **state)
{
    (void)state;
    char path[600];
    snprintf(path, sizeof path, "%s/win/rekall-ntkrnlmp-32C1A669.json", getenv("TESTDATA_DIR"));
    struct win_profile p;
    load_ok(path, &p);
    assert_string_equal(p.format, "Rekall");
    check_truth(&p, &truths[0]);
    assert_string_equal(p.guid_age, "32C1A669D5FFEFD41091F636CFDB6E991");

    /* The same profile gzip-compressed. */
    size_t len;
    char *text = read_file(path, &len);
    char gz[128];
    tmp_path("rekall.json.gz", gz, sizeof gz);
    gzFile g = gzopen(gz, "wb");
    gzwrite(g, text, (unsigned)len);
    gzclose(g);
    load_ok(gz, &p);
    check_truth(&p, &truths[0]);
    expect_fail_text("rekall-trunc.json", text, len - 20, "truncated");
    free(text);
}

static void test_rekall_errors(void **state)
{
    (void)state;
    expect_fail("rk1.json", "{\"$STRUCTS\": {\"_EPROCESS\": [8, {\"Peb\": [\"x\", "
                "[\"Pointer\", {}]]}]}}", "$STRUCTS._EPROCESS.Peb");
    expect_fail("rk2.json", "{\"$STRUCTS\": {\"_EPROCESS\": {\"Peb\": 1}}}",
                "$STRUCTS._EPROCESS is not [size, {fields}]");
    expect_fail("rk3.json", "{\"$FUNCTIONS\": {\"KeBugCheck2\": \"0x10\"}}",
                "$FUNCTIONS.KeBugCheck2 is not an RVA");
    expect_fail("rk4.json", "{\"$METADATA\": {\"GUID_AGE\": \"nope\"}, \"$CONSTANTS\": {}}",
                "GUID_AGE 'nope'");
    expect_fail("rk5.json", "{\"$FOO\": 1}", "not a Rekall profile");
    expect_fail("rk6.json", "{\"$CONSTANTS\": {} ]", "not valid JSON");
    expect_fail("rk7.json", "{\"$CONSTANTS\": {}} x", "data after");
    expect_fail("rk8.json", "{\"$STRUCTS\": {\"_EPROCESS\": [8, {\"ImageFileName\": "
                "[1448, [\"Array\", {\"count\": \"15\"}]]}]}}", "array count");
    size_t n = 5000;
    char *t = malloc(n + 32);
    if (t == NULL)
        abort();
    size_t k = (size_t)sprintf(t, "{\"$CONSTANTS\": ");
    memset(t + k, '[', n);
    t[k + n] = 0;
    expect_fail_text("rk-deep.json", t, strlen(t), "not valid JSON");
    free(t);
}

static void test_rekall_decimal_age(void **state)
{
    (void)state;
    /* drakpdb writes the age in decimal, Rekall in hex: "...10" is age 16
     * for one and 10 for the other; both are accepted. */
    const char *t = "{\"$METADATA\": {\"GUID_AGE\": \"32C1A669D5FFEFD41091F636CFDB6E9910\"},"
                    " \"$CONSTANTS\": {\"KeBugCheck2\": 5}}";
    char path[128];
    tmp_path("rk-age.json", path, sizeof path);
    write_file(path, t, strlen(t));
    struct win_profile p;
    load_ok(path, &p);
    assert_int_equal(p.age, 16);
    assert_int_equal(p.age_alt, 10);
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(profile_check_guid(&p, "32C1A669D5FFEFD41091F636CFDB6E9910", &e), 0);
    assert_int_equal(profile_check_guid(&p, "32C1A669D5FFEFD41091F636CFDB6E99-10", &e), 0);
    assert_int_equal(profile_check_guid(&p, "32C1A669D5FFEFD41091F636CFDB6E99-11", &e), -1);
}

/* --- finding and checking --- */

static void test_find_in_dir(void **state)
{
    (void)state;
    char out[600], want[600];
    struct bm_err e = BM_ERR_INIT;
    isf_path(truths[0].guid, want, sizeof want);
    /* Symbol-server form, Volatility form, lower case. */
    assert_int_equal(profile_find_in_dir(symdir, "ntkrnlmp.pdb",
                                         "32C1A669D5FFEFD41091F636CFDB6E991", out,
                                         sizeof out, &e), 0);
    assert_string_equal(out, want);
    assert_int_equal(profile_find_in_dir(symdir, "ntkrnlmp.pdb",
                                         "32c1a669d5ffefd41091f636cfdb6e99-1", out,
                                         sizeof out, &e), 0);
    assert_string_equal(out, want);
    /* A full PDB path as some RSDS records carry. */
    assert_int_equal(profile_find_in_dir(symdir, "d:\\os\\bin\\ntkrnlmp.pdb",
                                         "8B11040A5928757B11390AC78F6B69251", out,
                                         sizeof out, &e), 0);
    /* DIR = .../windows and DIR = the PDB's own folder. */
    char sub[600];
    snprintf(sub, sizeof sub, "%s/windows", symdir);
    assert_int_equal(profile_find_in_dir(sub, "ntkrnlmp.pdb",
                                         "FC57F1C841C2C3F793D57AC134DC0EFA1", out,
                                         sizeof out, &e), 0);
    snprintf(sub, sizeof sub, "%s/windows/ntkrnlmp.pdb", symdir);
    assert_int_equal(profile_find_in_dir(sub, "ntkrnlmp.pdb",
                                         "FC57F1C841C2C3F793D57AC134DC0EFA1", out,
                                         sizeof out, &e), 0);
    /* Not there: the message names the file looked for. */
    assert_int_equal(profile_find_in_dir(symdir, "ntkrnlmp.pdb",
                                         "00000000000000000000000000000000" "2", out,
                                         sizeof out, &e), -1);
    assert_non_null(strstr(bm_err_msg(&e),
                           "windows/ntkrnlmp.pdb/00000000000000000000000000000000-2.json.xz"));
    /* Too small an output buffer. */
    bm_err_clear(&e);
    assert_int_equal(profile_find_in_dir(symdir, "ntkrnlmp.pdb",
                                         "32C1A669D5FFEFD41091F636CFDB6E991", out, 10, &e), -1);
}

static void test_find_refuses_bad_names(void **state)
{
    (void)state;
    char out[600];
    static const char *const bad[] = { "..", "", "a/", "nt*.pdb", "x\ny.pdb", ".hidden",
                                       "ntkrnlmp.pdb/.." };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct bm_err e = BM_ERR_INIT;
        assert_int_equal(profile_find_in_dir(symdir, bad[i],
                                             "32C1A669D5FFEFD41091F636CFDB6E991", out,
                                             sizeof out, &e), -1);
        assert_non_null(strstr(bm_err_msg(&e), "not a plain file name"));
    }
    static const char *const bad_ga[] = { "", "32C1", "32C1A669D5FFEFD41091F636CFDB6E99",
                                          "32C1A669D5FFEFD41091F636CFDB6E99-",
                                          "32C1A669D5FFEFD41091F636CFDB6E99-x",
                                          "Z2C1A669D5FFEFD41091F636CFDB6E991",
                                          "32C1A669D5FFEFD41091F636CFDB6E99-1-",
                                          "32C1A669D5FFEFD41091F636CFDB6E99FFFFFFFFF" };
    for (size_t i = 0; i < sizeof bad_ga / sizeof bad_ga[0]; i++) {
        struct bm_err e = BM_ERR_INIT;
        assert_int_equal(profile_find_in_dir(symdir, "ntkrnlmp.pdb", bad_ga[i], out,
                                             sizeof out, &e), -1);
        assert_non_null(strstr(bm_err_msg(&e), "is not a PDB GUID and age"));
    }
}

static void test_check_guid(void **state)
{
    (void)state;
    char path[600];
    isf_path(truths[1].guid, path, sizeof path);
    struct win_profile p;
    load_ok(path, &p);
    struct bm_err e = BM_ERR_INIT;
    assert_int_equal(profile_check_guid(&p, "8B11040A5928757B11390AC78F6B69251", &e), 0);
    assert_int_equal(profile_check_guid(&p, "8b11040a5928757b11390ac78f6b6925-1", &e), 0);
    assert_int_equal(profile_check_guid(&p, "32C1A669D5FFEFD41091F636CFDB6E991", &e), -1);
    assert_non_null(strstr(bm_err_msg(&e), "8B11040A5928757B11390AC78F6B6925"));
    assert_non_null(strstr(bm_err_msg(&e), "32C1A669D5FFEFD41091F636CFDB6E99"));
    assert_non_null(strstr(bm_err_msg(&e), "different kernel"));
    bm_err_clear(&e);
    assert_int_equal(profile_check_guid(&p, "8B11040A5928757B11390AC78F6B69252", &e), -1);
    bm_err_clear(&e);
    assert_int_equal(profile_check_guid(&p, "garbage", &e), -1);
    /* A profile without identity cannot be checked and passes. */
    p.has_guid = false;
    bm_err_clear(&e);
    assert_int_equal(profile_check_guid(&p, "32C1A669D5FFEFD41091F636CFDB6E991", &e), 0);
}

static void test_guid_age_format(void **state)
{
    (void)state;
    char s[PROFILE_GUID_AGE_MAX], g[33];
    uint32_t age;
    struct bm_err e = BM_ERR_INIT;
    profile_format_guid_age("32C1A669D5FFEFD41091F636CFDB6E99", 0x1a, s, sizeof s);
    assert_string_equal(s, "32C1A669D5FFEFD41091F636CFDB6E991A");
    assert_int_equal(profile_parse_guid_age(s, g, &age, &e), 0);
    assert_int_equal(age, 0x1a);
    assert_int_equal(profile_parse_guid_age("32C1A669D5FFEFD41091F636CFDB6E99-26", g, &age, &e), 0);
    assert_int_equal(age, 26);
    assert_string_equal(g, "32C1A669D5FFEFD41091F636CFDB6E99");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_isf_xz),
        cmocka_unit_test(test_isf_plain_and_gzip),
        cmocka_unit_test(test_xz_damaged),
        cmocka_unit_test(test_isf_minimal_and_missing),
        cmocka_unit_test(test_isf_wrong_types),
        cmocka_unit_test(test_isf_structure_errors),
        cmocka_unit_test(test_isf_huge_nesting),
        cmocka_unit_test(test_isf_member_too_big),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_rekall_fixture),
        cmocka_unit_test(test_rekall_errors),
        cmocka_unit_test(test_rekall_decimal_age),
        cmocka_unit_test(test_find_in_dir),
        cmocka_unit_test(test_find_refuses_bad_names),
        cmocka_unit_test(test_check_guid),
        cmocka_unit_test(test_guid_age_format),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
