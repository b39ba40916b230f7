/* The boot ROM (hw/soc/boot.py) of a SoC whose memory the bitstream cannot initialise (the
   iCE40's SPRAM). It zeroes the whole memory, as a simulation's memories start, then copies
   the boot image's segments from the SPI flash window (hw/soc/spi_flash.py), checks their sum
   and jumps to the firmware at the RAM's base. A bad image halts the SoC (sysctl `halt`) before
   any of it runs: BOOT_EXIT_BAD_IMAGE without the magic word, BOOT_EXIT_BAD_SEGMENT for a
   segment that does not lie inside the memory, BOOT_EXIT_BAD_SUM when the words read do not
   add up to the image's sum.

   Image at BOOT_IMAGE (SPI flash window + offset), little-endian words:
       magic, segment count, sum, then per segment: destination address, bytes (a multiple
       of 4), the bytes. `sum` is the 32-bit sum of every word after it.
   The reads are all consecutive, so the flash reader streams them (one READ command).
   Defined by the build (-D): MEMORY_BASE, MEMORY_END, BOOT_IMAGE, BOOT_MAGIC, SYSCTL_HALT,
   BOOT_EXIT_BAD_IMAGE, BOOT_EXIT_BAD_SEGMENT, BOOT_EXIT_BAD_SUM, FIRMWARE_ENTRY. Only RV32I, no
   stack, no RAM used. */
    .section .text.start
    .global _start
_start:
    li t0, MEMORY_BASE
    li t1, MEMORY_END
1:  sw zero, 0(t0)
    addi t0, t0, 4
    bltu t0, t1, 1b

    li a0, BOOT_IMAGE
    lw t0, 0(a0)
    li t1, BOOT_MAGIC
    bne t0, t1, bad_image
    lw a1, 4(a0)                /* segments */
    lw a5, 8(a0)                /* the image's sum */
    li a6, 0                    /* the sum of the words read */
    addi a0, a0, 12
    li a4, MEMORY_BASE
    li t2, MEMORY_END
segment:
    beqz a1, done
    lw a2, 0(a0)                /* destination */
    lw a3, 4(a0)                /* bytes */
    add a6, a6, a2
    add a6, a6, a3
    addi a0, a0, 8
    add a3, a3, a2              /* end of the destination */
    bltu a2, a4, bad_segment    /* below the memory */
    bltu t2, a3, bad_segment    /* past its end */
    bltu a3, a2, bad_segment    /* wrapped around */
2:  bgeu a2, a3, 3f
    lw t0, 0(a0)
    add a6, a6, t0
    sw t0, 0(a2)
    addi a0, a0, 4
    addi a2, a2, 4
    j 2b
3:  addi a1, a1, -1
    j segment
done:
    bne a5, a6, bad_sum
    li t0, FIRMWARE_ENTRY
    jr t0
bad_image:
    li t1, BOOT_EXIT_BAD_IMAGE
    j halt
bad_segment:
    li t1, BOOT_EXIT_BAD_SEGMENT
    j halt
bad_sum:
    li t1, BOOT_EXIT_BAD_SUM
halt:
    li t0, SYSCTL_HALT
    sw t1, 0(t0)
4:  j 4b
