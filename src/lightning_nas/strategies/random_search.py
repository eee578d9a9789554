"""Random search: uniform sampling without repeats (the baseline every strategy must beat)."""

from __future__ import annotations

from typing import Any

from lightning_nas.arch import Architecture
from lightning_nas.evaluators.base import EvalResult
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies.base import Strategy, register_strategy
from lightning_nas.strategies.operators import sample_unseen

__all__ = ["RandomSearch"]


@register_strategy("random")
class RandomSearch(Strategy):
    """Uniformly random architectures, never repeating one until the space is exhausted.

    Asking twice without telling returns the same architecture (the pending one), so a
    checkpoint taken between ``ask`` and ``tell`` resumes exactly.

    Args:
        num_samples: evaluation budget (architectures to evaluate in total).
        seed: seed of the strategy's ``numpy.random.Generator``.

    Example:
        >>> strategy = RandomSearch(num_samples=20, seed=0)
        >>> strategy.setup(space)
        >>> arch = strategy.ask()
        >>> strategy.tell(arch, evaluator.evaluate(space, arch))
    """

    name = "random"

    def __init__(self, num_samples: int = 20, seed: int = 0) -> None:
        super().__init__(num_samples, seed)
        self._told: list[Architecture] = []
        self._seen: set[Architecture] = set()
        self._pending: Architecture | None = None

    def _propose(self, space: SearchSpace) -> Architecture:
        if self._pending is None:
            self._pending = sample_unseen(space, self.rng, self._seen)
        return self._pending

    def _observe(self, arch: Architecture, result: EvalResult) -> None:
        self._pending = None
        if arch not in self._seen:
            self._seen.add(arch)
            self._told.append(arch)

    def state_dict(self) -> dict[str, Any]:
        """RNG state, counters, the distinct architectures told so far and the pending ask."""
        return {
            **super().state_dict(),
            "seen": [arch.to_dict() for arch in self._told],
            "pending": None if self._pending is None else self._pending.to_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._told = [Architecture(a) for a in state["seen"]]
        self._seen = set(self._told)
        self._pending = None if state["pending"] is None else Architecture(state["pending"])
