/* fuzz_lv_reply.c - what libvirt's QEMU pass-through returns
 * (lv_parse_reply: one bounded QMP reply object) and the QEMU command line
 * check of lv_cmdline_names, and GUEST_PANICKED details (lvhost_parse_panic).
 *
 * Input: the reply text as virDomainQemuMonitorCommand hands it over (cut at
 * its first NUL, as a C string), also read as a NUL-separated command line.
 */
#include "fuzz.h"
#include "vmi/qemu/libvirt.h"
#include "vmi/qemu/lvhost.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    FUZZ_CHECK(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';
    json_object *ret = NULL;
    struct bm_err err = BM_ERR_INIT;
    int r = lv_parse_reply(text, strlen(text), "query-status", &ret, &err);
    if (r == 0) {
        FUZZ_CHECK(!err.set);
        json_object_put(ret);
    } else {
        FUZZ_CHECK(r == -1 && ret == NULL && fuzz_err_ok(&err));
    }
    /* Without a place for the value, the same verdict. */
    struct bm_err e2 = BM_ERR_INIT;
    FUZZ_CHECK(lv_parse_reply(text, strlen(text), "x", NULL, &e2) == r);
    struct lvhost_panic p;
    struct bm_err e3 = BM_ERR_INIT;
    if (lvhost_parse_panic(text, &p, &e3) == 0)
        FUZZ_CHECK(p.source != NULL && strnlen(p.action, sizeof p.action) < sizeof p.action);
    else
        FUZZ_CHECK(fuzz_err_ok(&e3));
    (void)lv_cmdline_names((const char *)data, size, "win10");
    (void)lv_cmdline_names((const char *)data, size, "a,b");
    free(text);
    return 0;
}
