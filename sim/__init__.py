""""""cocotb simulations of the RTL against the golden model. Empty until the engine lands."""
