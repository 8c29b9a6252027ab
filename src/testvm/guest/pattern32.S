/*
 * ramflow - the KVM test guest's program, 32-bit protected mode, flat
 * segments, no paging, no stack, no interrupts.
 *
 * Assembled by gcc into .rodata of the host library; kvm_guest.c copies
 * the bytes between rf_guest_pattern32_start and rf_guest_pattern32_end
 * into guest RAM (RF_KVM_CODE_GPA) and starts each vCPU at its first byte
 * with EBX = the guest-physical address of its parameter block:
 *
 *   +0  mode     0 = write the pattern, 1 = idle (hlt loop)
 *   +4  first    address of the first page of its range
 *   +8  last     address of the last page of its range (inclusive, so
 *                that a range ending at 4 GiB fits in 32 bits)
 *   +12 chunk    exit to the host (out to port 0xf5) every `chunk` pages;
 *                0xffffffff = never.  The host changes it at any time to
 *                limit the dirty rate or throttle the vCPU.
 *   +16 passes   finished passes; the guest adds one after each pass and
 *                writes the new value to port 0xf4
 *
 * Register use (saved and restored with the vCPU state, so a migrated
 * vCPU continues mid-pass): EBX parameters, EDI current page, ECX pages
 * since the last chunk exit.
 *
 * The pattern (QEMU's migration test): byte 0 of every page of the range
 * is incremented in increasing address order, pass after pass.
 */
    .section .rodata
    .balign 16
    .globl rf_guest_pattern32_start
    .globl rf_guest_pattern32_end
    .type rf_guest_pattern32_start, @object
    .code32
rf_guest_pattern32_start:
    cmpl $0, 0(%ebx)
    jne idle
    movl 4(%ebx), %edi
    xorl %ecx, %ecx
page:
    incb (%edi)
    cmpl 8(%ebx), %edi
    jae pass_done
    addl $4096, %edi
    incl %ecx
    cmpl 12(%ebx), %ecx
    jb page
    xorl %ecx, %ecx
    outb %al, $0xf5
    jmp page
pass_done:
    movl 4(%ebx), %edi
    incl 16(%ebx)
    movl 16(%ebx), %eax
    outl %eax, $0xf4
    /* count the last page towards the chunk, then go on */
    incl %ecx
    cmpl 12(%ebx), %ecx
    jb page
    xorl %ecx, %ecx
    outb %al, $0xf5
    jmp page
idle:
    hlt
    jmp idle
rf_guest_pattern32_end:
    .code64
    .size rf_guest_pattern32_start, \
        rf_guest_pattern32_end - rf_guest_pattern32_start

    .section .note.GNU-stack, "", @progbits
