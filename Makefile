# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Each creates .venv if missing and installs what it needs. torch is pinned and
# installed first so that no CUDA wheels are pulled in by a looser requirement.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  := torch==2.13.0

.PHONY: demo test lint bench install clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.stamp-core: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e .
	touch $@

$(VENV)/.stamp-test: pyproject.toml $(VENV)/.stamp-core
	$(PIP) install -q $(TORCH) -e '.[test,flower]'
	touch $@

$(VENV)/.stamp-bench: pyproject.toml $(VENV)/.stamp-test
	$(PIP) install -q $(TORCH) -e '.[test,bench]'
	touch $@

install: $(VENV)/.stamp-core

demo: $(VENV)/.stamp-core
	$(PY) -m recsys demo

lint: $(VENV)/.stamp-test
	$(VENV)/bin/ruff check .

test: $(VENV)/.stamp-test
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n 2

# Benchmarks print ratios against baselines measured in the same run and write
# JSON to benchmarks/results/. ML-100K comes from ../shared/tools (never committed).
MOVIELENS ?= $(shell ../shared/tools/fetch-movielens-100k 2>/dev/null)

bench: $(VENV)/.stamp-bench
	$(PY) benchmarks/primitives.py
	$(PY) benchmarks/imports.py
	$(PY) benchmarks/secagg.py
	$(PY) benchmarks/he.py
	$(PY) benchmarks/privacy.py
	$(PY) benchmarks/flower_overhead.py
	$(if $(MOVIELENS),$(PY) benchmarks/recsys_central.py $(MOVIELENS),@echo "no MovieLens data: skipping recsys benchmarks")

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
