/* entry.S - PVH entry, switch to long mode, AP trampoline, and the glue
 * between Windows' x64 calling convention (what KeBugCheck2 receives) and
 * this kernel's C code (System V). */

#define MSR_EFER 0xc0000080

/* PVH ELF note: QEMU boots an ELF64 that carries XEN_ELFNOTE_PHYS32_ENTRY.
 * p_align of the note segment must be 4 (measured). */
        .section .note.Xen, "a", @note
        .balign 4
        .long 4, 8, 18
        .asciz "Xen"
        .balign 4
        .quad pvh_start32
        .balign 4

        .section .text.boot, "ax"
        .code32
        .globl pvh_start32
pvh_start32:
        cli
        cld
        mov     %ebx, %edi              /* start_info, kept for kmain */
        lgdt    boot_gdtr
        /* Identity-map 0-4 GiB with 2 MiB pages in boot_pd[4][512]. */
        xor     %ecx, %ecx
1:      mov     %ecx, %eax
        shl     $21, %eax
        or      $0x83, %eax             /* present, writable, 2 MiB */
        mov     %eax, boot_pd(,%ecx,8)
        mov     %ecx, %eax
        shr     $11, %eax               /* high dword: (i << 21) >> 32 */
        mov     %eax, boot_pd+4(,%ecx,8)
        inc     %ecx
        cmp     $2048, %ecx
        jne     1b
        xor     %ecx, %ecx
2:      mov     %ecx, %eax
        shl     $12, %eax
        add     $boot_pd, %eax
        or      $0x3, %eax
        mov     %eax, boot_pdpt(,%ecx,8)
        inc     %ecx
        cmp     $4, %ecx
        jne     2b
        mov     $boot_pdpt, %eax
        or      $0x3, %eax
        mov     %eax, boot_pml4
        mov     $boot_pml4, %eax
        mov     %eax, %cr3
        mov     %cr4, %eax
        or      $0x20, %eax             /* PAE */
        mov     %eax, %cr4
        mov     $MSR_EFER, %ecx
        rdmsr
        or      $0x100, %eax            /* LME */
        wrmsr
        mov     %cr0, %eax
        or      $0x80000001, %eax       /* PG | PE */
        mov     %eax, %cr0
        ljmp    $0x08, $long_entry

        .code64
long_entry:
        mov     $0x10, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        xor     %eax, %eax
        mov     %ax, %fs
        mov     %ax, %gs
        lea     bsp_stack_top(%rip), %rsp
        mov     %edi, %edi
        call    kmain
3:      cli
        hlt
        jmp     3b

/* AP trampoline, copied to 0x8000 by the BSP; the SIPI vector 0x08 starts
 * the AP in real mode at 0800:0000. Slots at its end are filled in first. */
#define TR(x) (0x8000 + (x) - ap_tramp_start)
        .globl ap_tramp_start, ap_tramp_end, ap_tramp_cr3, ap_tramp_stack, ap_tramp_entry
        .code16
ap_tramp_start:
        cli
        mov     %cs, %ax
        mov     %ax, %ds
        lgdtl   (ap_tramp_gdtr - ap_tramp_start)
        mov     %cr0, %eax
        or      $1, %eax
        mov     %eax, %cr0
        ljmpl   $0x08, $TR(ap_tramp_32)
        .code32
ap_tramp_32:
        mov     $0x10, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        mov     TR(ap_tramp_cr3), %eax
        mov     %eax, %cr3
        mov     %cr4, %eax
        or      $0x20, %eax
        mov     %eax, %cr4
        mov     $MSR_EFER, %ecx
        rdmsr
        or      $0x100, %eax
        wrmsr
        mov     %cr0, %eax
        or      $0x80000000, %eax
        mov     %eax, %cr0
        ljmp    $0x18, $TR(ap_tramp_64)
        .code64
ap_tramp_64:
        mov     TR(ap_tramp_stack), %rsp
        mov     TR(ap_tramp_entry), %rax
        call    *%rax
4:      cli
        hlt
        jmp     4b
        .balign 8
ap_tramp_gdt:
        .quad 0
        .quad 0x00cf9a000000ffff        /* 0x08 code32 */
        .quad 0x00cf92000000ffff        /* 0x10 data */
        .quad 0x00af9a000000ffff        /* 0x18 code64 */
ap_tramp_gdtr:
        .word 4 * 8 - 1
        .long TR(ap_tramp_gdt)
        .balign 8
ap_tramp_cr3:   .quad 0
ap_tramp_stack: .quad 0
ap_tramp_entry: .quad 0
ap_tramp_end:

        .text
/* Entered through the image's KeBugCheck2 (jmp [rip]) with Windows' x64
 * arguments: RCX code, RDX/R8/R9 P1..P3, P4 at [rsp+0x28], the trap frame at
 * [rsp+0x30]. Never returns. */
        .globl kebugcheck2_entry
kebugcheck2_entry:
        mov     %rcx, %rdi
        mov     %rdx, %rsi
        mov     %r8, %rdx
        mov     %r9, %rcx
        mov     0x28(%rsp), %r8
        mov     0x30(%rsp), %r9
        and     $-16, %rsp
        call    bugcheck2_handler
5:      cli
        hlt
        jmp     5b

/* The image's RtlCaptureContext jumps here: RtlCaptureContext(RCX =
 * CONTEXT *), Windows x64 semantics: the caller's registers, Rsp as after
 * the return, Rip = the return address; every register preserved. Offsets
 * are the x64 CONTEXT's (architectural, the same in every build). */
        .globl rtl_capture_context
rtl_capture_context:
        pushfq
        popq    0x44(%rcx)              /* EFlags (8 bytes: Dr0 rewritten below) */
        mov     %rax, 0x78(%rcx)
        mov     %rcx, 0x80(%rcx)
        mov     %rdx, 0x88(%rcx)
        mov     %rbx, 0x90(%rcx)
        lea     8(%rsp), %rax
        mov     %rax, 0x98(%rcx)        /* Rsp */
        mov     %rbp, 0xa0(%rcx)
        mov     %rsi, 0xa8(%rcx)
        mov     %rdi, 0xb0(%rcx)
        mov     %r8, 0xb8(%rcx)
        mov     %r9, 0xc0(%rcx)
        mov     %r10, 0xc8(%rcx)
        mov     %r11, 0xd0(%rcx)
        mov     %r12, 0xd8(%rcx)
        mov     %r13, 0xe0(%rcx)
        mov     %r14, 0xe8(%rcx)
        mov     %r15, 0xf0(%rcx)
        mov     (%rsp), %rax
        mov     %rax, 0xf8(%rcx)        /* Rip */
        movl    $0x10000f, 0x30(%rcx)   /* CONTEXT_AMD64 | CONTROL | INTEGER | SEGMENTS | FLOATING_POINT */
        movl    $0x1f80, 0x34(%rcx)     /* MxCsr (reset value; no SSE state here) */
        movw    $0x27f, 0x100(%rcx)     /* FltSave.ControlWord */
        movl    $0x1f80, 0x118(%rcx)    /* FltSave.MxCsr = MxCsr */
        mov     %cs, %ax
        mov     %ax, 0x38(%rcx)
        mov     %ds, %ax
        mov     %ax, 0x3a(%rcx)
        mov     %es, %ax
        mov     %ax, 0x3c(%rcx)
        mov     %fs, %ax
        mov     %ax, 0x3e(%rcx)
        mov     %gs, %ax
        mov     %ax, 0x40(%rcx)
        mov     %ss, %ax
        mov     %ax, 0x42(%rcx)
        movq    $0, 0x48(%rcx)          /* Dr0 */
        mov     0x78(%rcx), %rax
        ret

/* The image's KiSaveProcessorControlState jumps here (RCX = &Prcb->
 * ProcessorState, Windows x64 ABI): save_control_state in C, keeping RSI
 * and RDI, which that ABI preserves and System V does not. */
        .globl ki_save_control_state
ki_save_control_state:
        push    %rsi
        push    %rdi
        mov     %rcx, %rdi
        sub     $8, %rsp
        call    save_control_state
        add     $8, %rsp
        pop     %rdi
        pop     %rsi
        ret

/* call_ms_abi(target, code, p1, p2, p3, p4): call a Windows x64 function
 * with five arguments (P4 on the stack) and a NULL sixth (trap frame). */
        .globl call_ms_abi
call_ms_abi:
        push    %rbp
        mov     %rsp, %rbp
        sub     $0x30, %rsp
        mov     %r9, 0x20(%rsp)
        movq    $0, 0x28(%rsp)
        mov     %rdi, %rax
        mov     %r8, %r9
        mov     %rcx, %r8
        mov     %rsi, %rcx
        call    *%rax
        leave
        ret

/* run_on_stack(top, fn): go on in fn() (which never returns) with the stack
 * reset to top: the next of many bug checks in a row starts from a fresh
 * stack instead of nesting in the last one's frames (16 KiB hold ~180). */
        .globl run_on_stack
run_on_stack:
        mov     %rdi, %rsp
        and     $-16, %rsp
        call    *%rsi
        ud2

/* Interrupt entry: the image's thunk pushed the vector and jumped here. */
        .globl isr_common
isr_common:
        push    %rax
        push    %rcx
        push    %rdx
        push    %rsi
        push    %rdi
        push    %r8
        push    %r9
        push    %r10
        push    %r11
        push    %rbx
        mov     %rsp, %rsi
        mov     10*8(%rsp), %rdi        /* vector */
        mov     %rsp, %rbx
        and     $-16, %rsp
        call    isr_dispatch
        mov     %rbx, %rsp
        pop     %rbx
        pop     %r11
        pop     %r10
        pop     %r9
        pop     %r8
        pop     %rdi
        pop     %rsi
        pop     %rdx
        pop     %rcx
        pop     %rax
        add     $8, %rsp                /* vector */
        iretq

/* Reload CS after loading the Windows-like GDT (0x10 code, 0x18 data). */
        .globl reload_segments
reload_segments:
        mov     $0x18, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        pop     %rax
        push    $0x10
        push    %rax
        lretq

        .section .data
        .balign 8
boot_gdt:
        .quad 0
        .quad 0x00af9a000000ffff        /* 0x08 code64 */
        .quad 0x00cf92000000ffff        /* 0x10 data */
boot_gdtr:
        .word 3 * 8 - 1
        .quad boot_gdt

        .section .bss
        .balign 4096
boot_pml4:      .skip 4096
boot_pdpt:      .skip 4096
boot_pd:        .skip 4 * 4096
        .balign 16
        .skip 16384
bsp_stack_top:
        .section .note.GNU-stack, "", @progbits
