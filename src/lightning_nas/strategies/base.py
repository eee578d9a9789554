"""The :class:`Strategy` interface (what to try next): ask / tell, with checkpointable state."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np

from lightning_nas.arch import Architecture
from lightning_nas.evaluators.base import EvalResult
from lightning_nas.registry import Registry
from lightning_nas.spaces.base import SearchSpace

__all__ = ["STRATEGIES", "ScoreFn", "Strategy", "default_score", "register_strategy"]

ScoreFn = Callable[[EvalResult], float]


def default_score(result: EvalResult) -> float:
    """Validation accuracy; ``-inf`` for a failed or NaN candidate (never selected)."""
    value = result.metrics.get("search/val_acc", math.nan)
    return value if result.ok and math.isfinite(value) else -math.inf


class Strategy(ABC):
    """A sample-based search algorithm driven by :func:`lightning_nas.search.run_search`.

    The loop calls :meth:`ask` for the next architecture and :meth:`tell` with its result,
    strictly alternating. Strategies take their randomness from ``self.rng`` only, so a
    search replayed from its history asks exactly the same architectures again.

    Args:
        num_samples: evaluation budget (architectures to evaluate in total).
        seed: seed of the strategy's ``numpy.random.Generator``.
    """

    name: str = "strategy"

    def __init__(self, num_samples: int, seed: int = 0) -> None:
        if int(num_samples) < 1:
            raise ValueError(f"strategy.num_samples must be at least 1, got {num_samples!r}")
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.space: SearchSpace | None = None
        self.score: ScoreFn = default_score
        self.num_told = 0

    def setup(self, space: SearchSpace, score: ScoreFn = default_score) -> None:
        """Bind the search space and the scalar score to maximise; called once before asking."""
        self.space = space
        self.score = score

    @property
    def done(self) -> bool:
        return self.num_told >= self.num_samples

    def ask(self) -> Architecture:
        """The next architecture to evaluate."""
        if self.space is None:
            raise RuntimeError(f"{type(self).__name__}.setup(space) must be called before ask()")
        return self._propose(self.space)

    def tell(self, arch: Architecture, result: EvalResult) -> None:
        """Report the result of evaluating ``arch``."""
        self.num_told += 1
        self._observe(arch, result)

    @abstractmethod
    def _propose(self, space: SearchSpace) -> Architecture: ...

    @abstractmethod
    def _observe(self, arch: Architecture, result: EvalResult) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        """RNG state and counters; subclasses add their population."""
        return {"rng": self.rng.bit_generator.state, "num_told": self.num_told}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.num_told = int(state["num_told"])


STRATEGIES: Registry[type[Strategy]] = Registry("strategy")
register_strategy = STRATEGIES.register
