# qchar interrupt-driven demo guest: a one-sector boot image that programs
# the 8259 PICs itself, enables the COM1 receive interrupt and sleeps in
# `sti; hlt`. Everything it prints after the banner comes from its IRQ 4
# handler.
#
# Output format (documented in crates/machine/src/guest.rs as well):
#   qchar-irq ready\r\n          once, after set-up (polled)
#   qchar-irq NNNN PAYLOAD\r\n   from the IRQ 4 handler, one line per batch
#                                of received bytes (up to 16); NNNN counts
#                                handled interrupts (4 decimal digits from
#                                0001); PAYLOAD escaped as in demo.s
#   qchar-irq bye\r\n            when byte 0x04 (EOT) arrives; then it waits
#                                for LSR.TEMT and stops with cli; hlt

.code16
.intel_syntax noprefix
.set COM1, 0x3f8
.include "uart-regs.inc"
.set ECHO_MAX, 16
.set PIC1_CMD, 0x20
.set PIC1_DATA, 0x21
.set PIC2_CMD, 0xa0
.set PIC2_DATA, 0xa1
.set IRQ_BASE, 0x08             # master vectors 0x08..0x0f, as a PC BIOS
.set EOT, 0x04

.text
.globl _start
_start:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7c00
    cld

    # Real-mode interrupt vectors: IRQ 4 -> isr, spurious IRQ 7 -> iret.
    mov word ptr [(IRQ_BASE + 4) * 4], offset isr
    mov word ptr [(IRQ_BASE + 4) * 4 + 2], 0
    mov word ptr [(IRQ_BASE + 7) * 4], offset spurious
    mov word ptr [(IRQ_BASE + 7) * 4 + 2], 0

    # 8259 initialisation: ICW1 (edge, cascade, ICW4), ICW2 (vector base),
    # ICW3 (slave on IRQ 2), ICW4 (8086 mode); then mask all but IRQ 4.
    mov al, 0x11
    out PIC1_CMD, al
    out PIC2_CMD, al
    mov al, IRQ_BASE
    out PIC1_DATA, al
    mov al, 0x70
    out PIC2_DATA, al
    mov al, 0x04
    out PIC1_DATA, al
    mov al, 0x02
    out PIC2_DATA, al
    mov al, 0x01
    out PIC1_DATA, al
    out PIC2_DATA, al
    mov al, 0xef                # only IRQ 4
    out PIC1_DATA, al
    mov al, 0xff
    out PIC2_DATA, al

    call uart_init
    mov si, offset ready_msg
    call puts
    mov dx, COM1 + IER
    mov al, 0x01                # received data available
    out dx, al

idle:
    sti
    hlt
    jmp idle

# IRQ 4: serve the UART until IIR says nothing is pending, then EOI.
isr:
    pusha
isr_poll:
    mov dx, COM1 + IIR
    in al, dx
    test al, 0x01
    jnz isr_done
    and al, 0x0e
    cmp al, 0x04
    je isr_rx
    cmp al, 0x0c
    je isr_rx
    # Line status or modem status: reading the register acknowledges it.
    mov dx, COM1 + LSR
    in al, dx
    mov dx, COM1 + MSR
    in al, dx
    jmp isr_poll
isr_rx:
    mov di, offset irq_count
    mov cx, 4
    call inc_decimal
    mov si, offset irq_prefix
    call puts
    mov si, offset irq_count
    call puts
    mov al, ' '
    call putc
    mov cx, ECHO_MAX
isr_byte:
    mov dx, COM1 + RBR
    in al, dx
    cmp al, EOT
    je isr_bye
    call put_escaped
    mov dx, COM1 + LSR
    in al, dx
    test al, LSR_DR
    loopnz isr_byte
    mov si, offset crlf
    call puts
    jmp isr_poll
isr_done:
    mov al, 0x20                # non-specific EOI
    out PIC1_CMD, al
    popa
spurious:
    iret

isr_bye:
    mov si, offset crlf
    call puts
    mov si, offset bye_msg
    call puts
    jmp power_off

.include "serial.inc"

ready_msg:  .asciz "qchar-irq ready\r\n"
bye_msg:    .asciz "qchar-irq bye\r\n"
irq_prefix: .asciz "qchar-irq "
crlf:       .asciz "\r\n"
irq_count:  .asciz "0000"

.org 0x1fe
.byte 0x55, 0xaa
