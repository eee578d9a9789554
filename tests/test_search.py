import math
from typing import Any

import pytest

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.evaluators.base import Evaluator
from lightning_nas.results.history import History
from lightning_nas.search import ResumeError, best_record, run_search
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies.base import Strategy


class SampleStrategy(Strategy):
    """Samples with its RNG and keeps a running list, enough to test replay exactness."""

    def __init__(self, num_samples: int, seed: int = 0) -> None:
        super().__init__(num_samples, seed)
        self.scores: list[float] = []

    def _propose(self, space: SearchSpace) -> Architecture:
        return space.sample(self.rng)

    def _observe(self, arch: Architecture, result: EvalResult) -> None:
        self.scores.append(self.score(result))


class FakeEvaluator(Evaluator):
    def __init__(self, fail_on: set[int] | None = None) -> None:
        self.calls: list[Architecture] = []
        self.fail_on = fail_on or set()

    def evaluate(self, space: SearchSpace, arch: Architecture) -> EvalResult:
        self.calls.append(arch)
        if len(self.calls) - 1 in self.fail_on:
            raise RuntimeError("exploded")
        score = float(arch["width"]) / 8 + (arch["depth"] / 100)
        return EvalResult("ok", {"search/val_acc": score})


def test_search_records_every_evaluation(tmp_path, toy_space) -> None:
    history = History(tmp_path / "history.jsonl")
    evaluator = FakeEvaluator(fail_on={2})
    run_search(toy_space, SampleStrategy(12, seed=1), evaluator, history, progress=False)
    assert len(history) == len(evaluator.calls) == len(set(evaluator.calls))
    assert history[2].result.status == "failed" and "exploded" in (history[2].result.error or "")
    best = best_record(history)
    assert best.result.metrics["search/val_acc"] == max(
        r.result.metrics.get("search/val_acc", -math.inf) for r in history
    )


def test_resume_replays_without_reevaluating(tmp_path, toy_space) -> None:
    full = History()
    reference = SampleStrategy(15, seed=3)
    run_search(toy_space, reference, FakeEvaluator(), full, progress=False)

    path = tmp_path / "history.jsonl"
    partial = History(path)
    run_search(toy_space, SampleStrategy(6, seed=3), FakeEvaluator(), partial, progress=False)
    resumed_strategy = SampleStrategy(15, seed=3)
    evaluator = FakeEvaluator()
    resumed = run_search(toy_space, resumed_strategy, evaluator, History(path), progress=False)
    assert [r.arch for r in resumed] == [r.arch for r in full]
    assert len(evaluator.calls) == len(full) - 6
    assert resumed_strategy.scores == reference.scores
    assert resumed_strategy.rng.bit_generator.state == reference.rng.bit_generator.state


def test_resume_with_a_different_seed_is_an_error(tmp_path, toy_space) -> None:
    path = tmp_path / "history.jsonl"
    run_search(toy_space, SampleStrategy(4, seed=0), FakeEvaluator(), History(path), progress=False)
    with pytest.raises(ResumeError, match="strategy or seed changed"):
        run_search(toy_space, SampleStrategy(8, seed=1), FakeEvaluator(), History(path), progress=False)


def test_listeners_see_every_candidate(toy_space) -> None:
    seen: list[int] = []

    class Listener:
        def on_candidate_end(self, record: Any, history: History) -> None:
            seen.append(record.index)

    run_search(toy_space, SampleStrategy(5), FakeEvaluator(), History(), listeners=[Listener()], progress=False)
    assert seen == list(range(5))


def test_best_record_when_everything_failed(toy_space) -> None:
    history = History()
    run_search(toy_space, SampleStrategy(3), FakeEvaluator(fail_on={0, 1, 2}), history, progress=False)
    with pytest.raises(RuntimeError, match="no successful candidate among 3"):
        best_record(history)
