"""EnsembleStrategy: budget split, shared history and seeding, resume by replay, clear member errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.results.history import History
from lightning_nas.search import run_search
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies import STRATEGIES, EvolutionStrategy
from lightning_nas.strategies.ensemble import EnsembleStrategy, split_budget

MEMBERS: list[dict[str, Any]] = [
    {"name": "random", "fraction": 1},
    {"name": "evolution", "fraction": 3, "population_size": 4, "tournament_size": 2},
]


def quality(arch: Architecture) -> float:
    return sum(v == "a" for v in arch.values()) / len(arch)


class Fake:
    """Scores the share of op "a" (first op "d" fails) and records which member proposed each candidate."""

    def __init__(self, ensemble: EnsembleStrategy | None = None) -> None:
        self.ensemble, self.members = ensemble, []

    def evaluate(self, space: SearchSpace, arch: Architecture) -> EvalResult:
        if self.ensemble is not None:
            self.members.append(self.ensemble.current)
        if arch["layer0/op"] == "d":
            return EvalResult.failed("boom")
        return EvalResult("ok", {"search/val_acc": quality(arch)})


def test_split_budget() -> None:
    assert split_budget([0.3, 0.7], 12) == [4, 8]
    assert split_budget([1, 1, 1], 10) == [4, 3, 3]
    assert split_budget([0.01, 10], 5) == [1, 4]
    with pytest.raises(ValueError, match=r"strategy.num_samples"):
        split_budget([1, 1, 1], 2)


def test_registered_and_bad_members_name_the_key() -> None:
    assert STRATEGIES.get("ensemble") is EnsembleStrategy
    with pytest.raises(ValueError, match=r"strategy.members\[1\].name: .*'evolutoin'.*evolution"):
        EnsembleStrategy([{"name": "random"}, {"name": "evolutoin"}])
    with pytest.raises(ValueError, match=r"strategy.members\[0\].name: .*'hyperband'"):
        EnsembleStrategy([{"name": "hyperband"}])
    with pytest.raises(ValueError, match=r"strategy.members\[0\].fraction"):
        EnsembleStrategy([{"name": "random", "fraction": -1}])
    with pytest.raises(ValueError, match=r"strategy.members\[1\] \(evolution\):.*population_sise"):
        EnsembleStrategy([{"name": "random"}, {"name": "evolution", "population_sise": 3}])
    with pytest.raises(ValueError, match=r"strategy.members\[0\].num_samples"):
        EnsembleStrategy([{"name": "random", "num_samples": 3}])
    with pytest.raises(ValueError, match=r"strategy.members\[0\] must be a mapping"):
        EnsembleStrategy(["random"])  # type: ignore[list-item]


def test_budget_split_respected_and_nothing_evaluated_twice(wide_space: SearchSpace) -> None:
    ensemble = EnsembleStrategy(MEMBERS, num_samples=12, seed=0)
    assert ensemble.shares == [3, 9]
    fake = Fake(ensemble)
    history = run_search(wide_space, ensemble, fake, History(), progress=False)
    assert len(history) == 12 and len({r.arch for r in history}) == 12
    assert fake.members == [0] * 3 + [1] * 9
    assert ensemble.done and ensemble.current == 1


def test_later_member_opens_with_the_earlier_best(wide_space: SearchSpace) -> None:
    ensemble = EnsembleStrategy(MEMBERS, num_samples=12, seed=0, top_k=2)
    ensemble.setup(wide_space)
    fake = Fake()
    told = []
    for _ in range(3):  # the random member's share
        arch = ensemble.ask()
        told.append((arch, fake.evaluate(wide_space, arch)))
        ensemble.tell(*told[-1])
    evolution = ensemble.members[1]
    assert isinstance(evolution, EvolutionStrategy)
    best = [a for a, _ in sorted(told, key=lambda t: -quality(t[0]) if t[1].ok else 1.0)[:2]]
    assert [a for a, _ in evolution.population] == best  # told before its first ask, not re-evaluated
    assert [a for a, _ in ensemble.best(2)] == best
    assert ensemble.ask() not in {a for a, _ in told}


def test_model_based_members_are_fed_too(wide_space: SearchSpace) -> None:
    pytest.importorskip("optuna")
    members = [{"name": "random", "fraction": 1}, {"name": "bayesian", "fraction": 1, "n_startup_trials": 2}]
    ensemble = EnsembleStrategy(members, num_samples=8, seed=1, top_k=3)
    history = run_search(wide_space, ensemble, Fake(), History(), progress=False)
    assert len({r.arch for r in history}) == 8
    bayesian = ensemble.members[1]
    assert len(bayesian.study.trials) >= 3 + 4  # the 3 best fed through enqueue_trial, then its own 4


def test_resume_replays_identically(wide_space: SearchSpace, tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    partial = EnsembleStrategy(MEMBERS, num_samples=12, seed=4)
    partial.setup(wide_space)
    store = History(path)
    for _ in range(5):  # interrupted after the switch to the second member
        arch = partial.ask()
        result = Fake().evaluate(wide_space, arch)
        store.append(arch, result)
        partial.tell(arch, result)
    resumed = run_search(wide_space, EnsembleStrategy(MEMBERS, num_samples=12, seed=4), Fake(), History(path),
                         progress=False)
    full_strategy = EnsembleStrategy(MEMBERS, num_samples=12, seed=4)
    full = run_search(wide_space, full_strategy, Fake(), History(), progress=False)
    assert [r.arch for r in resumed] == [r.arch for r in full]

    restored = EnsembleStrategy(MEMBERS, num_samples=12, seed=4)
    restored.load_state_dict(partial.state_dict())  # before setup: replayed when bound
    restored.setup(wide_space)
    assert restored.num_told == 5 and restored.current == 1
    assert restored.ask() == partial.ask() == full[5].arch


def test_source_run_is_evaluated_first(wide_space: SearchSpace, tmp_path: Path) -> None:
    source = History(tmp_path / "source" / "history.jsonl")
    archs = [Architecture({f"layer{i}/op": op for i in range(16)}) for op in "bca"]
    for arch in archs:
        source.append(arch, Fake().evaluate(wide_space, arch))
    bad = Architecture({"other": 1})
    source.append(bad, EvalResult("ok", {"search/val_acc": 2.0}))  # not of this space: skipped
    ensemble = EnsembleStrategy(MEMBERS, num_samples=6, seed=0, top_k=2, source=str(tmp_path / "source"))
    history = run_search(wide_space, ensemble, Fake(), History(), progress=False)
    # the source's 2 best first: all-"a" scores 1.0, then all-"b" (0.0, earlier than all-"c")
    assert [r.arch for r in history][:2] == [archs[2], archs[0]]
    assert archs[1] not in {r.arch for r in history}
