"""NSGA-II (Deb et al., 2002): elitist multi-objective evolution with constraint-domination."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lightning_nas.arch import Architecture
from lightning_nas.evaluators.base import EvalResult
from lightning_nas.objectives.pareto import crowding_distance, non_dominated_sort
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies.base import ScoreFn, Strategy, default_score, register_strategy
from lightning_nas.strategies.operators import MAX_RETRIES, crossover, mutate, sample_unseen

__all__ = ["NSGA2Strategy"]


def _require(ok: bool, key: str, message: str, value: object) -> None:
    if not ok:
        raise ValueError(f"strategy.{key} {message}, got {value!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_rate(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0


@register_strategy("nsga2")
class NSGA2Strategy(Strategy):
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
        _require(_is_int(population_size) and population_size >= 2, "population_size",
                 "must be an integer of at least 2", population_size)
        _require(_is_int(generations) and generations >= 1, "generations", "must be an integer of at least 1",
                 generations)
        _require(_is_rate(mutation_rate), "mutation_rate", "must be a number in [0, 1]", mutation_rate)
        _require(_is_rate(crossover_rate), "crossover_rate", "must be a number in [0, 1]", crossover_rate)
        _require(num_samples is None or _is_int(num_samples), "num_samples", "must be an integer or None",
                 num_samples)
        super().__init__(population_size * generations if num_samples is None else num_samples, seed)
        self.population_size = population_size
        self.generations = generations
        self.mutation_rate = float(mutation_rate)
        self.crossover_rate = float(crossover_rate)
        self.generation = 0
        self._history: list[tuple[Architecture, EvalResult]] = []
        self._seen: set[Architecture] = set()
        self._population: list[int] = []  # indices into _history
        self._offspring: list[int] = []
        self._pending: Architecture | None = None
        self._cache: dict[int, tuple[NDArray[np.float64], float]] = {}
        self._selection: tuple[NDArray[np.intp], NDArray[np.float64]] | None = None

    def setup(self, space: SearchSpace, score: ScoreFn = default_score) -> None:
        """Bind the space and the score (a ``MultiObjective`` gives the multi-objective view).

        Args:
            space: the search space.
            score: the objective; its ``vector``, ``violation`` and ``directions`` are used if present.
        """
        super().setup(space, score)
        self._cache.clear()
        self._selection = None

    @property
    def population(self) -> list[tuple[Architecture, EvalResult]]:
        """The current parent population as ``(architecture, result)`` pairs."""
        return [self._history[i] for i in self._population]

    def front(self) -> list[tuple[Architecture, EvalResult]]:
        """The feasible, non-dominated candidates among everything told so far (told order)."""
        indices = list(range(len(self._history)))
        vectors, violations = self._objectives(indices)
        feasible = [i for i in indices if violations[i] == 0.0]
        if not feasible:
            return []
        first = non_dominated_sort(vectors[feasible])[0]
        return [self._history[feasible[int(j)]] for j in first]

    def _evaluate(self, result: EvalResult) -> tuple[NDArray[np.float64], float]:
        """(objectives to minimise, violation) of ``result``; failed -> zeros and ``inf``."""
        score: Any = self.score
        if callable(getattr(score, "vector", None)) and callable(getattr(score, "violation", None)):
            vector = np.asarray(score.vector(result), dtype=np.float64).reshape(-1)
            directions = getattr(score, "directions", ["max"] * len(vector))
            vector = vector * np.array([-1.0 if d == "max" else 1.0 for d in directions])
            violation = float(score.violation(result))
        else:
            value = float(score(result))
            vector = np.array([-value])
            violation = 0.0 if math.isfinite(value) else math.inf
        if not result.ok or not np.isfinite(vector).all() or math.isnan(violation):
            return np.zeros_like(vector), math.inf
        return vector, violation

    def _objectives(self, indices: list[int]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Stacked minimisation vectors and violations of history entries ``indices``."""
        for i in indices:
            if i not in self._cache:
                self._cache[i] = self._evaluate(self._history[i][1])
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

    def _breed(self, space: SearchSpace) -> Architecture:
        """One offspring of two tournament winners, unseen while the space has others left."""
        a = self._history[self._tournament()][0]
        b = self._history[self._tournament()][0]
        child = a
        for _ in range(MAX_RETRIES):
            child = crossover(space, a, b, self.rng) if self.rng.random() < self.crossover_rate else a
            child = mutate(space, child, self.rng, self.mutation_rate)
            if child not in self._seen:
                return child
        fresh = sample_unseen(space, self.rng, self._seen)
        return child if fresh in self._seen else fresh

    def _propose(self, space: SearchSpace) -> Architecture:
        if self._pending is None:
            if len(self._population) < self.population_size:
                self._pending = sample_unseen(space, self.rng, self._seen)
            else:
                self._pending = self._breed(space)
        return self._pending

    def _observe(self, arch: Architecture, result: EvalResult) -> None:
        self._pending = None
        index = len(self._history)
        self._history.append((arch, result))
        self._seen.add(arch)
        if len(self._population) < self.population_size:
            self._population.append(index)
            self._selection = None
            return
        self._offspring.append(index)
        if len(self._offspring) == self.population_size:
            self._population = self._survive(self._population + self._offspring)
            self._offspring, self._selection = [], None
            self.generation += 1

    def state_dict(self) -> dict[str, Any]:
        """RNG state, counters, every told result, the population and the pending ask (JSON-ready)."""
        return {
            **super().state_dict(),
            "population_size": self.population_size,
            "generation": self.generation,
            "history": [{"arch": a.to_dict(), "result": r.to_dict()} for a, r in self._history],
            "population": list(self._population),
            "offspring": list(self._offspring),
            "pending": None if self._pending is None else self._pending.to_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["population_size"] != self.population_size:
            raise ValueError(f"strategy.population_size is {self.population_size!r} but the checkpoint has "
                             f"{state['population_size']!r}")
        super().load_state_dict(state)
        self.generation = int(state["generation"])
        self._history = [
            (Architecture(entry["arch"]), EvalResult.from_dict(entry["result"])) for entry in state["history"]
        ]
        self._seen = {arch for arch, _ in self._history}
        self._population = [int(i) for i in state["population"]]
        self._offspring = [int(i) for i in state["offspring"]]
        self._pending = None if state["pending"] is None else Architecture(state["pending"])
        self._cache.clear()
        self._selection = None
