"""cocotb simulations of the RTL against the golden model, and the harness that runs them."""
