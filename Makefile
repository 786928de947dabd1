# The two commands (see README.md):
#   make demo   - set up, build the student version, autograde the demo submissions, feedback, grade table
#   make test   - set up, then run the whole test suite (what CI runs via .ci/run)
# For iterating: make test-fast (unit tests of every module, no grading run, no sandbox, no browser).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Offline MNIST: use the project's shared copy when it sits beside the clone (CI, course servers).
SHARED_MNIST := $(abspath ../shared/data/mnist.npz)
ifneq ($(wildcard $(SHARED_MNIST)),)
export MNIST_NPZ ?= $(SHARED_MNIST)
endif
export KERAS_BACKEND ?= tensorflow
export TF_CPP_MIN_LOG_LEVEL ?= 1
export PYTHONDONTWRITEBYTECODE := 1
# nbgrader shells out to alembic, so the environment's bin/ must be on PATH.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup demo test test-fast release benchmark throughput study clean
setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml grader/pyproject.toml scripts/setup.sh
	VENV=$(VENV) bash scripts/setup.sh

demo: $(STAMP)
	$(PY) -m vae_grader.demo

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# The fast layer: tests not marked slow, sandbox, exchange or browser; the master notebook is left to nbval in `make test`.
test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not slow and not sandbox and not exchange and not browser" -p no:nbval \
		-o addopts="-ra --strict-markers --durations=5" $(PYTEST_ARGS)

release: $(STAMP)
	$(PY) -m vae_grader.release

benchmark: $(STAMP)
	$(PY) -m vae_grader.benchmark

# Plain sequential `nbgrader autograde` against the Dask path, same students, one run (docs/dask-grading.md).
throughput: $(STAMP)
	$(PY) -m vae_grader.throughput

# The speed study behind the student budget (README, "Speed of the student's run"): throughput of
# each setting, then today's default and the 2017 settings trained side by side (about 45 min).
study: $(STAMP)
	$(PY) -m vae_grader.study throughput
	$(PY) -m vae_grader.study side-by-side

clean:
	rm -rf submitted autograded/vae feedback gradebook.db exports watch-state.json
