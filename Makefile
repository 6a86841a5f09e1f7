# Two commands for a fresh machine with Python 3.11: `make demo` and `make test` (ruff, then the tests).
# Each creates and uses .venv at the repository root by itself.
# torch is installed first, explicitly, so that pip keeps it: the CPU build this machine has.
# Elsewhere pass your own, e.g. `make test TORCH_SPEC="torch>=2.4"` (pyproject.toml asks torch>=2.4).
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.afnet-installed

.PHONY: demo test bench zoo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q '$(TORCH_SPEC)'
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/afnet demo

zoo: $(STAMP)
	$(VENV)/bin/afnet zoo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_models.py

clean:
	rm -rf $(VENV) build *.egg-info
