"""Evolutionary search: a generational genetic algorithm and regularized (aging) evolution."""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

from lightning_nas.arch import Architecture
from lightning_nas.evaluators.base import EvalResult
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies.base import Strategy, register_strategy
from lightning_nas.strategies.operators import MAX_RETRIES, crossover, mutate, sample_unseen

__all__ = ["EvolutionStrategy"]

MODES = ("ga", "aging")


def _require(ok: bool, key: str, message: str, value: object) -> None:
    if not ok:
        raise ValueError(f"strategy.{key} {message}, got {value!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_rate(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and 0.0 <= float(value) <= 1.0


@register_strategy("evolution")
class EvolutionStrategy(Strategy):
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
        _require(mode in MODES, "mode", f"must be one of {list(MODES)}", mode)
        _require(_is_int(population_size) and population_size >= 2, "population_size",
                 "must be an integer of at least 2", population_size)
        _require(_is_int(generations) and generations >= 1, "generations", "must be an integer of at least 1",
                 generations)
        _require(_is_rate(mutation_rate), "mutation_rate", "must be a number in [0, 1]", mutation_rate)
        _require(_is_rate(crossover_rate), "crossover_rate", "must be a number in [0, 1]", crossover_rate)
        _require(_is_int(tournament_size) and 1 <= tournament_size <= population_size, "tournament_size",
                 f"must be an integer in [1, population_size={population_size}]", tournament_size)
        _require(_is_int(elitism) and 0 <= elitism < population_size, "elitism",
                 f"must be an integer in [0, population_size={population_size})", elitism)
        _require(num_samples is None or _is_int(num_samples), "num_samples", "must be an integer or None",
                 num_samples)
        super().__init__(population_size * generations if num_samples is None else num_samples, seed)
        self.mode = mode
        self.population_size = int(population_size)
        self.generations = int(generations)
        self.mutation_rate = float(mutation_rate)
        self.crossover_rate = float(crossover_rate)
        self.tournament_size = int(tournament_size)
        self.elitism = int(elitism)
        self.generation = 0
        self._history: list[tuple[Architecture, EvalResult]] = []
        self._seen: set[Architecture] = set()
        self._population: list[int] = []  # indices into _history; "aging": oldest first
        self._offspring: list[int] = []  # "ga": the next generation being assembled, elites first
        self._pending: Architecture | None = None

    @property
    def population(self) -> list[tuple[Architecture, EvalResult]]:
        """The current population as ``(architecture, result)`` pairs (``"aging"``: oldest first)."""
        return [self._history[i] for i in self._population]

    def best(self) -> tuple[Architecture, float]:
        """The best architecture told so far and its score (the earliest one on ties)."""
        if not self._history:
            raise RuntimeError("EvolutionStrategy.best() needs at least one told result")
        index = max(range(len(self._history)), key=lambda i: (self._fitness(i), -i))
        return self._history[index][0], self._fitness(index)

    def _fitness(self, index: int) -> float:
        """The score of history entry ``index``; ``-inf`` when it failed or scores NaN."""
        result = self._history[index][1]
        value = float(self.score(result)) if result.ok else -math.inf
        return -math.inf if math.isnan(value) else value

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
        ranked = sorted(self._population, key=lambda i: (-self._fitness(i), i))  # ties: oldest, as best()
        return [i for i in ranked[: self.elitism] if self._fitness(i) > -math.inf]

    def _tournament(self) -> int | None:
        """Best of ``tournament_size`` successful members drawn without replacement; None if none."""
        alive = [i for i in self._population if self._fitness(i) > -math.inf]
        if not alive:
            return None
        picks = self.rng.choice(len(alive), size=min(self.tournament_size, len(alive)), replace=False)
        return max((alive[int(p)] for p in picks), key=lambda i: (self._fitness(i), i))

    def _breed(self, space: SearchSpace) -> Architecture:
        """One offspring of tournament winners (two in ``"ga"``, one in ``"aging"``)."""
        first = self._tournament()
        if first is None:  # every member failed: nothing to inherit from
            return sample_unseen(space, self.rng, self._seen)
        second = self._tournament() if self.mode == "ga" else None
        a = self._history[first][0]
        b = a if second is None else self._history[second][0]
        child = a
        for _ in range(MAX_RETRIES):
            child = a
            if self.mode == "ga" and self.rng.random() < self.crossover_rate:
                child = crossover(space, a, b, self.rng)
            child = mutate(space, child, self.rng, self.mutation_rate)
            if child not in self._seen:
                return child
        fresh = sample_unseen(space, self.rng, self._seen)
        return child if fresh in self._seen else fresh

    def state_dict(self) -> dict[str, Any]:
        """RNG state, counters, every told result, the population and the pending ask (JSON-ready)."""
        return {
            **super().state_dict(),
            "mode": self.mode,
            "population_size": self.population_size,
            "generation": self.generation,
            "history": [{"arch": a.to_dict(), "result": r.to_dict()} for a, r in self._history],
            "population": list(self._population),
            "offspring": list(self._offspring),
            "pending": None if self._pending is None else self._pending.to_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("mode", "population_size"):
            if state[key] != getattr(self, key):
                mine = getattr(self, key)
                raise ValueError(f"strategy.{key} is {mine!r} but the checkpoint has {state[key]!r}")
        super().load_state_dict(state)
        self.generation = int(state["generation"])
        self._history = [
            (Architecture(entry["arch"]), EvalResult.from_dict(entry["result"])) for entry in state["history"]
        ]
        self._seen = {arch for arch, _ in self._history}
        self._population = [int(i) for i in state["population"]]
        self._offspring = [int(i) for i in state["offspring"]]
        self._pending = None if state["pending"] is None else Architecture(state["pending"])
