"""Executors: same history for the same seed whatever the executor; dying workers retried; timeouts."""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.evaluators.base import Evaluator
from lightning_nas.executors import Executor, LocalExecutor, ProcessExecutor, speculate
from lightning_nas.results.history import History
from lightning_nas.search import run_search
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies import EvolutionStrategy, RandomSearch, Strategy


def _conftest_module() -> Any:
    """tests/conftest.py under a unique name: workers cannot tell apart the several ``conftest`` modules."""
    name = "lightning_nas_tests_conftest"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("conftest.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


class WorkerToySpace(_conftest_module().ToySpace):  # type: ignore[misc]
    """The conftest ``ToySpace``, picklable by reference from this module (rebuilt in each worker)."""


def make_space() -> SearchSpace:
    return WorkerToySpace(input_shape=(1, 8, 8), num_classes=10)


class ScoreEvaluator(Evaluator):
    """Deterministic and fast: builds the candidate (in the worker) and scores it from its choices.

    ``crash_on`` (an arch digest) SIGKILLs the worker on the first ``crash_times`` attempts, counted in
    a marker file; ``sleep_on`` sleeps ``sleep_s`` seconds on that architecture.
    """

    def __init__(self, marker_dir: str | None = None, crash_on: str | None = None, crash_times: int = 0,
                 sleep_on: str | None = None, sleep_s: float = 0.0) -> None:
        self.marker_dir, self.crash_on, self.crash_times = marker_dir, crash_on, crash_times
        self.sleep_on, self.sleep_s = sleep_on, sleep_s

    def evaluate(self, space: SearchSpace, arch: Architecture) -> EvalResult:
        if arch.digest() == self.crash_on and self.marker_dir is not None:
            marker = Path(self.marker_dir) / f"{arch.digest()}.attempts"
            attempts = len(marker.read_text()) if marker.exists() else 0
            with marker.open("a") as handle:
                handle.write("x")
            if attempts < self.crash_times:
                os.kill(os.getpid(), signal.SIGKILL)
        if arch.digest() == self.sleep_on:
            time.sleep(self.sleep_s)
        params = sum(p.numel() for p in space.build(arch).parameters())
        score = int(arch.digest()[:6], 16) / 16**6
        return EvalResult("ok", {"search/val_acc": score, "model/params": float(params)})


class ResampleStrategy(Strategy):
    """Samples on every ask (no pending cache) and keeps told scores: speculation must not disturb it."""

    def __init__(self, num_samples: int, seed: int = 0) -> None:
        super().__init__(num_samples, seed)
        self.scores: list[float] = []

    def _propose(self, space: SearchSpace) -> Architecture:
        return space.sample(self.rng)

    def _observe(self, arch: Architecture, result: EvalResult) -> None:
        self.scores.append(self.score(result))


class CountingExecutor(LocalExecutor):
    def __init__(self) -> None:
        self.batches: list[int] = []
        self.parallelism = 3

    def map_evaluate(self, evaluator: Evaluator, space: SearchSpace,
                     archs: Sequence[Architecture]) -> list[EvalResult]:
        self.batches.append(len(archs))
        return super().map_evaluate(evaluator, space, archs)


def _rows(history: History) -> list[tuple[Architecture, str, dict[str, float]]]:
    return [(r.arch, r.result.status, r.result.metrics) for r in history]


def _strategies() -> dict[str, Any]:
    return {
        "random": lambda: RandomSearch(num_samples=10, seed=3),
        "ga": lambda: EvolutionStrategy(num_samples=14, seed=3, population_size=4, tournament_size=2),
        "aging": lambda: EvolutionStrategy(num_samples=12, seed=3, mode="aging", population_size=4,
                                           tournament_size=2),
        "resample": lambda: ResampleStrategy(num_samples=10, seed=3),
    }


@pytest.mark.parametrize("name", list(_strategies()))
def test_parallel_loop_gives_the_sequential_history(name: str) -> None:
    make = _strategies()[name]
    space, evaluator = make_space(), ScoreEvaluator()
    reference = run_search(space, make(), evaluator, History(), progress=False)
    executor = CountingExecutor()
    strategy = make()
    parallel = run_search(space, strategy, evaluator, History(), executor=executor, progress=False)
    assert _rows(parallel) == _rows(reference)
    assert max(executor.batches) > 1
    if name == "random":
        assert executor.batches == [3, 3, 3, 1]  # random search never depends on pending results


def test_parallel_loop_resumes_exactly(tmp_path: Path) -> None:
    space, evaluator = make_space(), ScoreEvaluator()
    reference = run_search(space, ResampleStrategy(10, seed=1), evaluator, History(), progress=False)
    path = tmp_path / "history.jsonl"
    run_search(space, ResampleStrategy(4, seed=1), evaluator, History(path), executor=CountingExecutor(),
               progress=False)
    resumed = run_search(space, ResampleStrategy(10, seed=1), evaluator, History(path), executor=CountingExecutor(),
                         progress=False)
    assert _rows(resumed) == _rows(reference)
    assert _rows(History(path)) == _rows(reference)


def test_speculate_leaves_the_strategy_untouched() -> None:
    space = make_space()
    strategy = RandomSearch(num_samples=5, seed=0)
    strategy.setup(space)
    job = strategy.ask_job()
    state = strategy.state_dict()
    batch = speculate(strategy, job, {}, 4)
    assert batch[0] == job and len({j.arch for j in batch}) == len(batch) == 4
    assert strategy.state_dict() == state
    assert speculate(strategy, job, {}, 1) == [job]


def test_executor_options_are_validated() -> None:
    with pytest.raises(ValueError, match=r"executor\.max_workers"):
        ProcessExecutor(max_workers=0)
    with pytest.raises(ValueError, match=r"executor\.retries"):
        ProcessExecutor(retries=-1)
    with pytest.raises(ValueError, match=r"executor\.timeout_s"):
        ProcessExecutor(timeout_s=0)
    for bad in (-1, 20, 2.5, True):
        with pytest.raises(ValueError, match=rf"executor\.nice must be an int from 0 to 19, got {bad!r}"):
            ProcessExecutor(nice=bad)


def _check_same_history(executor: Executor) -> None:
    space, evaluator = make_space(), ScoreEvaluator()
    for make in (lambda: RandomSearch(num_samples=6, seed=7),
                 lambda: EvolutionStrategy(num_samples=8, seed=7, population_size=4, tournament_size=2)):
        reference = run_search(space, make(), evaluator, History(), executor=LocalExecutor(), progress=False)
        remote = run_search(space, make(), evaluator, History(), executor=executor, progress=False)
        assert _rows(remote) == _rows(reference)


def _check_worker_death(executor: Any, tmp_path: Path) -> None:
    """First attempt SIGKILLed then retried to success; with retries exhausted a failed record."""
    space = make_space()
    archs = [space.sample(np.random.default_rng(i)) for i in range(3)]
    victim = archs[1].digest()
    expected = LocalExecutor().map_evaluate(ScoreEvaluator(), space, archs)

    executor.retries = 1
    results = executor.map_evaluate(ScoreEvaluator(str(tmp_path), crash_on=victim, crash_times=1), space, archs)
    assert results == expected
    assert (tmp_path / f"{victim}.attempts").read_text() == "xx"

    (tmp_path / f"{victim}.attempts").unlink()
    executor.retries = 0
    results = executor.map_evaluate(ScoreEvaluator(str(tmp_path), crash_on=victim, crash_times=5), space, archs)
    assert [results[0], results[2]] == [expected[0], expected[2]]
    assert results[1].status == "failed" and "worker died" in (results[1].error or "")


def _check_timeout(executor: Any, timeout_s: float) -> None:
    space = make_space()
    archs = [space.sample(np.random.default_rng(i)) for i in range(2)]
    executor.timeout_s = timeout_s
    started = time.monotonic()
    results = executor.map_evaluate(ScoreEvaluator(sleep_on=archs[0].digest(), sleep_s=120.0), space, archs)
    executor.timeout_s = None
    assert time.monotonic() - started < timeout_s + 30
    assert results[0].status == "failed" and "timeout" in (results[0].error or "")
    assert results[1].ok


@pytest.fixture(scope="module")
def process_executor() -> Iterator[ProcessExecutor]:
    with ProcessExecutor(max_workers=2, retries=1) as executor:
        yield executor


def test_process_executor_same_history_as_local(process_executor: ProcessExecutor) -> None:
    _check_same_history(process_executor)


def test_process_executor_retries_a_killed_worker(process_executor: ProcessExecutor, tmp_path: Path) -> None:
    _check_worker_death(process_executor, tmp_path)
    assert "SIGKILL" in (process_executor.map_evaluate(
        ScoreEvaluator(str(tmp_path), crash_on=make_space().sample(np.random.default_rng(9)).digest(),
                       crash_times=9), make_space(), [make_space().sample(np.random.default_rng(9))])[0].error or "")


class NicenessEvaluator(Evaluator):
    """Reports the worker's niceness."""

    def evaluate(self, space: SearchSpace, arch: Architecture) -> EvalResult:
        return EvalResult("ok", {"nice": float(os.nice(0))})


@pytest.mark.skipif(not hasattr(os, "nice"), reason="os.nice is POSIX")
def test_process_executor_nice_lowers_the_workers_priority_only() -> None:
    space = make_space()
    archs = [space.sample(np.random.default_rng(i)) for i in range(2)]
    ours = os.nice(0)
    with ProcessExecutor(max_workers=2, nice=5) as executor:
        results = executor.map_evaluate(NicenessEvaluator(), space, archs)
    assert [r.metrics["nice"] for r in results] == [min(19, ours + 5)] * 2
    assert os.nice(0) == ours  # the search's own process keeps its priority (it trains the final model)


@pytest.mark.slow
def test_process_executor_timeout(process_executor: ProcessExecutor) -> None:
    _check_timeout(process_executor, 2.0)


@pytest.fixture(scope="module")
def ray_executor() -> Iterator[Any]:
    pytest.importorskip("ray")
    from lightning_nas.executors import RayExecutor

    with RayExecutor(num_cpus=2, retries=1) as executor:
        yield executor


@pytest.mark.slow
def test_ray_executor_same_history_as_local(ray_executor: Any) -> None:
    _check_same_history(ray_executor)


@pytest.mark.slow
def test_ray_executor_retries_a_killed_worker(ray_executor: Any, tmp_path: Path) -> None:
    _check_worker_death(ray_executor, tmp_path)


@pytest.mark.slow
def test_ray_executor_timeout(ray_executor: Any) -> None:
    # includes a fresh Ray worker's start, which took over 25 s on a loaded 2-core machine (CI beside training jobs)
    _check_timeout(ray_executor, 60.0)
