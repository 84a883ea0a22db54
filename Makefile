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

.PHONY: venv test lint reproduce report snakemake-report gpu-check clean-venv

# The venv is built once: torch's local CPU wheel first (any other torch
# request pulls a multi-GB CUDA build), then the pinned stack, then the project.
# A venv belongs to the folder it was built in (its scripts' #! lines and the editable
# install name that folder): in a copied or moved checkout it is rebuilt, never reused.
VENV_DIR := $(abspath $(VENV))
SHEBANG := \#!$(VENV_DIR)/bin/python
ifneq ($(shell head -n1 $(VENV)/bin/mhc-bench 2>/dev/null),$(SHEBANG))
.PHONY: $(VENV)/.installed
endif

$(VENV)/.installed: pyproject.toml
	@if [ -e $(VENV)/bin/mhc-bench ] && [ "$$(head -n1 $(VENV)/bin/mhc-bench)" != '$(SHEBANG)' ]; then \
	  echo "$(VENV) was built for another folder: rebuilding it in $(CURDIR)"; rm -rf $(VENV); fi
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

# `mhc-bench reproduce` runs Snakemake under a project lock: a killed run resumes by itself,
# a second concurrent run is refused, broken result files are regenerated, and finished cells
# are never retrained because rule code or the venv changed (--rerun-triggers mtime params input).
reproduce: venv
	$(VENV)/bin/mhc-bench reproduce --profile $(PROFILE) --cores $(CORES)

# Tables, plots and scorecard from the results that exist; trains nothing.
report: venv
	$(VENV)/bin/mhc-bench reproduce --profile $(PROFILE) --cores 1 --report-only

# Snakemake's own HTML report (with captions) of the last run.
snakemake-report: venv
	$(VENV)/bin/mhc-bench reproduce --profile $(PROFILE) --cores 1 -- --report report/$(PROFILE)/snakemake-report.html

# The one command for the first CUDA machine (fails at once without CUDA): kernel parity compiled
# for the GPU, the bench at two widths, the AOT table for this GPU, a gpu-small dry run and one short
# real cell, all under results/gpu-check/<device>/ (see mhc_bench/gpu/check.py).
gpu-check: venv
	$(VENV)/bin/mhc-bench kernels gpu-check --out results/gpu-check

clean-venv:
	rm -rf $(VENV)
