"""Evolutionary search: a generational genetic algorithm and regularized (aging) evolution."""

from __future__ import annotations

import math

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.strategies.base import register_strategy
from lightning_nas.strategies.population import PopulationStrategy, is_int, require

__all__ = ["EvolutionStrategy"]

MODES = ("ga", "aging")


@register_strategy("evolution")
class EvolutionStrategy(PopulationStrategy):
    """Evolutionary search in one of two modes.

    ``"ga"``: a generational genetic algorithm. Generation 0 is ``population_size`` random
    architectures; each next generation is the ``elitism`` best of the current one, carried
    over *without* re-evaluation, plus ``population_size - elitism`` offspring, each bred from
    two tournament winners by uniform crossover (with probability ``crossover_rate``, else a
    copy of the first) and mutation (every decision re-drawn with probability
    ``mutation_rate``, at least one always).

    ``"aging"``: regularized evolution (Real et al., 2019). After ``population_size`` random
    architectures, each step samples ``tournament_size`` members, mutates the best, adds the
    child and removes the oldest member.

    The budget counts evaluations only. Elites cost nothing, so a GA generation after the first
    costs ``population_size - elitism`` evaluations and the default budget
    ``population_size * generations`` runs more than ``generations`` generations; the search
    stops when the budget is spent, possibly mid-generation. Offspring are never a parent
    nor any architecture told before, while the space has others left (mutation is retried,
    then a random unseen architecture is taken). Failed candidates (``-inf`` score) are never
    parents or elites while any candidate succeeded.

    Args:
        num_samples: evaluation budget; ``None`` means ``population_size * generations``.
        seed: seed of the strategy's ``numpy.random.Generator``.
        mode: ``"ga"`` or ``"aging"``.
        population_size: members per generation (``"ga"``) or alive at once (``"aging"``).
        generations: sets the default budget (see above).
        mutation_rate: probability that each decision of an offspring is re-drawn.
        crossover_rate: probability that a GA offspring is a crossover of two parents.
        tournament_size: members sampled per tournament; the best of them is the parent.
        elitism: best members of a GA generation carried over to the next (unused in ``"aging"``).

    Attributes:
        generation: ``"ga"``: generations completed after the initial one; ``"aging"``: children
            added after the initial population.

    Example:
        >>> strategy = EvolutionStrategy(mode="aging", population_size=20, tournament_size=5)
        >>> strategy.num_samples
        100
    """

    name = "evolution"
    checked = ("mode", "population_size")

    def __init__(
        self,
        num_samples: int | None = None,
        seed: int = 0,
        mode: str = "ga",
        population_size: int = 50,
        generations: int = 5,
        mutation_rate: float = 0.1,
        crossover_rate: float = 0.8,
        tournament_size: int = 5,
        elitism: int = 2,
    ) -> None:
        require(mode in MODES, "mode", f"must be one of {list(MODES)}", mode)
        require(is_int(tournament_size) and 1 <= tournament_size <= population_size, "tournament_size",
                f"must be an integer in [1, population_size={population_size}]", tournament_size)
        require(is_int(elitism) and 0 <= elitism < population_size, "elitism",
                f"must be an integer in [0, population_size={population_size})", elitism)
        super().__init__(num_samples, seed, population_size, generations, mutation_rate, crossover_rate)
        self.mode = mode
        self.tournament_size = int(tournament_size)
        self.elitism = int(elitism)

    def best(self) -> tuple[Architecture, float]:
        """The best architecture told so far and its score (the earliest one on ties)."""
        if not self._told:
            raise RuntimeError("EvolutionStrategy.best() needs at least one told result")
        index = max(range(len(self._told)), key=lambda i: (self._fitness_of(i), -i))
        return self._told[index].arch, self._fitness_of(index)

    def _observe(self, arch: Architecture, result: EvalResult) -> None:
        index = len(self._told) - 1
        if self._filling:
            self._population.append(index)
            if self.mode == "ga" and len(self._population) == self.population_size:
                self._offspring = self._elites()
        elif self.mode == "aging":
            self._population.append(index)
            del self._population[0]
            self.generation += 1
        else:
            self._offspring.append(index)
            if len(self._offspring) == self.population_size:
                self._population, self.generation = self._offspring, self.generation + 1
                self._offspring = self._elites()

    def _elites(self) -> list[int]:
        """The ``elitism`` best successful members of the population (best first, oldest on ties)."""
        ranked = sorted(self._population, key=lambda i: (-self._fitness_of(i), i))  # ties: oldest, as best()
        return [i for i in ranked[: self.elitism] if self._fitness_of(i) > -math.inf]

    def _tournament(self) -> int | None:
        """Best of ``tournament_size`` successful members drawn without replacement; None if none."""
        alive = [i for i in self._population if self._fitness_of(i) > -math.inf]
        if not alive:
            return None
        picks = self.rng.choice(len(alive), size=min(self.tournament_size, len(alive)), replace=False)
        return max((alive[int(p)] for p in picks), key=lambda i: (self._fitness_of(i), i))

    def _parents(self) -> tuple[int, int | None] | None:
        """Two tournament winners (``"ga"``) or one (``"aging"``); None when every member failed."""
        first = self._tournament()
        if first is None:
            return None
        return first, self._tournament() if self.mode == "ga" else None
