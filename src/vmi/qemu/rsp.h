/* rsp.h - client of QEMU's GDB stub (GDB remote serial protocol).
 *
 * One connection drives all vCPUs of an x86-64 guest: registers of any
 * vCPU, guest-physical memory (QEMU's PhyMemMode), hardware or software
 * breakpoints, continue/interrupt and stop replies, detach. Thread ids are
 * vCPU index + 1 (measured on QEMU 7.2).
 *
 * Every call that talks to the stub waits at most the connection's timeout
 * (rsp_set_timeout). After a protocol error or a timeout waiting for a
 * reply the connection refuses further use: the two ends may disagree about
 * where the byte stream is, so the only safe thing is to reconnect.
 *
 * While the vCPUs run (after rsp_continue) only rsp_interrupt,
 * rsp_poll_stop, rsp_wait_stop and rsp_close are allowed: QEMU stops the VM
 * on any byte it receives while running and drops that byte.
 */
#ifndef BM_VMI_QEMU_RSP_H
#define BM_VMI_QEMU_RSP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define RSP_MAX_VCPUS 256
#define RSP_MAX_BREAKPOINTS 64
/* QEMU answers "E22" to an 'm' packet longer than this. */
#define RSP_MEM_CHUNK 0x800

struct rsp_conn;

/* GDB register numbers of QEMU's i386-64bit.xml, also the index into
 * rsp_regs.r[]. */
enum rsp_reg {
    RSP_REG_RAX, RSP_REG_RBX, RSP_REG_RCX, RSP_REG_RDX,
    RSP_REG_RSI, RSP_REG_RDI, RSP_REG_RBP, RSP_REG_RSP,
    RSP_REG_R8, RSP_REG_R9, RSP_REG_R10, RSP_REG_R11,
    RSP_REG_R12, RSP_REG_R13, RSP_REG_R14, RSP_REG_R15,
    RSP_REG_RIP, RSP_REG_EFLAGS,
    RSP_REG_CS, RSP_REG_SS, RSP_REG_DS, RSP_REG_ES, RSP_REG_FS, RSP_REG_GS,
    RSP_REG_FS_BASE, RSP_REG_GS_BASE, RSP_REG_K_GS_BASE,
    RSP_REG_CR0, RSP_REG_CR2, RSP_REG_CR3, RSP_REG_CR4, RSP_REG_CR8,
    RSP_REG_EFER,
    RSP_REG_COUNT
};

/* The integer registers of one vCPU, every value widened to 64 bits. */
struct rsp_regs {
    union {
        uint64_t r[RSP_REG_COUNT];
        struct {
            uint64_t rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp;
            uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
            uint64_t rip, eflags;
            uint64_t cs, ss, ds, es, fs, gs;
            uint64_t fs_base, gs_base, k_gs_base;
            uint64_t cr0, cr2, cr3, cr4, cr8, efer;
        };
    };
};

enum rsp_stop_kind {
    RSP_STOP_SIGNAL,   /* T or S: the guest stopped (breakpoint, interrupt) */
    RSP_STOP_EXITED,   /* W: the VM is gone (e.g. shut down), exit status */
    RSP_STOP_KILLED,   /* X: the VM is gone, terminating signal */
};

struct rsp_stop {
    enum rsp_stop_kind kind;
    int code;          /* signal (T/S/X) or exit status (W), 0..255 */
    int vcpu;          /* vCPU that stopped, -1 when the stub named none */
    bool watch;        /* a watchpoint fired (watch/rwatch/awatch) */
    uint64_t watch_addr;
};

/* GDB signal numbers in stop replies: a breakpoint or step, an interrupt
 * (ours, or QEMU's stop of the VM from outside). */
#define RSP_SIGINT 2
#define RSP_SIGTRAP 5

enum rsp_bp_kind {
    RSP_BP_SW = 0,     /* Z0: patches guest memory with int3 */
    RSP_BP_HW = 1,     /* Z1: debug registers; guest memory untouched */
};

/* Connect to the stub's unix socket. No bytes are exchanged yet. */
struct rsp_conn *rsp_connect(const char *path, int timeout_ms,
                             struct bm_err *err);
/* Take ownership of a connected stream socket (tests use a socketpair). */
struct rsp_conn *rsp_adopt(int fd, int timeout_ms, struct bm_err *err);
/* Close without detaching. Accepts NULL. */
void rsp_close(struct rsp_conn *c);

int rsp_fd(const struct rsp_conn *c);
void rsp_set_timeout(struct rsp_conn *c, int timeout_ms);

/* qSupported, QStartNoAckMode (falls back to acks), target.xml (must be
 * i386:x86-64; it also enables 'p'), '?' (clears any breakpoints a previous
 * client left), the thread list and vCont?. Leaves the vCPUs stopped. */
int rsp_handshake(struct rsp_conn *c, struct bm_err *err);

int rsp_vcpu_count(const struct rsp_conn *c);
bool rsp_multiprocess(const struct rsp_conn *c);
bool rsp_ack_mode(const struct rsp_conn *c);
bool rsp_running(const struct rsp_conn *c);
/* The stop reported by the latest stop reply (handshake '?' included). */
const struct rsp_stop *rsp_last_stop(const struct rsp_conn *c);

int rsp_read_regs(struct rsp_conn *c, int vcpu, struct rsp_regs *regs,
                  struct bm_err *err);
/* One register by GDB number (only those of at most 8 bytes). */
int rsp_read_reg(struct rsp_conn *c, int vcpu, int regnum, uint64_t *val,
                 struct bm_err *err);

/* Switch 'm'/'M' between guest-virtual (of the selected vCPU) and
 * guest-physical addresses. */
int rsp_set_phys_mode(struct rsp_conn *c, bool phys, struct bm_err *err);
bool rsp_phys_mode(const struct rsp_conn *c);
/* Read/write len bytes in packets of at most RSP_MEM_CHUNK. All or error;
 * *done (may be NULL) tells how many bytes were transferred before it. */
int rsp_read_mem(struct rsp_conn *c, uint64_t addr, void *buf, size_t len,
                 size_t *done, struct bm_err *err);
int rsp_write_mem(struct rsp_conn *c, uint64_t addr, const void *buf,
                  size_t len, size_t *done, struct bm_err *err);

/* Inserting one that is already inserted does nothing. */
int rsp_bp_insert(struct rsp_conn *c, uint64_t addr, enum rsp_bp_kind kind,
                  struct bm_err *err);
int rsp_bp_remove(struct rsp_conn *c, uint64_t addr, enum rsp_bp_kind kind,
                  struct bm_err *err);
/* Tries every remembered breakpoint; forgets them all; first error wins. */
int rsp_bp_remove_all(struct rsp_conn *c, struct bm_err *err);
size_t rsp_bp_count(const struct rsp_conn *c);
/* Whether a breakpoint is inserted (as far as the stub answered). */
bool rsp_bp_has(const struct rsp_conn *c, uint64_t addr, enum rsp_bp_kind kind);

/* One breakpoint change of rsp_bp_batch. */
struct rsp_bp_op {
    uint64_t addr;
    enum rsp_bp_kind kind;
    bool insert;           /* Z (insert) or z (remove) */
};

/* Several breakpoint changes in one write (the stub answers them in
 * order; one round trip instead of n), then, with resume_vcpu >= 0, that
 * vCPU alone continues (vCont;c:TID: the others stay stopped) or, with
 * RSP_RESUME_ALL, every vCPU. The replies are read before returning. The
 * bookkeeping of rsp_bp_count follows what the stub answered; the first
 * refusal is the error. When a resume was asked for, the vCPUs run on
 * return even if a change was refused (rsp_running says so). */
#define RSP_RESUME_NONE (-1)
#define RSP_RESUME_ALL (-2)
#define RSP_BATCH_MAX 8
int rsp_bp_batch(struct rsp_conn *c, const struct rsp_bp_op *ops, size_t n,
                 int resume_vcpu, struct bm_err *err);

/* Resume all vCPUs. Returns once the stub acked; then poll rsp_fd() and
 * call rsp_poll_stop(), or block in rsp_wait_stop(). */
int rsp_continue(struct rsp_conn *c, struct bm_err *err);
/* Single-step one vCPU (others stay stopped) and wait for its stop. A vCPU
 * that is halted (e.g. an AP waiting for SIPI) never completes a step:
 * this then fails after the timeout and the connection is unusable. */
int rsp_step(struct rsp_conn *c, int vcpu, struct rsp_stop *stop,
             struct bm_err *err);
/* Ask running vCPUs to stop (0x03); the stop reply follows. */
int rsp_interrupt(struct rsp_conn *c, struct bm_err *err);
/* The VM's run state changed behind the stub's back: someone else resumed
 * (true) a VM that had stopped. QEMU's stub says nothing then; it sends a
 * stop reply when the VM next stops, and stops the VM on (and drops) the
 * first byte it receives while the VM runs. Sends nothing. */
void rsp_set_running(struct rsp_conn *c, bool running);
/* Non-blocking: 1 and *stop when a complete stop reply arrived, 0 when not
 * yet (a partial reply is kept), -1 on error. */
int rsp_poll_stop(struct rsp_conn *c, struct rsp_stop *stop,
                  struct bm_err *err);
/* As rsp_poll_stop, but waits up to timeout_ms. 0 means timed out. */
int rsp_wait_stop(struct rsp_conn *c, struct rsp_stop *stop, int timeout_ms,
                  struct bm_err *err);

/* Detach: QEMU removes all breakpoints and resumes the guest. */
int rsp_detach(struct rsp_conn *c, struct bm_err *err);

/* Parse a stop reply payload (T, S, W or X). vcpu is thread id - 1.
 * Exposed for fuzzing. */
int rsp_parse_stop(const char *payload, size_t len, struct rsp_stop *stop,
                   struct bm_err *err);

#endif
