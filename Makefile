# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARGS ?=
PYTEST_ARGS ?=

.PHONY: run test test-all fashion-mnist lint typecheck check clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)  ## the main job on the embedded default data (scikit-learn digits)
	$(PY) -m lightning_nas experiment=efficient_convnet $(ARGS)

# CI (CI=true) has the time for the slow tests too (Ray executors, every experiment x strategy, ...).
TEST_MARKERS := $(if $(CI),,-m "not slow")

test: $(STAMP)  ## the fast suite; everything, slow tests included, when CI is set (what .ci/run runs)
	$(PY) -m pytest -q $(TEST_MARKERS) $(PYTEST_ARGS)

fashion-mnist: $(STAMP)  ## the flagship: search + train + export on Fashion-MNIST, two baselines alongside (~55 min on 2 cores)
	$(PY) benchmarks/fashion_mnist.py $(ARGS)

test-all: $(STAMP)  ## everything, slow tests included
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples

typecheck: $(STAMP)
	$(VENV)/bin/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache .mypy_cache .ruff_cache
