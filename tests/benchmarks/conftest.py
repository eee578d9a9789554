"""The ``bench`` fixture: the benchmark script a test module names in ``BENCHMARK``, loaded as a module."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench(request: pytest.FixtureRequest) -> ModuleType:
    """``benchmarks/<BENCHMARK>.py`` of the requesting test module, registered in ``sys.modules``
    (dataclasses and pickling look their module up there)."""
    stem = str(request.module.BENCHMARK)
    name = f"{stem}_benchmark"
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{stem}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
