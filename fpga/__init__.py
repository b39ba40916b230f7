"""FPGA builds of the engine for iCEBreaker (iCE40 UP5K) and ECP5-85F boards: presets
(boards.py), a test wrapper (wrapper.py), the build (build.py) and nextpnr report parsing
(report.py). docs/fpga.md explains them."""
