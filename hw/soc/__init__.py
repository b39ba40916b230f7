"""The SoC: VexRiscv, the engine, RAM, UART and system control on a Wishbone bus (docs/soc.md)."""
