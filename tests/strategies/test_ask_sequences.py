"""Behaviour fixtures: with fixed seeds on the digits search space, every strategy asks for the same
architectures as when ``fixtures/ask_sequences.json`` was recorded (before the Strategy/loop rework).

The evaluator is a cheap deterministic function of the architecture (no training), with some failed
and some NaN candidates, so the sequences exercise the failure paths too. To re-record after an
intended change of behaviour: ``python tests/strategies/test_ask_sequences.py`` (say why in the commit).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
from torch import nn

from lightning_nas.arch import Architecture, EvalResult, Job
from lightning_nas.evaluators.base import Evaluator
from lightning_nas.nn import LayerChoice
from lightning_nas.objectives.multi import MultiObjective
from lightning_nas.objectives.score import Objective
from lightning_nas.results.history import History
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.spaces.efficient_convnet import EfficientConvNetSpace
from lightning_nas.strategies import STRATEGIES

FIXTURE = Path(__file__).parent / "fixtures" / "ask_sequences.json"

DIGITS_SHAPE, DIGITS_CLASSES = (1, 8, 8), 10

CASES: dict[str, dict[str, Any]] = {
    "random": {"strategy": "random", "kwargs": {"num_samples": 30, "seed": 3}},
    "evolution_ga": {"strategy": "evolution", "kwargs": {"num_samples": 40, "seed": 1, "population_size": 8,
                                                         "tournament_size": 3, "mutation_rate": 0.2}},
    "evolution_aging": {"strategy": "evolution", "kwargs": {"num_samples": 30, "seed": 2, "mode": "aging",
                                                            "population_size": 8, "tournament_size": 3}},
    "nsga2_multi": {"strategy": "nsga2", "objective": "multi",
                    "kwargs": {"num_samples": 40, "seed": 4, "population_size": 8}},
    "nsga2_scalar": {"strategy": "nsga2", "kwargs": {"num_samples": 30, "seed": 5, "population_size": 6}},
    "rl": {"strategy": "rl", "kwargs": {"num_samples": 25, "seed": 6, "hidden_size": 16, "lr": 0.05}},
    "bayesian_tpe": {"strategy": "bayesian", "kwargs": {"num_samples": 20, "seed": 7, "n_startup_trials": 5}},
    "bayesian_multi": {"strategy": "bayesian", "objective": "multi",
                       "kwargs": {"num_samples": 20, "seed": 8, "sampler": "nsga2", "population_size": 6}},
    "ensemble": {"strategy": "ensemble", "kwargs": {"num_samples": 24, "seed": 9, "top_k": 3, "members": [
        {"name": "random", "fraction": 0.25},
        {"name": "evolution", "fraction": 0.75, "population_size": 6, "tournament_size": 2}]}},
    "warm_evolution": {"strategy": "warm_evolution", "kwargs": {"num_samples": 24, "seed": 10, "population_size": 6,
                                                                "tournament_size": 2, "top_k": 3}},
    "hyperband_asha": {"strategy": "hyperband", "kwargs": {"num_samples": 24, "seed": 11, "min_epochs": 1,
                                                           "max_epochs": 9, "eta": 3}},
    "hyperband": {"strategy": "hyperband", "kwargs": {"num_samples": 24, "seed": 12, "min_epochs": 1,
                                                      "max_epochs": 9, "eta": 3, "mode": "hyperband"}},
    # a space of 8 architectures and budgets beyond it: duplicate asks, answered without evaluation
    "random_tiny": {"strategy": "random", "space": "tiny", "kwargs": {"num_samples": 12, "seed": 13}},
    "evolution_tiny": {"strategy": "evolution", "space": "tiny", "kwargs": {
        "num_samples": 14, "seed": 14, "mode": "aging", "population_size": 4, "tournament_size": 2}},
    "nsga2_tiny": {"strategy": "nsga2", "space": "tiny", "kwargs": {"num_samples": 14, "seed": 15,
                                                                   "population_size": 4}},
    "rl_tiny": {"strategy": "rl", "space": "tiny", "kwargs": {"num_samples": 14, "seed": 16, "hidden_size": 8}},
    "bayesian_tiny": {"strategy": "bayesian", "space": "tiny", "kwargs": {"num_samples": 12, "seed": 17,
                                                                         "n_startup_trials": 3}},
}


def _unit(arch: Architecture, salt: str) -> float:
    """A number in [0, 1) that is a fixed function of ``arch`` and ``salt``."""
    return int(hashlib.sha1(f"{salt}:{arch.to_json()}".encode()).hexdigest()[:8], 16) / 2**32


def fake_result(arch: Architecture, epochs: int = 1) -> EvalResult:
    """About 8% failed and 4% NaN candidates; accuracy grows with ``epochs`` (multi-fidelity)."""
    if _unit(arch, "fail") < 0.08:
        return EvalResult.failed("synthetic failure", {"model/params": 1.0})
    accuracy = math.nan if _unit(arch, "nan") < 0.04 else 0.5 + 0.4 * _unit(arch, "acc") * (1 - 0.5 / epochs)
    return EvalResult("ok", {"search/val_acc": accuracy, "model/params": 1e3 + 5e4 * _unit(arch, "params")})


class FakeEvaluator(Evaluator):
    """Scores with :func:`fake_result`; also a multi-fidelity evaluator (``evaluate_at``)."""

    def evaluate(self, space: SearchSpace, arch: Architecture) -> EvalResult:
        return fake_result(arch)

    def evaluate_at(self, space: SearchSpace, arch: Architecture, epochs: int,
                    resume_from: Any | None) -> tuple[EvalResult, Any]:
        return fake_result(arch, epochs), f"{arch.digest()}-e{epochs}"


class TinySpace(SearchSpace):
    """Three binary decisions on the digits input: 8 architectures."""

    name = "tiny"

    def construct(self) -> nn.Module:
        return nn.Sequential(*(LayerChoice({"a": nn.Identity, "b": nn.Identity}, label=f"op{i}") for i in range(3)))


def digits_space(kind: str = "efficient_convnet") -> SearchSpace:
    if kind == "tiny":
        return TinySpace(input_shape=DIGITS_SHAPE, num_classes=DIGITS_CLASSES)
    return EfficientConvNetSpace(input_shape=DIGITS_SHAPE, num_classes=DIGITS_CLASSES)


def _objective(case: dict[str, Any]) -> Any:
    if case.get("objective") == "multi":
        return MultiObjective({"accuracy": "max", "params": "min"}, constraints={"max_params": 40000})
    return Objective({"accuracy": 1.0})


def _source_run(folder: Path) -> Path:
    """A previous run for the warm start: 12 random architectures with their fake results."""
    space, history = digits_space(), History(folder / "history.jsonl")
    import numpy as np

    rng = np.random.default_rng(0)
    for _ in range(12):
        arch = space.sample(rng)
        history.append(arch, fake_result(arch))
    return folder


def record_case(name: str, folder: Path) -> dict[str, Any]:
    """The asks and the evaluated sequence of case ``name`` (digests; ``@epochs`` for multi-fidelity)."""
    from lightning_nas.search import run_search

    case = CASES[name]
    kwargs = dict(case["kwargs"])
    if case["strategy"] == "warm_evolution":
        kwargs["source"] = str(_source_run(folder))
    strategy = STRATEGIES.get(case["strategy"])(**kwargs)
    asks: list[str] = []
    ask_job = strategy.ask_job

    def recording_ask() -> Job:
        job = ask_job()
        asks.append(job.arch.digest())
        return job

    strategy.ask_job = recording_ask  # type: ignore[method-assign]
    space, history = digits_space(case.get("space", "efficient_convnet")), History()
    run_search(space, strategy, FakeEvaluator(), history, score=_objective(case), progress=False)
    evaluated = [r.arch.digest() + (f"@{r.extra['epochs']}" if "epochs" in r.extra else "") for r in history]
    if case["strategy"] == "hyperband":  # asks are jobs (architecture and epochs): the evaluated sequence
        asks = evaluated
    return {"asks": asks, "evaluated": evaluated}


@pytest.mark.parametrize("name", sorted(CASES))
def test_strategy_asks_the_recorded_sequence(name: str, tmp_path: Path) -> None:
    expected = json.loads(FIXTURE.read_text())[name]
    if CASES[name]["strategy"] == "bayesian":
        pytest.importorskip("optuna")
    got = record_case(name, tmp_path)
    assert got["evaluated"] == expected["evaluated"]
    assert got["asks"] == expected["asks"]


def main() -> None:
    import tempfile

    recorded = {}
    for name in sorted(CASES):
        with tempfile.TemporaryDirectory() as folder:
            recorded[name] = record_case(name, Path(folder))
        print(name, len(recorded[name]["asks"]), len(recorded[name]["evaluated"]), file=sys.stderr)
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
