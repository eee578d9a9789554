"""BayesianStrategy (Optuna TPE): learns, never repeats, replays deterministically, multi-objective."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.objectives.multi import MultiObjective
from lightning_nas.results.history import History
from lightning_nas.search import run_search
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies import STRATEGIES
from lightning_nas.strategies.bayesian import BayesianStrategy

optuna = pytest.importorskip("optuna")


def quality(arch: Architecture) -> float:
    return sum(v == "a" for v in arch.values()) / len(arch)


class Fake:
    def evaluate(self, space: SearchSpace, arch: Architecture) -> EvalResult:
        if arch["layer0/op"] == "d":
            return EvalResult.failed("boom")
        ops = sum(v == "b" for v in arch.values())
        return EvalResult("ok", {"search/val_acc": quality(arch), "hw/latency_ms": float(ops)})


def test_registered_and_validates() -> None:
    assert STRATEGIES.get("bayesian") is BayesianStrategy
    with pytest.raises(ValueError, match="sampler"):
        BayesianStrategy(sampler="gp")
    with pytest.raises(RuntimeError, match="setup"):
        BayesianStrategy().ask()


def test_tpe_beats_its_random_start_and_never_repeats(wide_space: SearchSpace) -> None:
    strategy = BayesianStrategy(num_samples=40, seed=0, n_startup_trials=10)
    history = run_search(wide_space, strategy, Fake(), History(), progress=False)
    archs = [r.arch for r in history]
    assert len(archs) == len(set(archs)) == 40
    start = max(quality(a) for a in archs[:10])
    assert max(quality(a) for a in archs[10:]) > start
    assert len(strategy.study.trials) >= 40


def test_resume_replays_and_state_round_trip(wide_space: SearchSpace, tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    run_search(wide_space, BayesianStrategy(num_samples=12, seed=1, n_startup_trials=5), Fake(), History(path),
               progress=False)
    resumed = run_search(wide_space, BayesianStrategy(num_samples=20, seed=1, n_startup_trials=5), Fake(),
                         History(path), progress=False)
    first = BayesianStrategy(num_samples=20, seed=1, n_startup_trials=5)
    full = run_search(wide_space, first, Fake(), History(), progress=False)
    assert [r.arch for r in resumed] == [r.arch for r in full]

    state = json.loads(json.dumps(first.state_dict()))
    other = BayesianStrategy(num_samples=30, seed=1, n_startup_trials=5)
    other.load_state_dict(state)  # applied at setup
    other.setup(wide_space)
    assert other.num_told == 20 and len(other.study.trials) == len(first.study.trials)
    assert other.ask() == first.ask()


def test_multi_objective_directions(wide_space: SearchSpace) -> None:
    objective = MultiObjective({"accuracy": "max", "latency": "min"}, constraints={"max_latency": 8.0})
    strategy = BayesianStrategy(num_samples=15, seed=2, n_startup_trials=5)
    run_search(wide_space, strategy, Fake(), History(), score=objective, progress=False)
    assert [d.name for d in strategy.study.directions] == ["MAXIMIZE", "MINIMIZE"]
    done = [t for t in strategy.study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert done and all(len(t.values) == 2 for t in done)
    nsga = BayesianStrategy(num_samples=8, seed=2, sampler="nsga2", population_size=4)
    assert len(run_search(wide_space, nsga, Fake(), History(), score=objective, progress=False)) == 8


def test_missing_optuna_names_the_extra(wide_space: SearchSpace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ImportError, match=r"lightning_nas\[optuna\]"):
        BayesianStrategy().setup(wide_space)
