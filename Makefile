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

bench: $(VENV)/.stamp-bench
	$(PY) benchmarks/primitives.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
