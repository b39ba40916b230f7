/* The boot ROM (hw/soc/boot.py) of a SoC whose memory the bitstream cannot initialise (the
   iCE40's SPRAM). It zeroes the whole memory, as a simulation's memories start, then copies
   the boot image's segments from the SPI flash window (hw/soc/spi_flash.py) and jumps to the
   firmware at the RAM's base. A bad magic word halts the SoC with BOOT_EXIT_BAD_IMAGE.

   Image at BOOT_IMAGE (SPI flash window + offset), little-endian words:
       magic, segment count, then per segment: destination address, bytes (a multiple of 4),
       the bytes.
   The reads are all consecutive, so the flash reader streams them (one READ command).
   Defined by the build (-D): MEMORY_BASE, MEMORY_END, BOOT_IMAGE, BOOT_MAGIC, SYSCTL_HALT,
   BOOT_EXIT_BAD_IMAGE, FIRMWARE_ENTRY. Only RV32I, no stack, no RAM used. */
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
    addi a0, a0, 8
segment:
    beqz a1, done
    lw a2, 0(a0)                /* destination */
    lw a3, 4(a0)                /* bytes */
    addi a0, a0, 8
    add a3, a3, a2              /* end of the destination */
2:  bgeu a2, a3, 3f
    lw t0, 0(a0)
    sw t0, 0(a2)
    addi a0, a0, 4
    addi a2, a2, 4
    j 2b
3:  addi a1, a1, -1
    j segment
done:
    li t0, FIRMWARE_ENTRY
    jr t0
bad_image:
    li t0, SYSCTL_HALT
    li t1, BOOT_EXIT_BAD_IMAGE
    sw t1, 0(t0)
4:  j 4b
