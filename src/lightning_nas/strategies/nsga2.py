"""NSGA-II (Deb et al., 2002): elitist multi-objective evolution with constraint-domination."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.objectives.multi import as_objective
from lightning_nas.objectives.pareto import crowding_distance, non_dominated_sort
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies.base import register_strategy
from lightning_nas.strategies.population import PopulationStrategy

__all__ = ["NSGA2Strategy"]


@register_strategy("nsga2")
class NSGA2Strategy(PopulationStrategy):
    """NSGA-II over the objectives of a :class:`~lightning_nas.objectives.MultiObjective`.

    Generation 0 is ``population_size`` random architectures. Every later generation breeds
    ``population_size`` offspring, each from two binary-tournament winners (lower front rank
    wins, then larger crowding distance) by uniform crossover (with probability
    ``crossover_rate``, else a copy of the first) and mutation (each decision re-drawn with
    probability ``mutation_rate``, at least one always). Parents and offspring then compete
    (mu + lambda): whole fronts survive in order and the last one admitted is cut by crowding
    distance. Offspring are never an architecture told before while the space has others left.

    Fronts use Deb's constraint-domination: a feasible candidate beats an infeasible one, the
    lower total violation wins between infeasible ones, and Pareto dominance decides between
    feasible ones. Failed candidates count as infinitely infeasible. The score given to
    :meth:`setup` supplies the view: one with ``vector`` and ``violation`` methods (a
    ``MultiObjective``; its ``directions``, default all ``"max"``) gives every objective; any
    other score is a single objective to maximise (``-inf`` counts as failed).

    Args:
        num_samples: evaluation budget; ``None`` means ``population_size * generations``
            (generation 0 included). The search stops when it is spent, possibly mid-generation.
        seed: seed of the strategy's ``numpy.random.Generator``.
        population_size: members kept per generation (at least 2).
        generations: sets the default budget (see above).
        mutation_rate: probability that each decision of an offspring is re-drawn.
        crossover_rate: probability that an offspring is a crossover of its two parents.

    Example:
        >>> strategy = NSGA2Strategy(population_size=10, generations=4)
        >>> strategy.num_samples
        40
    """

    name = "nsga2"

    def __init__(
        self,
        num_samples: int | None = None,
        seed: int = 0,
        population_size: int = 20,
        generations: int = 5,
        mutation_rate: float = 0.2,
        crossover_rate: float = 0.9,
    ) -> None:
        super().__init__(num_samples, seed, population_size, generations, mutation_rate, crossover_rate)
        self._cache: dict[int, tuple[NDArray[np.float64], float]] = {}
        self._selection: tuple[NDArray[np.intp], NDArray[np.float64]] | None = None

    def _prepare(self, space: SearchSpace) -> None:
        """Forget cached objective vectors: the score (a ``MultiObjective`` gives every objective) may differ."""
        self._cache.clear()
        self._selection = None

    def front(self) -> list[tuple[Architecture, EvalResult]]:
        """The feasible, non-dominated candidates among everything told so far (told order)."""
        indices = list(range(len(self._told)))
        vectors, violations = self._objectives(indices)
        feasible = [i for i in indices if violations[i] == 0.0]
        if not feasible:
            return []
        first = non_dominated_sort(vectors[feasible])[0]
        return [(self._told[k].arch, self._told[k].result) for k in (feasible[int(j)] for j in first)]

    def _evaluate(self, result: EvalResult) -> tuple[NDArray[np.float64], float]:
        """(objectives to minimise, violation) of ``result``; failed -> zeros and ``inf``."""
        objective = as_objective(self.score)
        vector = np.asarray(objective.vector(result), dtype=np.float64).reshape(-1)
        vector = vector * np.array([-1.0 if d == "max" else 1.0 for d in objective.directions])
        violation = float(objective.violation(result))
        if not result.ok or not np.isfinite(vector).all() or math.isnan(violation):
            return np.zeros_like(vector), math.inf
        return vector, violation

    def _objectives(self, indices: list[int]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Stacked minimisation vectors and violations of history entries ``indices``."""
        for i in indices:
            if i not in self._cache:
                self._cache[i] = self._evaluate(self._told[i].result)
        vectors = np.array([self._cache[i][0] for i in indices], dtype=np.float64)
        violations = np.array([self._cache[i][1] for i in indices], dtype=np.float64)
        return vectors, violations

    def _rank(self, indices: list[int]) -> tuple[list[NDArray[np.intp]], NDArray[np.float64]]:
        """Constraint-dominated fronts (positions in ``indices``) and per-position crowding."""
        vectors, violations = self._objectives(indices)
        fronts = non_dominated_sort(vectors, violations=violations)
        crowding = np.zeros(len(indices))
        for front in fronts:
            crowding[front] = crowding_distance(vectors[front])
        return fronts, crowding

    def _survive(self, indices: list[int]) -> list[int]:
        """The ``population_size`` survivors of ``indices``: whole fronts, the last cut by crowding."""
        fronts, crowding = self._rank(indices)
        chosen: list[int] = []
        for front in fronts:
            room = self.population_size - len(chosen)
            if room <= 0:
                break
            if len(front) > room:
                front = front[np.argsort(-crowding[front], kind="stable")[:room]]
            chosen.extend(int(p) for p in front)
        return [indices[p] for p in chosen]

    def _tournament(self) -> int:
        """Binary tournament on (rank, crowding) over the population; returns a history index."""
        if self._selection is None:
            fronts, crowding = self._rank(self._population)
            rank = np.zeros(len(self._population), dtype=np.intp)
            for number, front in enumerate(fronts):
                rank[front] = number
            self._selection = (rank, crowding)
        rank, crowding = self._selection
        a, b = (int(p) for p in self.rng.choice(len(self._population), size=2, replace=False))
        better = (rank[a], -crowding[a]) <= (rank[b], -crowding[b])
        return self._population[a if better else b]

    def _parents(self) -> tuple[int, int | None]:
        return self._tournament(), self._tournament()

    def _observe(self, arch: Architecture, result: EvalResult) -> None:
        index = len(self._told) - 1
        if self._filling:
            self._population.append(index)
            self._selection = None
            return
        self._offspring.append(index)
        if len(self._offspring) == self.population_size:
            self._population = self._survive(self._population + self._offspring)
            self._offspring, self._selection = [], None
            self.generation += 1

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._cache.clear()
        self._selection = None
