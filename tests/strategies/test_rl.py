"""RLStrategy: REINFORCE learns a rewarded choice; determinism and JSON state round trip."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.results.history import History
from lightning_nas.search import run_search
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies import STRATEGIES
from lightning_nas.strategies.rl import RLStrategy


def reward_of(arch: Architecture) -> EvalResult:
    """1 for each layer whose op is "a" (the first four layers only), as a fraction."""
    hits = sum(arch[f"layer{i}/op"] == "a" for i in range(4))
    return EvalResult("ok", {"search/val_acc": hits / 4})


def drive(strategy: RLStrategy, steps: int) -> list[Architecture]:
    asked = []
    for _ in range(steps):
        arch = strategy.ask()
        asked.append(arch)
        strategy.tell(arch, reward_of(arch))
    return asked


def test_registered() -> None:
    assert STRATEGIES.get("rl") is RLStrategy


def test_reinforce_increases_probability_of_rewarded_choice(wide_space: SearchSpace) -> None:
    strategy = RLStrategy(num_samples=60, seed=0, hidden_size=16, lr=0.05, entropy_weight=0.0)
    strategy.setup(wide_space)
    probe = wide_space.sample(np.random.default_rng(0))
    before = strategy.probabilities(probe)["layer0/op"][0]
    drive(strategy, 60)
    after = strategy.probabilities(probe)["layer0/op"][0]
    assert before == pytest.approx(0.25, abs=0.05)
    assert after > 0.5 > before


def test_deterministic_and_state_round_trip(wide_space: SearchSpace) -> None:
    first = RLStrategy(num_samples=20, seed=3, hidden_size=8, lr=0.05)
    first.setup(wide_space)
    drive(first, 6)
    state = json.loads(json.dumps(first.state_dict()))  # JSON-ready
    rest = drive(first, 6)

    resumed = RLStrategy(num_samples=20, seed=3, hidden_size=8, lr=0.05)
    resumed.load_state_dict(state)  # before setup: applied at setup
    resumed.setup(wide_space)
    assert drive(resumed, 6) == rest
    assert resumed.baseline == first.baseline

    replayed = RLStrategy(num_samples=20, seed=3, hidden_size=8, lr=0.05)
    replayed.setup(wide_space)
    assert drive(replayed, 12)[6:] == rest  # same seed and rewards: the same asks


def test_failures_get_finite_penalty_and_run_search_resumes(wide_space: SearchSpace, tmp_path: Path) -> None:
    strategy = RLStrategy(num_samples=3, seed=0, hidden_size=8, failure_penalty=2.0)
    strategy.setup(wide_space)
    assert strategy.reward(EvalResult.failed("boom")) == -2.0
    strategy.tell(strategy.ask(), EvalResult("ok", {"search/val_acc": 0.5}))
    assert strategy.reward(EvalResult.failed("boom")) == pytest.approx(0.5 - 2.0)
    strategy.tell(strategy.ask(), EvalResult.failed("boom"))
    assert strategy.baseline is not None and math.isfinite(strategy.baseline)

    class Fake:
        def evaluate(self, space: SearchSpace, arch: Architecture) -> EvalResult:
            return reward_of(arch)

    path = tmp_path / "history.jsonl"
    run_search(wide_space, RLStrategy(num_samples=4, seed=1, hidden_size=8), Fake(), History(path), progress=False)
    resumed = run_search(wide_space, RLStrategy(num_samples=8, seed=1, hidden_size=8), Fake(), History(path),
                         progress=False)
    full = run_search(wide_space, RLStrategy(num_samples=8, seed=1, hidden_size=8), Fake(), History(),
                      progress=False)
    assert [r.arch for r in resumed] == [r.arch for r in full]


def test_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="baseline_decay"):
        RLStrategy(baseline_decay=1.0)
    with pytest.raises(ValueError, match="lr"):
        RLStrategy(lr=0)
    with pytest.raises(RuntimeError, match="setup"):
        RLStrategy().probabilities(Architecture({}))
