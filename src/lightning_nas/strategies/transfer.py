"""Transfer / warm start: seed a new evolutionary search with the best architectures of a previous run,
and pre-screen its offspring with an accuracy predictor fitted on that run's history."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.objectives.score import ScoreFn, best_so_far, default_score
from lightning_nas.results.history import History, Record, is_header
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies.accuracy_predictor import ACCURACY_REGRESSORS, AccuracyPredictor, training_set
from lightning_nas.strategies.base import register_strategy
from lightning_nas.strategies.evolution import EvolutionStrategy
from lightning_nas.strategies.operators import sample_unseen

__all__ = ["WarmStartEvolution", "load_source_run", "select_valid", "transfer_plot"]

log = logging.getLogger(__name__)


def _read_records(path: Path) -> list[Record]:
    """The records of a ``history.jsonl`` without touching the file (a torn last line is skipped)."""
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(keepends=True), 1):
        if not line.endswith("\n"):
            log.warning("%s: skipping a torn last line", path)
            break
        try:
            if number == 1 and is_header(json.loads(line)):
                continue
            records.append(Record.from_json(line))
        except (ValueError, KeyError) as error:
            raise ValueError(f"{path}: line {number} is not a history record: {error}") from error
    return records


def load_source_run(path: str | Path, score: ScoreFn = default_score) -> tuple[list[Architecture], list[Record]]:
    """The architectures of a previous run, best first, and its history records.

    Args:
        path: the run's output directory (holding ``history.jsonl`` and ``best/arch.json``) or its
            ``history.jsonl``.
        score: what ranks the successful records (default: validation accuracy).

    Returns:
        ``(ranked, records)``: ``best/arch.json`` first when present, then every successful record
        by score (earliest first on ties), without repeats; and the records in order.

    Example:
        >>> ranked, records = load_source_run("outputs/run0")  # doctest: +SKIP
    """
    root = Path(path)
    history = root if root.is_file() else root / "history.jsonl"
    if not history.is_file():
        raise FileNotFoundError(f"no history.jsonl for the source run at {root}")
    records = _read_records(history)
    scored = [(score(r.result), r.index, r.arch) for r in records if r.result.ok]
    ranked = [arch for value, _, arch in sorted(scored, key=lambda t: (-t[0], t[1])) if value > -math.inf]
    best_file = history.parent / "best" / "arch.json"
    if best_file.is_file():
        ranked.insert(0, Architecture.load(best_file))
    return list(dict.fromkeys(ranked)), records


@register_strategy("warm_evolution")
class WarmStartEvolution(EvolutionStrategy):
    """Evolution whose first generation starts with a previous run's ``top_k`` architectures.

    Source architectures are checked with ``space.validate`` at :meth:`setup`; invalid ones are
    skipped with a logged reason (e.g. a decision the new space lacks) until ``top_k`` valid
    ones are found. The rest of the first generation is random, and evolution proceeds as in
    :class:`EvolutionStrategy`, except that offspring are pre-screened: an
    :class:`~lightning_nas.strategies.accuracy_predictor.AccuracyPredictor` is fitted at
    :meth:`setup` on the source history (decisions -> ``search/val_acc``, the records the new space
    accepts; at least 3), and each GA generation breeds ``screen_factor`` times the offspring it
    needs and keeps the ones predicted best (``"aging"``: each child is the best predicted of
    ``screen_factor``). Its held-out fit quality is :attr:`predictor_fit`. The seeds and the
    predictor's training set are part of :meth:`state_dict`, and the fit is deterministic, so a
    resumed search (replayed or from a checkpoint) asks exactly the same architectures.

    Args:
        source: the previous run's output directory or ``history.jsonl`` (``None``: no warm start).
        top_k: how many source architectures seed the first generation (at most ``population_size``).
        num_samples, seed, mode, population_size, generations, mutation_rate, crossover_rate,
        tournament_size, elitism: as in :class:`EvolutionStrategy`.
        scratch: an earlier from-scratch run on the same task, drawn against this run in ``transfer.png``.
        screen_factor: offspring bred per offspring kept (1: no screening).
        predictor: the accuracy predictor's regressor, ``"ridge"`` or ``"gbr"``.

    Example:
        >>> strategy = WarmStartEvolution(source=None, population_size=8, generations=2)
        >>> strategy.num_samples
        16
    """

    name = "warm_evolution"

    def __init__(
        self,
        source: str | None = None,
        top_k: int = 5,
        num_samples: int | None = None,
        seed: int = 0,
        mode: str = "ga",
        population_size: int = 50,
        generations: int = 5,
        mutation_rate: float = 0.1,
        crossover_rate: float = 0.8,
        tournament_size: int = 5,
        elitism: int = 2,
        scratch: str | None = None,
        screen_factor: int = 4,
        predictor: str = "ridge",
    ) -> None:
        super().__init__(num_samples, seed, mode, population_size, generations, mutation_rate, crossover_rate,
                         tournament_size, elitism)
        self.scratch = scratch
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
            raise ValueError(f"strategy.top_k must be a non-negative integer, got {top_k!r}")
        if isinstance(screen_factor, bool) or not isinstance(screen_factor, int) or screen_factor < 1:
            raise ValueError(f"strategy.screen_factor must be an integer of at least 1, got {screen_factor!r}")
        if predictor not in ACCURACY_REGRESSORS:
            raise ValueError(f"strategy.predictor must be one of {list(ACCURACY_REGRESSORS)}, got {predictor!r}")
        self.source, self.top_k, self.screen_factor = source, top_k, screen_factor
        self.source_ranked, self.source_records = ([], []) if source is None else load_source_run(source)
        self.warm: list[Architecture] | None = None
        """The valid source architectures seeding generation 0 (set by :meth:`setup` or a checkpoint)."""
        self.predictor = AccuracyPredictor(predictor, seed=seed)
        self.predictor_data: tuple[list[Architecture], list[float]] | None = None
        """The predictor's training set: source architectures valid here and their accuracies."""
        self.predictor_fit: dict[str, Any] | None = None
        """Held-out fit quality of the predictor (:meth:`AccuracyPredictor.cross_validate`), once fitted."""
        self._screened: list[Architecture] = []  # "ga": the kept offspring of this generation, still to ask

    def transfer(self) -> dict[str, Any] | None:
        """The source and scratch runs and the predictor's fit quality, for the transfer report."""
        return {"source": self.source, "scratch": self.scratch, "predictor_fit": lambda: self.predictor_fit}

    def _prepare(self, space: SearchSpace) -> None:
        super()._prepare(space)
        if self.warm is None:
            self.warm = select_valid(space, self.source_ranked, min(self.top_k, self.population_size))
        if self.predictor_data is None:
            self.predictor_data = training_set(space, self.source_records)
        self._fit_predictor(space)

    def _fit_predictor(self, space: SearchSpace) -> None:
        archs, accuracies = self.predictor_data or ([], [])
        if len(archs) < 3:
            if self.source is not None:
                log.warning("transfer: %d usable source record(s); the accuracy predictor needs 3, no screening",
                            len(archs))
            return
        self.predictor.fit(space, archs, accuracies)
        self.predictor_fit = {**self.predictor.cross_validate(space, archs, accuracies),
                              "regressor": self.predictor.regressor_name, "screen_factor": self.screen_factor}
        log.info("transfer: accuracy predictor (%s) fitted on %d source records; held-out Spearman %.3f (%s)",
                 self.predictor.regressor_name, len(archs), self.predictor_fit["spearman"],
                 self.predictor_fit["method"])

    def _breed(self, space: SearchSpace) -> Architecture:
        if self.screen_factor == 1 or not self.predictor.fitted:
            return super()._breed(space)
        if self.mode == "aging":
            return self._screen(space, self.screen_factor, 1)[0]
        if not self._screened:
            needed = self.population_size - len(self._offspring)
            self._screened = self._screen(space, needed * self.screen_factor, needed)
        return self._screened.pop(0)

    def _screen(self, space: SearchSpace, bred: int, kept: int) -> list[Architecture]:
        """Breed up to ``bred`` distinct unseen offspring; the ``kept`` predicted best, best first."""
        pool: list[Architecture] = []
        placeholder = EvalResult.failed("screening: bred, not told")
        try:
            for _ in range(bred):
                child = super()._breed(space)
                if self.seen(child):  # the space has nothing unseen left
                    break
                pool.append(child)
                self._results[child] = placeholder  # breed the next one unlike this one too
        finally:
            for child in pool:
                del self._results[child]
        if not pool:
            return [super()._breed(space)]
        predicted = self.predictor.predict(space, pool)
        order = sorted(range(len(pool)), key=lambda i: (-predicted[i], i))[:kept]
        log.debug("transfer: kept %d of %d offspring (predicted accuracy %.4f to %.4f)", len(order), len(pool),
                  predicted[order[0]], predicted[order[-1]])
        return [pool[i] for i in order]

    def _propose(self, space: SearchSpace) -> Architecture:
        if self._filling:
            fresh = [arch for arch in self.warm or [] if not self.seen(arch)]
            return fresh[0] if fresh else sample_unseen(space, self.rng, self._results)
        return super()._propose(space)

    def state_dict(self) -> dict[str, Any]:
        data = self.predictor_data
        return {**super().state_dict(), "warm": None if self.warm is None else [a.to_dict() for a in self.warm],
                "predictor_data": None if data is None else [[a.to_dict(), v] for a, v in zip(*data, strict=True)],
                "screened": [a.to_dict() for a in self._screened]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        warm = state.get("warm")
        self.warm = None if warm is None else [Architecture(a) for a in warm]
        data = state.get("predictor_data")
        self.predictor_data = None if data is None else ([Architecture(a) for a, _ in data],
                                                         [float(v) for _, v in data])
        self._screened = [Architecture(a) for a in state.get("screened", [])]


def select_valid(space: SearchSpace, ranked: Iterable[Architecture], k: int) -> list[Architecture]:
    """The first ``k`` of ``ranked`` that ``space`` accepts, each invalid one logged with its reason."""
    chosen: list[Architecture] = []
    for arch in ranked:
        if len(chosen) >= k:
            break
        try:
            chosen.append(space.validate(arch))
        except ValueError as error:
            log.info("warm start: skipping source architecture %s: %s", arch.digest(), error)
    log.info("warm start: %d source architecture(s) seed the first generation", len(chosen))
    return list(dict.fromkeys(chosen))


def _records(history: History | Sequence[Record] | str | Path) -> list[Record]:
    if isinstance(history, str | Path):
        return load_source_run(history)[1]
    return list(history)


def transfer_plot(
    scratch_history: History | Sequence[Record] | str | Path,
    transfer_history: History | Sequence[Record] | str | Path,
    path: str | Path,
    score: ScoreFn = default_score,
    ylabel: str = "best validation accuracy",
    title: str = "Warm start vs from scratch",
) -> Path:
    """Plot best-so-far score against evaluations for a from-scratch and a warm-started search.

    Args:
        scratch_history: the from-scratch run (a :class:`History`, records, or a run directory).
        transfer_history: the warm-started run, likewise.
        path: the image file to write (e.g. ``transfer.png``).
        score: the score plotted (default: validation accuracy).
        ylabel: the y-axis label.
        title: the figure title.

    Example:
        >>> transfer_plot("outputs/scratch", "outputs/warm", "transfer.png")  # doctest: +SKIP
    """
    figure = Figure(figsize=(6.4, 4.8), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    for label, history, color in (("from scratch", scratch_history, "tab:blue"),
                                  ("warm start", transfer_history, "tab:orange")):
        curve = best_so_far(_records(history), score)
        steps = np.arange(1, curve.size + 1)
        finite = np.isfinite(curve)
        ax.step(steps[finite], curve[finite], where="post", label=label, color=color)
    ax.set_xlabel("evaluations")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    return out
