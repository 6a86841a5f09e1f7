# Two commands for a fresh machine with Python 3.11: `make demo` and `make test`.
# Each creates and uses .venv at the repository root by itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.afnet-installed

.PHONY: demo test bench zoo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/afnet demo

zoo: $(STAMP)
	$(VENV)/bin/afnet zoo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_models.py

clean:
	rm -rf $(VENV) build *.egg-info
