""""""FPGA builds for iCEBreaker and ECP5-85F boards. Empty until the FPGA issue lands."""
