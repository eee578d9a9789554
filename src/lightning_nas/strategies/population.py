"""The :class:`PopulationStrategy` base of evolution, NSGA-II and warm-start evolution."""

from __future__ import annotations

from abc import abstractmethod
from numbers import Integral, Real
from typing import Any

from lightning_nas.arch import Architecture
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies.base import Strategy
from lightning_nas.strategies.operators import MAX_RETRIES, crossover, mutate, sample_unseen

__all__ = ["PopulationStrategy", "require"]


def require(ok: bool, key: str, message: str, value: object) -> None:
    """``ValueError("strategy.<key> <message>, got <value>")`` unless ``ok``."""
    if not ok:
        raise ValueError(f"strategy.{key} {message}, got {value!r}")


def is_int(value: object) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_rate(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and 0.0 <= float(value) <= 1.0


class PopulationStrategy(Strategy):
    """A population of told results, filled with random architectures, then bred from parents.

    The first ``population_size`` asks are random architectures never told before; every later
    ask breeds an offspring from the parents :meth:`_parents` selects: uniform crossover of two
    parents with probability ``crossover_rate`` (else a copy of the first), then mutation (every
    decision re-drawn with probability ``mutation_rate``, at least one always). An offspring is
    never an architecture told before while the space has others left (breeding is retried, then
    a random unseen architecture is taken). Population and offspring are indices into ``told``.

    Args:
        num_samples: evaluation budget; ``None`` means ``population_size * generations``.
        seed: seed of the strategy's ``numpy.random.Generator``.
        population_size: members per generation (at least 2).
        generations: sets the default budget.
        mutation_rate: probability that each decision of an offspring is re-drawn.
        crossover_rate: probability that an offspring of two parents is their crossover.
    """

    checked: tuple[str, ...] = ("population_size",)

    def __init__(self, num_samples: int | None, seed: int, population_size: int, generations: int,
                 mutation_rate: float, crossover_rate: float) -> None:
        require(is_int(population_size) and population_size >= 2, "population_size",
                "must be an integer of at least 2", population_size)
        require(is_int(generations) and generations >= 1, "generations", "must be an integer of at least 1",
                generations)
        require(is_rate(mutation_rate), "mutation_rate", "must be a number in [0, 1]", mutation_rate)
        require(is_rate(crossover_rate), "crossover_rate", "must be a number in [0, 1]", crossover_rate)
        require(num_samples is None or is_int(num_samples), "num_samples", "must be an integer or None",
                num_samples)
        super().__init__(population_size * generations if num_samples is None else num_samples, seed)
        self.population_size = int(population_size)
        self.generations = int(generations)
        self.mutation_rate = float(mutation_rate)
        self.crossover_rate = float(crossover_rate)
        self.generation = 0
        self._population: list[int] = []  # indices into told
        self._offspring: list[int] = []  # the next generation being assembled

    @property
    def population(self) -> list[tuple[Architecture, Any]]:
        """The current population as ``(architecture, result)`` pairs."""
        return [(self._told[i].arch, self._told[i].result) for i in self._population]

    def _fitness_of(self, index: int) -> float:
        """:meth:`fitness` of told entry ``index``."""
        return self.fitness(self._told[index].result)

    @property
    def _filling(self) -> bool:
        """Whether the initial (random) population is still being filled."""
        return len(self._population) < self.population_size

    def _propose(self, space: SearchSpace) -> Architecture:
        return sample_unseen(space, self.rng, self._results) if self._filling else self._breed(space)

    @abstractmethod
    def _parents(self) -> tuple[int, int | None] | None:
        """Told indices of the parents of the next offspring (second None: mutation only); None: no parent."""

    def _breed(self, space: SearchSpace) -> Architecture:
        """One offspring of the selected parents, unseen while the space has others left."""
        parents = self._parents()
        if parents is None:  # every member failed: nothing to inherit from
            return sample_unseen(space, self.rng, self._results)
        a = self._told[parents[0]].arch
        b = None if parents[1] is None else self._told[parents[1]].arch
        child = a
        for _ in range(MAX_RETRIES):
            child = a
            if b is not None and self.rng.random() < self.crossover_rate:
                child = crossover(space, a, b, self.rng)
            child = mutate(space, child, self.rng, self.mutation_rate)
            if not self.seen(child):
                return child
        fresh = sample_unseen(space, self.rng, self._results)
        return child if self.seen(fresh) else fresh

    def state_dict(self) -> dict[str, Any]:
        """The base state plus the generation counter, the population and the offspring (JSON-ready)."""
        return {**super().state_dict(), "generation": self.generation, "population": list(self._population),
                "offspring": list(self._offspring)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.generation = int(state["generation"])
        self._population = [int(i) for i in state["population"]]
        self._offspring = [int(i) for i in state["offspring"]]
