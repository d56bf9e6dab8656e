# qchar demo guest: a one-sector boot image that counts on COM1 and echoes
# what it receives. Build: GNU as --32, ld -m elf_i386 -Ttext=0x7c00
# --oformat binary (crates/machine/build.rs does this).
#
# Output format (documented in crates/machine/src/guest.rs as well):
#   qchar-demo NNNNNNNNNN\r\n   numbered line, 10-digit decimal counter
#                               from 0000000001, one more each line
#   qchar-echo PAYLOAD\r\n      between two numbered lines, when input
#                               waits: up to 16 received bytes, printable
#                               ASCII as is, anything else (and '\') as
#                               \xHH
# Configuration block at image offset 0x1f0: the 4 bytes "QCHD" then a
# little-endian u32 line limit; 0 counts forever, N stops after line N
# (waits for LSR.TEMT, then cli; hlt).

.code16
.intel_syntax noprefix
.set COM1, 0x3f8
.include "uart-regs.inc"
.set ECHO_MAX, 16

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
    call uart_init

next_line:
    mov di, offset counter
    mov cx, 10
    call inc_decimal
    mov si, offset line_prefix
    call puts
    mov si, offset counter
    call puts
    mov si, offset crlf
    call puts

    # Echo what waits, as a line of its own.
    mov dx, COM1 + LSR
    in al, dx
    test al, LSR_DR
    jz no_input
    mov si, offset echo_prefix
    call puts
    mov cx, ECHO_MAX
echo_byte:
    mov dx, COM1 + RBR
    in al, dx
    call put_escaped
    mov dx, COM1 + LSR
    in al, dx
    test al, LSR_DR
    loopnz echo_byte
    mov si, offset crlf
    call puts
no_input:

    # Line limit.
    mov eax, dword ptr [lines_done]
    inc eax
    mov dword ptr [lines_done], eax
    mov ebx, dword ptr [max_lines]
    test ebx, ebx
    jz next_line
    cmp eax, ebx
    jb next_line
    jmp power_off

.include "serial.inc"

line_prefix: .asciz "qchar-demo "
echo_prefix: .asciz "qchar-echo "
crlf:        .asciz "\r\n"
counter:     .asciz "0000000000"
.balign 4
lines_done:  .long 0

.org 0x1f0
config_magic: .ascii "QCHD"
max_lines:    .long 0
.org 0x1fe
.byte 0x55, 0xaa
