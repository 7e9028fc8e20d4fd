# Interlace: `make demo` runs the end-to-end demo, `make test` the test suite.
# Both create .venv with the tested versions (constraints.txt) if it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: demo test test-slow test-dist benchmark info install clean help check-driving check-medical check-remote-sensing test-faults

help:
	@echo "make demo       end-to-end run on generated data, prints a summary"
	@echo "make test       install the test extra and run the default (fast) suite"
	@echo "make test-slow  the long tests (training to a target score)"
	@echo "make test-dist  the multi-process tests (torchrun / mp.spawn, 2 CPU processes with gloo)"
	@echo "make test-faults  fault injection: crashes, contention, full disks, bad input, memory"
	@echo "make benchmark  core-ops benchmark at nuScenes scale"
	@echo "make info       environment report"
	@echo "make check-driving | check-medical | check-remote-sensing   a domain's proof (tools/check.py)"

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python >= 3.10 is needed, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)

# Torch first, alone and pinned: an unpinned resolve would fetch the newest CUDA build.
$(STAMP): $(PY) pyproject.toml setup.py constraints.txt
	$(PIP) install --quiet --upgrade "pip>=23.1" "setuptools>=69" wheel
	$(PIP) install --quiet -c constraints.txt torch
	$(PIP) install --quiet -c constraints.txt -e ".[test,demo]"
	@touch $@

install: $(STAMP)

info: $(STAMP)
	$(PY) -m interlace.info

demo: $(STAMP)
	$(PY) tools/demo.py

test: $(STAMP)
	$(PY) -m pytest

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

# Several processes per test (torchrun, mp.spawn); the slow ones among them are included.
test-dist: $(STAMP)
	$(PY) -m pytest -m dist

# Injects each fault (kills, SIGTERM, two processes on one output folder, full or
# read-only disks, bad input, long runs) and prints
# "faults: N tried, N survived, N outputs lost or corrupted".
test-faults: $(STAMP)
	$(PY) -m pytest -m faults

benchmark: $(STAMP)
	$(PY) tools/analysis_tools/benchmark.py ops

clean:
	rm -rf $(VENV) build *.egg-info work_dirs/tests

# Each domain's proof, as mmengine Runner runs of the configs in configs/checks/: results in
# work_dirs/checks/<domain>/result.{json,md}; exits non-zero when a threshold fails.
# Budgets are CPU minutes: driving ~40 min, medical ~60 min, remote sensing ~30 min.
check-driving: $(STAMP)
	$(PY) tools/check.py driving

check-medical: $(STAMP)
	$(PY) tools/check.py medical

check-remote-sensing: $(STAMP)
	$(PY) tools/check.py remote_sensing
