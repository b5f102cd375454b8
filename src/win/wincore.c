/* wincore.c - see wincore.h. */
#include "win/wincore.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "win/callscan.h"
#include "win/kernel.h"

#define KERNEL_MIN 0xffff800000000000ull
/* IDT vectors tried, in order: divide error, NMI, breakpoint, page fault, ... */
static const unsigned idt_vectors[] = { 0, 2, 3, 14, 13, 6, 8, 1 };

static uint64_t idt_handler(const uint8_t e[16])
{
    uint64_t lo, hi;
    memcpy(&lo, e, 8);
    memcpy(&hi, e + 8, 8);
    return (lo & 0xffff) | ((lo >> 48) << 16) | ((hi & 0xffffffffull) << 32);
}

static int try_pointer(struct paging *pg, uint64_t ptr, struct winkernel *wk)
{
    if (ptr < KERNEL_MIN)
        return -1;
    struct bm_err e = BM_ERR_INIT;
    return winkernel_find(paging_read_virt_cb, pg, ptr, WINKERNEL_SCAN_MAX, wk, &e);
}

static int discover(const struct vmi *v, unsigned vcpu, struct win_kernel *k,
                    struct winkernel *wk, struct bm_err *err)
{
    memset(k, 0, sizeof *k);
    struct vmi_regs r;
    struct paging pg;
    if (vmi_get_regs(v, vcpu, &r, err) < 0 || vmi_paging(v, &r, r.cr3, &pg, err) < 0)
        return -1;
    k->regs = r;
    if (pg.mode != PAGING_IA32E_4 && pg.mode != PAGING_IA32E_5)
        return bm_err_set(err, "vCPU %u is not in 64-bit long mode (%s paging): no x64 Windows "
                          "kernel running", vcpu, paging_mode_name(pg.mode));
    int found = -1;
    uint64_t idt = 0;
    struct bm_err e = BM_ERR_INIT;
    if (vmi_idt_base(v, vcpu, &idt, &e) == 0) {
        for (size_t i = 0; found < 0 && i < sizeof idt_vectors / sizeof idt_vectors[0]; i++) {
            uint8_t ent[16];
            bm_err_clear(&e);
            if (paging_read_virt(&pg, idt + idt_vectors[i] * 16, ent, sizeof ent, &e) == 0)
                found = try_pointer(&pg, idt_handler(ent), wk);
        }
    }
    if (found < 0)
        found = try_pointer(&pg, r.rip, wk);
    if (found < 0)
        return bm_err_set(err, "no Windows kernel found from vCPU %u (IDT at %#" PRIx64
                          ", RIP %#" PRIx64 "): is this a running x64 Windows guest?",
                          vcpu, idt, r.rip);
    if (!wk->has_rsds)
        return bm_err_set(err, "the kernel image at %#" PRIx64 " has no usable CodeView record: %s",
                          wk->base, wk->rsds_error);
    k->base = wk->base;
    k->size = wk->size;
    snprintf(k->pdb_name, sizeof k->pdb_name, "%s", wk->rsds.pdb_name);
    memcpy(k->guid, wk->rsds.guid, sizeof k->guid);
    k->age = wk->rsds.age;
    snprintf(k->pdb_guid, sizeof k->pdb_guid, "%s-%" PRIu32, k->guid, k->age);
    /* Without symbols, KeBugCheck2 is the call target inside KeBugCheckEx:
     * read it now, decode it only if no profile names KeBugCheck2. */
    bm_err_clear(&e);
    if (winkernel_read_bugcheckex(wk, &k->bcx, &e) == 0)
        k->has_bcx = true;
    else
        snprintf(k->no_call_why, sizeof k->no_call_why, "%s", bm_err_msg(&e));
    return 0;
}

static void scan_bugcheckex(struct win_kernel *k)
{
    struct winkernel_bugcheck bc;
    struct bm_err e = BM_ERR_INIT;
    if (winkernel_scan_bugcheck2(&k->bcx, &bc, &e) == 0) {
        k->kebugcheckex = bc.kebugcheckex;
        k->kebugcheck2 = bc.kebugcheck2;
        k->kebugcheck2_from = "KeBugCheckEx call";
    } else {
        snprintf(k->no_call_why, sizeof k->no_call_why, "%s", bm_err_msg(&e));
    }
}

int win_kernel_discover(const struct vmi *v, unsigned vcpu, struct win_kernel *k,
                        struct bm_err *err)
{
    /* Large (its sections), and the host mode discovers in several threads
     * at once: on the heap. */
    struct winkernel *wk = calloc(1, sizeof *wk);
    if (wk == NULL)
        return bm_err_set(err, "out of memory for kernel discovery");
    int rc = discover(v, vcpu, k, wk, err);
    free(wk);
    return rc;
}

int win_kernel_symbols(const struct vmi *v, struct win_kernel *k, const char *profile,
                       const char *symbols_dir, struct bm_err *err)
{
    (void)v;
    char found[PROFILE_PATH_MAX];
    if (profile == NULL && symbols_dir != NULL) {
        if (profile_find_in_dir(symbols_dir, k->pdb_name, k->pdb_guid, found, sizeof found, err) < 0)
            return -1;
        profile = found;
    }
    if (profile != NULL) {
        if (profile_load(profile, &k->prof, err) < 0)
            return -1;
        if (profile_check_guid(&k->prof, k->pdb_guid, err) < 0)
            return -1;
        k->has_profile = true;
        if (k->prof.KeBugCheck2.present) {
            k->kebugcheck2 = k->base + k->prof.KeBugCheck2.value;
            k->kebugcheck2_from = "profile";
        }
        if (k->prof.KeBugCheckEx.present)
            k->kebugcheckex = k->base + k->prof.KeBugCheckEx.value;
    }
    if (k->kebugcheck2 == 0 && k->has_bcx)
        scan_bugcheckex(k);
    else if (k->kebugcheckex == 0 && k->has_bcx)
        k->kebugcheckex = k->bcx.kebugcheckex;
    if (k->kebugcheck2 == 0)
        return bm_err_set(err, "cannot locate KeBugCheck2 without a profile (-r or "
                          "--symbols-dir): %s", k->no_call_why);
    if (k->kebugcheck2 < k->base || k->kebugcheck2 >= k->base + k->size)
        return bm_err_set(err, "KeBugCheck2 at %#" PRIx64 " lies outside the kernel image",
                          k->kebugcheck2);
    return 0;
}

static int rd64(struct paging *pg, uint64_t va, uint64_t *out)
{
    struct bm_err e = BM_ERR_INIT;
    return paging_read_virt(pg, va, out, 8, &e);
}

#define OFF(f) (k->prof.f.value)
#define HAVE(f) (k->prof.f.present)

int win_current(const struct vmi *v, const struct vmi_regs *regs, const struct win_kernel *k,
                struct win_current *cur, struct bm_err *err)
{
    memset(cur, 0, sizeof *cur);
    if (!k->has_profile)
        return 0;
    struct paging pg;
    if (vmi_paging(v, regs, regs->cr3, &pg, err) < 0)
        return -1;
    /* In kernel mode GS base is the KPCR; in user mode it sits in
     * KernelGSBase until swapgs. */
    uint64_t kpcr = (regs->cs & 3) == 0 ? regs->gs_base : regs->kernel_gs_base;
    if (kpcr < KERNEL_MIN || !HAVE(kpcr_prcb) || !HAVE(kprcb_current_thread))
        return 0;
    uint64_t thread, process = 0;
    if (rd64(&pg, kpcr + OFF(kpcr_prcb) + OFF(kprcb_current_thread), &thread) < 0 ||
        thread < KERNEL_MIN)
        return 0;
    cur->ethread = thread;
    if (HAVE(ethread_cid) && HAVE(client_id_unique_thread) &&
        rd64(&pg, thread + OFF(ethread_cid) + OFF(client_id_unique_thread), &cur->tid) == 0)
        cur->has_tid = true;
    if (HAVE(kthread_apc_state) && HAVE(kapc_state_process))
        rd64(&pg, thread + OFF(kthread_apc_state) + OFF(kapc_state_process), &process);
    if (process < KERNEL_MIN && HAVE(kthread_process))
        rd64(&pg, thread + OFF(kthread_process), &process);
    if (process < KERNEL_MIN)
        return 0;
    cur->eprocess = process;
    if (HAVE(eprocess_pid) && rd64(&pg, process + OFF(eprocess_pid), &cur->pid) == 0)
        cur->has_pid = true;
    if (HAVE(eprocess_ppid) && rd64(&pg, process + OFF(eprocess_ppid), &cur->ppid) == 0)
        cur->has_ppid = true;
    if (HAVE(eprocess_image_file_name)) {
        size_t n = HAVE(eprocess_image_file_name_len) ? OFF(eprocess_image_file_name_len) : 15;
        if (n > 15)
            n = 15; /* ImageFileName is UCHAR[15] in every build */
        struct bm_err e = BM_ERR_INIT;
        if (paging_read_virt(&pg, process + OFF(eprocess_image_file_name), cur->name, n, &e) == 0) {
            cur->name_len = strnlen((const char *)cur->name, n);
            cur->has_name = true;
        }
    }
    /* The PEB lives in the process's user half: walk its own page tables. */
    uint64_t peb, dtb;
    if (HAVE(eprocess_peb) && HAVE(peb_session_id) && HAVE(kprocess_dtb) &&
        rd64(&pg, process + OFF(eprocess_peb), &peb) == 0 && peb != 0 &&
        rd64(&pg, process + (HAVE(eprocess_pcb) ? OFF(eprocess_pcb) : 0) + OFF(kprocess_dtb),
             &dtb) == 0) {
        struct paging upg;
        struct bm_err e = BM_ERR_INIT;
        if (vmi_paging(v, regs, dtb, &upg, &e) == 0 &&
            paging_read_virt(&upg, peb + OFF(peb_session_id), &cur->session, 4, &e) == 0)
            cur->has_session = true;
    }
    return 0;
}
