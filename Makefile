# mhc-bench: two set-up-free entry points, `make reproduce` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
CORES ?= all
export MLFLOW_DISABLE_TELEMETRY := true
export TORCHINDUCTOR_CACHE_DIR := $(CURDIR)/.cache/inductor
export TRITON_CACHE_DIR := $(CURDIR)/.cache/triton
export MPLCONFIGDIR := $(CURDIR)/.cache/matplotlib
export HF_HOME := $(CURDIR)/.cache/hf

.PHONY: venv test lint reproduce report clean-venv

# The venv is built once: torch's local CPU wheel first (any other torch
# request pulls a multi-GB CUDA build), then the pinned stack, then the project.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,peer]'
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check .

test: venv lint
	$(VENV)/bin/pytest -q

reproduce: venv
	@echo "not yet available: the workflow (issue 5) has not landed"; exit 1

report: venv
	@echo "not yet available: the workflow (issue 5) has not landed"; exit 1

clean-venv:
	rm -rf $(VENV)
