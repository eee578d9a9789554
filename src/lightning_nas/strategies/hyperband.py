"""Multi-fidelity search: ASHA and Hyperband over training epochs, continuing from checkpoints.

The strategy asks for *jobs* (an architecture, a rung, its epoch budget and the state to continue
from); the one loop, :func:`~lightning_nas.search.run_search`, evaluates them with the evaluator's
``evaluate_at`` and records every rung evaluation in the history with
``extra={"epochs": e, "rung": r, "bracket": b}`` (plus ``"state"`` when the evaluator's state is a
checkpoint path). The schedule is a deterministic function of the seed and the told results, so a
resumed run replays its history (and continues partially trained candidates from the recorded
checkpoint paths). A :class:`~lightning_nas.evaluators.tabular.TabularEvaluator` whose table has
``<column>@<epochs>`` columns is a multi-fidelity evaluator too (rungs must be its fidelities).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from lightning_nas.arch import Architecture, EvalResult, Job
from lightning_nas.evaluators.multi_fidelity import TrainMultiFidelity
from lightning_nas.evaluators.train import SCREENED, TrainEvaluator
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies.base import SearchContext, Strategy, register_strategy
from lightning_nas.strategies.operators import sample_unseen

__all__ = ["HyperbandSearch", "rung_epochs"]

log = logging.getLogger(__name__)

MODES = ("asha", "hyperband")


def rung_epochs(min_epochs: int, max_epochs: int, eta: int) -> list[int]:
    """The epoch budget of each rung: ``min_epochs * eta**r``, the last one exactly ``max_epochs``.

    Args:
        min_epochs: budget of rung 0.
        max_epochs: budget of the top rung.
        eta: promotion ratio.
    """
    ladder = [min_epochs]
    while ladder[-1] * eta < max_epochs:
        ladder.append(ladder[-1] * eta)
    if ladder[-1] != max_epochs:
        ladder.append(max_epochs)
    return ladder


@register_strategy("hyperband")
class HyperbandSearch(Strategy):
    """ASHA (Li et al., 2020) or Hyperband (Li et al., 2018) with epochs as the resource.

    ``"asha"``: each job promotes, from the highest rung down, a candidate in the top ``1/eta`` of
    its rung not promoted yet; if none qualifies, a new random architecture starts at rung 0.
    ``"hyperband"``: brackets ``s = s_max .. 0`` of successive halving, bracket ``s`` starting
    ``ceil((s_max + 1) / (s + 1) * eta**s)`` architectures at rung ``s_max - s`` and keeping the top
    ``1/eta`` at each rung; brackets repeat until the budget is spent. Failed candidates are never
    promoted. A screened candidate (``search/screened``: not trained, its size broke a constraint)
    takes no place in a rung, so the top ``1/eta`` are of the candidates trained there. Ties rank the
    earlier-evaluated candidate first.

    Args:
        num_samples: budget in rung evaluations (jobs), promotions included.
        seed: seed of the ``numpy.random.Generator`` drawing new architectures.
        min_epochs: epochs of rung 0.
        max_epochs: epochs of the top rung.
        eta: promotion ratio (the top ``1/eta`` of a rung go up; budgets grow ``eta``-fold).
        mode: ``"asha"`` or ``"hyperband"``.

    Example:
        >>> search = HyperbandSearch(num_samples=30, min_epochs=1, max_epochs=9, eta=3)
        >>> search.epochs
        [1, 3, 9]
        >>> run_search(space, search, TrainMultiFidelity(TrainEvaluator(dm)), History())  # doctest: +SKIP
    """

    name = "hyperband"
    replays = True
    checked = ("seed", "mode", "epochs")

    def __init__(self, num_samples: int = 50, seed: int = 0, min_epochs: int = 1, max_epochs: int = 9,
                 eta: int = 3, mode: str = "asha") -> None:
        super().__init__(num_samples, seed)
        if mode not in MODES:
            raise ValueError(f"strategy.mode must be one of {list(MODES)}, got {mode!r}")
        for key, value, low in (("min_epochs", min_epochs, 1), ("max_epochs", max_epochs, min_epochs), ("eta", eta, 2)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"strategy.{key} must be an int >= {low}, got {value!r}")
        self.min_epochs, self.max_epochs, self.eta, self.mode = min_epochs, max_epochs, eta, mode
        self.epochs = rung_epochs(min_epochs, max_epochs, eta)
        self._rungs: list[dict[Architecture, float]] = [{} for _ in self.epochs]  # insertion = evaluation order
        self._states: dict[tuple[Architecture, int], Any] = {}
        self._promoted: list[set[Architecture]] = [set() for _ in self.epochs]
        self._bracket, self._stage_rung, self._continuing = 0, 0, False
        self._queue: list[Architecture] = []
        self._stage: dict[Architecture, float] = {}  # "hyperband": the results of the current stage

    def _propose_job(self, space: SearchSpace) -> Job:
        return self._next_asha(space) if self.mode == "asha" else self._next_hyperband(space)

    def _observe_job(self, job: Job, result: EvalResult, state: Any | None) -> None:
        if result.metrics.get(SCREENED):  # not trained at this rung: nothing to rank or promote
            return
        value = self.fitness(result)
        value = value if math.isfinite(value) else -math.inf
        self._rungs[job.rung][job.arch] = value
        self._states[(job.arch, job.rung)] = state
        if self.mode == "hyperband":
            self._stage[job.arch] = value

    def _job(self, arch: Architecture, rung: int, continuing: bool = True) -> Job:
        resume = self._states.get((arch, rung - 1)) if rung > 0 and continuing else None
        return Job(arch, self.epochs[rung], resume, rung, self._bracket)

    def _top(self, rung: int, count: int) -> list[Architecture]:
        """The ``count`` best successful candidates of ``rung`` (earlier first on ties)."""
        scores = self._rungs[rung] if self.mode == "asha" else self._stage
        order = sorted(enumerate(scores.items()), key=lambda item: (-item[1][1], item[0]))
        return [arch for _, (arch, value) in order[:count] if value > -math.inf]

    def _next_asha(self, space: SearchSpace) -> Job:
        for rung in reversed(range(len(self.epochs) - 1)):
            for arch in self._top(rung, len(self._rungs[rung]) // self.eta):
                if arch not in self._promoted[rung]:
                    self._promoted[rung].add(arch)
                    return self._job(arch, rung + 1)
        return self._job(self._new_arch(set(self._results)), 0, False)

    def _new_arch(self, seen: set[Architecture]) -> Architecture:
        """A new architecture to start at the lowest rung of a bracket: random here (BOHB models it)."""
        assert self.space is not None
        return sample_unseen(self.space, self.rng, seen)

    def _next_hyperband(self, space: SearchSpace) -> Job:
        s_max = len(self.epochs) - 1
        while not self._queue:
            keep = len(self._stage) // self.eta if self._stage_rung < s_max else 0
            promoted = self._top(self._stage_rung, keep)
            if promoted:
                self._queue, self._stage_rung, self._continuing = promoted, self._stage_rung + 1, True
            else:
                self._bracket += 1 if self._stage else 0
                self._start_bracket(space, s_max - self._bracket % (s_max + 1))
            self._stage = {}
        return self._job(self._queue.pop(0), self._stage_rung, self._continuing)

    def _start_bracket(self, space: SearchSpace, s: int) -> None:
        """Queue ``ceil((s_max + 1) / (s + 1) * eta**s)`` new architectures at rung ``s_max - s``."""
        seen = set(self._results)
        for _ in range(math.ceil(len(self.epochs) / (s + 1) * self.eta**s)):
            arch = self._new_arch(seen)
            seen.add(arch)
            self._queue.append(arch)
        self._stage_rung, self._continuing = len(self.epochs) - 1 - s, False

    # --- the driver ----------------------------------------------------------------------------
    def run(self, context: SearchContext) -> None:
        """Run the schedule in the one loop; rungs continue from Lightning checkpoints under ``checkpoints/``.

        An evaluator that evaluates at a fidelity itself is used as it is; a train evaluator is wrapped in
        :class:`~lightning_nas.evaluators.multi_fidelity.TrainMultiFidelity`.
        """
        evaluator = context.evaluator
        if isinstance(evaluator, TrainEvaluator):
            evaluator = TrainMultiFidelity(evaluator, folder=str(context.output_dir / "checkpoints"))
        context.search(self, evaluator)
