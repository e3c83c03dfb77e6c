# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Each creates .venv if missing and installs what it needs. torch is pinned and
# installed first so that no CUDA wheels are pulled in by the recsys extra's
# looser requirement; every later install names the pin again so pip keeps it.
# `pip install secagg-fl` alone is the light install (secagg + protocols);
# the extras are recsys (torch, matplotlib, tqdm), ckks (tenseal), test, flower.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  := torch==2.13.0

.PHONY: demo test lint typecheck bench install clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.stamp-recsys: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q $(TORCH)
	$(PIP) install -q $(TORCH) -e '.[recsys]'
	touch $@

$(VENV)/.stamp-test: pyproject.toml $(VENV)/.stamp-recsys
	$(PIP) install -q $(TORCH) -e '.[recsys,ckks,test,flower]'
	touch $@

$(VENV)/.stamp-bench: pyproject.toml $(VENV)/.stamp-test
	$(PIP) install -q $(TORCH) -e '.[recsys,ckks,test,bench]'
	touch $@

install: $(VENV)/.stamp-recsys

demo: $(VENV)/.stamp-recsys
	$(PY) -m recsys demo

lint: $(VENV)/.stamp-test
	$(VENV)/bin/ruff check .

# mypy's files and settings are in pyproject.toml ([tool.mypy]).
typecheck: $(VENV)/.stamp-test
	$(PY) -m mypy

test: $(VENV)/.stamp-test
	$(VENV)/bin/ruff check .
	$(PY) -m mypy
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
