"""``strategy=auto``: pick a strategy and its settings from the space, the budget and the evaluator.

The decision table (README, "Choosing a strategy") comes from ``benchmarks/search_quality.py`` on
the shipped ``nb201_synthetic`` table; the thresholds below are its numbers:

1. The budget covers the space (``num_samples >= cardinality``): ``random``, which never repeats,
   so it enumerates the space.
2. The evaluator has fidelities (a table with ``<column>@<epochs>`` columns forming a Hyperband
   ladder, or training with ``max_epochs >= MIN_LADDER_EPOCHS``) and the budget is at least
   ``MIN_MULTI_FIDELITY_BUDGET`` full evaluations: ``bohb`` over that ladder, its job count set so
   that its cost matches ``num_samples`` full evaluations.
3. A candidate costs less than ``CHEAP_CANDIDATE_S`` seconds and the budget exceeds
   ``LARGE_BUDGET`` evaluations: regularized ``evolution`` (the model-based samplers' per-ask
   overhead would exceed the evaluations themselves).
4. Otherwise ``bayesian`` (TPE) when Optuna is installed, else regularized ``evolution``.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from dataclasses import dataclass, field
from typing import Any

from lightning_nas.evaluators.base import Evaluator
from lightning_nas.evaluators.proxy import ProxyEvaluator
from lightning_nas.evaluators.tabular import TabularEvaluator
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies.base import STRATEGIES, SearchMethod, Strategy
from lightning_nas.strategies.hyperband import rung_epochs

__all__ = ["AutoStrategy", "Choice", "candidate_cost_s", "choose", "fidelity_ladder", "ladder_jobs"]

log = logging.getLogger(__name__)

MIN_MULTI_FIDELITY_BUDGET = 25
"""Full evaluations' worth of budget from which BOHB beats single-fidelity TPE (search_quality)."""
LARGE_BUDGET = 1000
CHEAP_CANDIDATE_S = 0.05
MIN_LADDER_EPOCHS = 9
ETA = 3


@dataclass(frozen=True)
class Choice:
    """A strategy name, its constructor arguments and the reason it was chosen."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


def fidelity_ladder(evaluator: Evaluator | None) -> list[int]:
    """The Hyperband rungs (epochs) ``evaluator`` can run, ``eta = 3``; empty when it has none."""
    if isinstance(evaluator, TabularEvaluator):
        if len(evaluator.fidelities) < 2:
            return []
        ladder = rung_epochs(evaluator.fidelities[0], evaluator.fidelities[-1], ETA)
        return ladder if set(ladder) <= set(evaluator.fidelities) else []
    max_epochs = getattr(evaluator, "max_epochs", None)
    if callable(getattr(evaluator, "build", None)) and isinstance(max_epochs, int) and max_epochs >= MIN_LADDER_EPOCHS:
        return rung_epochs(1, max_epochs, ETA)  # a training evaluator: epochs are the resource
    return []


def candidate_cost_s(evaluator: Evaluator | None) -> float:
    """Seconds one full evaluation costs: a table's mean ``train_time_s`` (simulated), a proxy's
    fraction of a second, ``inf`` (unknown, expensive) for training."""
    if isinstance(evaluator, TabularEvaluator):
        return evaluator.mean_cost_s()
    if isinstance(evaluator, ProxyEvaluator):
        return 0.1
    return math.inf


def ladder_jobs(ladder: list[int], full_evaluations: int) -> int:
    """Hyperband jobs whose cost (proportional to epochs, promotions continuing) is ``full_evaluations``."""
    s_max = len(ladder) - 1
    jobs = cost = 0.0
    for s in range(s_max, -1, -1):
        n = math.ceil((s_max + 1) / (s + 1) * ETA**s)
        for rung in range(s_max - s, s_max + 1):
            count = n // ETA ** (rung - s_max + s)
            if count == 0:
                break
            previous = ladder[rung - 1] if rung > s_max - s else 0
            jobs, cost = jobs + count, cost + count * (ladder[rung] - previous) / ladder[-1]
    return max(1, round(full_evaluations * jobs / cost))


def choose(cardinality: int, num_samples: int, cost_s: float, ladder: list[int]) -> Choice:
    """The decision table of the module docstring."""
    if num_samples >= cardinality:
        return Choice("random", {}, f"the budget ({num_samples}) covers the space ({cardinality})")
    if ladder and num_samples >= MIN_MULTI_FIDELITY_BUDGET:
        jobs = ladder_jobs(ladder, num_samples)
        return Choice("bohb", {"num_samples": jobs, "min_epochs": ladder[0], "max_epochs": ladder[-1], "eta": ETA},
                      f"fidelities {ladder} and a budget of {num_samples} full evaluations ({jobs} rung jobs)")
    if cost_s < CHEAP_CANDIDATE_S and num_samples > LARGE_BUDGET:
        return Choice("evolution", {"mode": "aging", "population_size": 50, "tournament_size": 10},
                      f"{num_samples} evaluations of {cost_s * 1000:.0f} ms: a model's per-ask cost would dominate")
    if importlib.util.find_spec("optuna") is not None:
        return Choice("bayesian", {}, f"a budget of {num_samples} evaluations in a space of {cardinality:.3g}")
    return Choice("evolution", {"mode": "aging", "population_size": 20, "tournament_size": 5},
                  "no Optuna installed for the bayesian strategy")


class AutoStrategy(SearchMethod):
    """Chooses and builds a strategy with :func:`choose` (``strategy=auto``).

    Args:
        num_samples: the budget in full evaluations.
        seed: seed of the chosen strategy.

    Example:
        >>> auto = AutoStrategy(num_samples=100, seed=0)
        >>> strategy = auto.build(space, evaluator)  # doctest: +SKIP
    """

    name = "auto"

    def __init__(self, num_samples: int = 50, seed: int = 0) -> None:
        if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
            raise ValueError(f"strategy.num_samples must be a positive int, got {num_samples!r}")
        self.num_samples, self.seed = num_samples, int(seed)
        self.choice: Choice | None = None

    def decide(self, space: SearchSpace, evaluator: Evaluator | None) -> Choice:
        """The :class:`Choice` for ``space`` and ``evaluator`` (logged once)."""
        self.choice = choose(space.cardinality, self.num_samples, candidate_cost_s(evaluator),
                             fidelity_ladder(evaluator))
        log.info("strategy=auto chose %s %s: %s", self.choice.name, self.choice.kwargs, self.choice.reason)
        return self.choice

    def build(self, space: SearchSpace, evaluator: Evaluator | None) -> Strategy:
        """The chosen strategy, constructed with this budget and seed."""
        choice = self.decide(space, evaluator)
        kwargs = {"num_samples": self.num_samples, "seed": self.seed, **choice.kwargs}
        strategy: Strategy = STRATEGIES.get(choice.name)(**kwargs)
        return strategy

    def resolve(self, space: SearchSpace, evaluator: Any) -> SearchMethod:
        """The strategy :meth:`build` chooses: ``run(cfg)`` runs it in place of this one."""
        return self.build(space, evaluator)
