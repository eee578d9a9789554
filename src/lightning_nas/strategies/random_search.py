"""Random search: uniform sampling without repeats (the baseline every strategy must beat)."""

from __future__ import annotations

from lightning_nas.arch import Architecture
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

    def _propose(self, space: SearchSpace) -> Architecture:
        return sample_unseen(space, self.rng, self._results)
