/* example.h - the spec's example event, shared by the output tests. */
#ifndef BM_TEST_OUTPUT_EXAMPLE_H
#define BM_TEST_OUTPUT_EXAMPLE_H

#include <string.h>

#include "output/output.h"

#define EX_BUGCHECK_NAME "PAGE_FAULT_IN_NONPAGED_AREA"

/* BugCheck fields of spec/bsodmon-plugin.md's example; `f` has 6 slots. */
static inline void example_fields(struct output_field *f)
{
    f[0] = output_hex("BugCheckCode", 0x50);
    f[1] = output_str("BugCheckName", EX_BUGCHECK_NAME, strlen(EX_BUGCHECK_NAME));
    f[2] = output_hex("BugCheckParameter1", 0xfffff80012345678ULL);
    f[3] = output_hex("BugCheckParameter2", 0x0);
    f[4] = output_hex("BugCheckParameter3", 0xfffff80087654321ULL);
    f[5] = output_hex("BugCheckParameter4", 0x2);
}

/* The example without standard fields (as in spec/bsodmon-plugin.md). */
static inline void example_bare(struct output_event *ev, struct output_field *f)
{
    memset(ev, 0, sizeof *ev);
    example_fields(f);
    ev->plugin = "bsodmon";
    ev->timestamp.tv_sec = 1234567890;
    ev->timestamp.tv_usec = 123456;
    ev->vcpu = 0;
    ev->cr3 = 456789;
    ev->fields = f;
    ev->nfields = 6;
}

/* ... and with every standard field: PID 1234, PPID 456, TID 789, UserId 1,
 * ProcessName "evil.exe", Method "KeBugCheck2", EventUID 0x1. */
static inline void example_full(struct output_event *ev, struct output_field *f)
{
    example_bare(ev, f);
    ev->has_pid = ev->has_ppid = ev->has_tid = ev->has_user_id = true;
    ev->pid = 1234;
    ev->ppid = 456;
    ev->tid = 789;
    ev->user_id = 1;
    output_set_process_name(ev, "evil.exe", 8);
    ev->method = "KeBugCheck2";
    ev->has_event_uid = true;
    ev->event_uid = 0x1;
}

#endif
