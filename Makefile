# The two commands (see README.md):
#   make demo   - set up, build the student version, autograde the demo submissions, feedback, grade table
#   make test   - set up, then run the whole test suite (what CI runs via .ci/run)
# For iterating: make test-fast (unit tests of every module, no grading run, no sandbox, no browser).
# make backends - add the JAX and PyTorch (CPU) backends to the environment (docs/backends.md)
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
JAX_STAMP := $(VENV)/.jax-installed
TORCH_STAMP := $(VENV)/.torch-installed

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

.PHONY: setup backends demo test test-fast release benchmark throughput study clean
setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml grader/pyproject.toml scripts/setup.sh
	VENV=$(VENV) bash scripts/setup.sh

# JAX and PyTorch, each from its exact-pinned file (requirements.txt plus that backend). make test
# installs both: CI runs the `backends` tests on all three (docs/backends.md, "What CI runs").
backends: $(JAX_STAMP) $(TORCH_STAMP)

$(JAX_STAMP): $(STAMP) requirements-jax.txt
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-jax.txt 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
	touch $@

$(TORCH_STAMP): $(STAMP) requirements-torch.txt
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-torch.txt 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
	touch $@

demo: $(STAMP)
	$(PY) -m vae_grader.apps.demo

test: $(STAMP) $(JAX_STAMP) $(TORCH_STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# The fast layer: only tests that start no other program (tests/conftest.py, --in-process: a test that
# starts a kernel, nbgrader, a sandbox, a browser or a server must say so by its marker); the master
# notebook is left to nbval in `make test`.
test-fast: $(STAMP)
	$(PY) -m pytest tests --in-process -p no:nbval -o addopts="-ra --strict-markers --durations=5" $(PYTEST_ARGS)

release: $(STAMP)
	$(PY) -m vae_grader.apps.release

benchmark: $(STAMP)
	$(PY) -m measure.benchmark

# Plain sequential `nbgrader autograde` against the Dask path, same students, one run (docs/dask-grading.md).
throughput: $(STAMP)
	$(PY) -m measure.throughput

# The speed study behind the student budget (docs/measurements.md, "Speed of the student's run"): throughput of
# each setting, then today's default and the 2017 settings trained side by side (about 45 min).
study: $(STAMP)
	$(PY) -m measure.study throughput
	$(PY) -m measure.study side-by-side

clean:
	rm -rf submitted autograded/vae feedback gradebook.db exports watch-state.json
