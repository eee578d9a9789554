"""One contract over every registered strategy: determinism, checkpoints, resume, duplicates, failures, budget."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import pytest

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.evaluators.base import Evaluator
from lightning_nas.results.history import History
from lightning_nas.search import run_search
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies import STRATEGIES, Strategy

SMALL: dict[str, dict[str, Any]] = {
    "random": {},
    "evolution": {"population_size": 4, "tournament_size": 2},
    "warm_evolution": {"population_size": 4, "tournament_size": 2},
    "nsga2": {"population_size": 4},
    "rl": {"hidden_size": 8, "lr": 0.05},
    "bayesian": {"n_startup_trials": 3},
    "ensemble": {"members": [{"name": "random", "fraction": 1}, {"name": "evolution", "fraction": 2,
                                                                 "population_size": 4, "tournament_size": 2}]},
    "hyperband": {"min_epochs": 1, "max_epochs": 4, "eta": 2},
    "bohb": {"min_epochs": 1, "max_epochs": 4, "eta": 2},
    "nni": {"tuner": "Random"},
}
OPTIONAL = {"bayesian": "optuna", "nni": "nni"}
BUDGET = 12


def _unit(arch: Architecture, salt: str) -> float:
    return int(hashlib.sha1(f"{salt}:{arch.to_json()}".encode()).hexdigest()[:8], 16) / 2**32


class Fake(Evaluator):
    """A fixed function of the architecture; ``fail_all`` fails every candidate."""

    def __init__(self, fail_all: bool = False) -> None:
        self.fail_all = fail_all
        self.calls = 0

    def evaluate(self, space: SearchSpace, arch: Architecture) -> EvalResult:
        return self.evaluate_at(space, arch, 1, None)[0]

    def evaluate_at(self, space: SearchSpace, arch: Architecture, epochs: int,
                    resume_from: Any | None) -> tuple[EvalResult, Any]:
        self.calls += 1
        if self.fail_all or _unit(arch, "fail") < 0.1:
            return EvalResult.failed("synthetic"), None
        value = math.nan if _unit(arch, "nan") < 0.05 else _unit(arch, "acc") * epochs / (epochs + 1)
        return EvalResult("ok", {"search/val_acc": value}), f"{arch.digest()}@{epochs}"


def make(name: str, num_samples: int = BUDGET, seed: int = 0) -> Strategy:
    if name in OPTIONAL and importlib.util.find_spec(OPTIONAL[name]) is None:
        pytest.skip(f"the optional extra {OPTIONAL[name]} is missing")
    return STRATEGIES.get(name)(num_samples=num_samples, seed=seed, **SMALL[name])


def drive(strategy: Strategy, space: SearchSpace, n: int, evaluator: Fake | None = None) -> list[Architecture]:
    """Ask and tell ``n`` times (or until done); the asked architectures."""
    fake = evaluator or Fake()
    asked = []
    for _ in range(n):
        if strategy.done:
            break
        job = strategy.ask_job()
        result, state = fake.evaluate_at(space, job.arch, job.epochs or 1, job.resume_from)
        strategy.tell_job(job, result, state)
        asked.append(job.arch)
    return asked


def test_every_registered_strategy_is_covered() -> None:
    assert set(STRATEGIES.names()) == set(SMALL)


@pytest.fixture(params=sorted(SMALL))
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_deterministic_from_the_seed(name: str, wide_space: SearchSpace) -> None:
    runs = []
    for seed in (3, 3, 4):
        strategy = make(name, seed=seed)
        strategy.setup(wide_space)
        runs.append(drive(strategy, wide_space, BUDGET))
    assert runs[0] == runs[1] and len(runs[0]) == BUDGET
    assert runs[0] != runs[2]


@pytest.mark.parametrize("stop", [2, 7])
def test_state_dict_round_trip_mid_search(name: str, wide_space: SearchSpace, stop: int) -> None:
    original = make(name, seed=5)
    original.setup(wide_space)
    drive(original, wide_space, stop)
    pending = original.ask()  # a checkpoint between ask and tell
    state = json.loads(json.dumps(original.state_dict(), allow_nan=False))
    restored = make(name, seed=5)
    restored.load_state_dict(state)  # before setup: restored when bound
    restored.setup(wide_space)
    assert restored.num_told == original.num_told == stop
    assert restored.ask() == pending
    assert drive(restored, wide_space, BUDGET) == drive(original, wide_space, BUDGET)


class Interrupt(Exception):
    """Raised by :class:`StopAfter` to kill a search mid-way."""


class StopAfter:
    """A listener that interrupts the search after ``n`` evaluations."""

    def __init__(self, n: int) -> None:
        self.n = n

    def on_candidate_end(self, record: Any, history: History) -> None:
        if len(history) >= self.n:
            raise Interrupt


def test_resume_replays_the_history(name: str, wide_space: SearchSpace, tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    with pytest.raises(Interrupt):
        run_search(wide_space, make(name, seed=2), Fake(), History(path), listeners=[StopAfter(5)], progress=False)
    fake = Fake()
    resumed = run_search(wide_space, make(name, seed=2), fake, History(path), progress=False)
    full = run_search(wide_space, make(name, seed=2), Fake(), History(), progress=False)
    assert [(r.arch, r.extra) for r in resumed] == [(r.arch, r.extra) for r in full]
    assert fake.calls == len(full) - 5  # the first five are replayed, not evaluated again


def test_asking_twice_without_telling_returns_the_pending_ask(name: str, wide_space: SearchSpace) -> None:
    strategy = make(name)
    strategy.setup(wide_space)
    drive(strategy, wide_space, 3)
    first = strategy.ask_job()
    assert strategy.ask_job() == first and strategy.ask() == first.arch
    assert strategy.num_told == 3


def test_failed_candidates_do_not_stop_the_search(name: str, wide_space: SearchSpace) -> None:
    strategy = make(name)
    strategy.setup(wide_space)
    asked = drive(strategy, wide_space, BUDGET, Fake(fail_all=True))
    assert len(asked) == BUDGET and strategy.done
    assert all(wide_space.validate(arch) == arch for arch in asked)
    assert all(strategy.fitness(t.result) == -math.inf for t in strategy.told)


def test_budget_is_respected(name: str, wide_space: SearchSpace) -> None:
    strategy = make(name, num_samples=7)
    fake = Fake()
    history = run_search(wide_space, strategy, fake, History(), progress=False)
    assert strategy.num_told == 7 and strategy.done
    assert len(history) == fake.calls <= 7
