"""Register maps of the SoC's peripherals: the one table the RTL decodes and the firmware header
names (`hw.soc.header`). Offsets are bytes from the peripheral's base; every register is one
32-bit word, read with any byte select and written with all four.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Register:
    name: str
    offset: int
    access: str        # "r", "w" or "rw"
    doc: str


class RegisterMap:
    def __init__(self, peripheral: str, registers: tuple[Register, ...]):
        offsets = [r.offset for r in registers]
        if len(set(offsets)) != len(offsets) or any(o % 4 for o in offsets):
            raise ValueError(f"{peripheral}: register offsets must be distinct multiples of 4")
        self.peripheral = peripheral
        self.registers = registers

    def __iter__(self):
        return iter(self.registers)

    def offset(self, name: str) -> int:
        for register in self.registers:
            if register.name == name:
                return register.offset
        raise KeyError(f"{self.peripheral} has no register {name!r}")

    def word(self, name: str) -> int:
        return self.offset(name) // 4


SYSCTL = RegisterMap("sysctl", (
    Register("cycles", 0x00, "r", "free-running clock cycle counter (wraps at 2^32)"),
    Register("halt", 0x04, "w", "write an exit code: the SoC's `halted` output rises and `exit_code` holds it"),
    Register("pause", 0x08, "rw", "bit 0 drives the SoC's `paused` output; the firmware sets it and waits "
                                  "until the debug bus (a testbench) clears it"),
))

UART = RegisterMap("uart", (
    Register("tx_data", 0x00, "w", "push one byte into the transmit FIFO (the write waits while the FIFO is full)"),
    Register("status", 0x04, "r", "bit 0 transmit FIFO full, bit 1 transmitter idle and FIFO empty"),
    Register("cycles_per_bit", 0x08, "rw", "clock cycles per bit (reset value from SocConfig.uart_baud)"),
))

ENGINE = RegisterMap("engine", (
    Register("control", 0x00, "w", "bit 0: start the program at program_base (clears finished and error)"),
    Register("program_base", 0x04, "rw", "external byte address of the program's first descriptor"),
    Register("status", 0x08, "r", "bit 0 busy, bit 1 finished (set when a run ends, cleared by start), bit 2 error"),
    Register("error", 0x0C, "r", "bits 7:0 error code, bits 31:16 index of the failing descriptor"),
    Register("cycles", 0x10, "r", "cycles of the last run, start to done"),
    Register("idle_cycles", 0x14, "r", "free-running count of cycles in which the engine was not busy"),
))

STATUS_BUSY, STATUS_FINISHED, STATUS_ERROR = 1, 2, 4
UART_STATUS_FULL, UART_STATUS_IDLE = 1, 2
PERIPHERALS = {"sysctl": SYSCTL, "uart": UART, "engine": ENGINE}
