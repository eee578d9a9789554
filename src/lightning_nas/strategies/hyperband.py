"""Multi-fidelity search: ASHA and Hyperband over training epochs, continuing from checkpoints.

Plain :func:`~lightning_nas.search.run_search` only asks for architectures, so this strategy brings
its own driver, :meth:`HyperbandSearch.run`, which asks for *jobs* (an architecture, a rung, its
epoch budget and the state to continue from), evaluates them with a :class:`MultiFidelityEvaluator`
and records every rung evaluation in the :class:`History` with ``extra={"epochs": e, "rung": r}``
(plus ``"state"`` when the evaluator's state is a checkpoint path). The schedule is a
deterministic function of the seed and the told results, so a resumed run replays its history
(and continues partially trained candidates from the recorded checkpoint paths).
:class:`TrainMultiFidelity` wraps a :class:`TrainEvaluator`: each promotion continues the
candidate's Lightning checkpoint (weights, optimizer, scheduler and epoch counter) instead of
training from scratch; the cosine learning-rate schedule is re-spanned over the new epoch target.
A :class:`~lightning_nas.evaluators.tabular.TabularEvaluator` whose table has ``<column>@<epochs>``
columns is a multi-fidelity evaluator too (rungs must be its fidelities).
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

from lightning_nas.arch import Architecture
from lightning_nas.evaluators.base import EvalResult, EvaluatorConfigError
from lightning_nas.evaluators.classifier import RecalibrateBatchNorm
from lightning_nas.evaluators.train import (
    BN_RECALIBRATION_BATCHES,
    TrainEvaluator,
    _quiet_lightning,
    derive_seed,
    seeded,
)
from lightning_nas.results.history import History
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies.base import Job, ScoreFn, Strategy, default_score, register_strategy
from lightning_nas.strategies.operators import sample_unseen

__all__ = ["HyperbandSearch", "MultiFidelityEvaluator", "TrainMultiFidelity", "rung_epochs"]

log = logging.getLogger(__name__)

MODES = ("asha", "hyperband")


class MultiFidelityEvaluator(Protocol):
    """Evaluates an architecture after ``epochs`` of training, continuing from ``resume_from``."""

    def evaluate_at(
        self, space: SearchSpace, arch: Architecture, epochs: int, resume_from: Any | None
    ) -> tuple[EvalResult, Any]:
        """The result after ``epochs`` total epochs, and the state to continue from later."""
        ...


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
    promoted. Ties rank the earlier-evaluated candidate first.

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
        >>> search.run(space, TrainMultiFidelity(TrainEvaluator(dm)), History())  # doctest: +SKIP
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
    def run(self, space: SearchSpace, evaluator: MultiFidelityEvaluator, history: History,
            score: ScoreFn = default_score) -> History:
        """Run the schedule until the budget is spent, appending each rung evaluation to ``history``.

        A non-empty ``history`` is replayed first (not re-evaluated); a mismatch raises
        :class:`~lightning_nas.search.ResumeError`.
        """
        from lightning_nas.search import ResumeError

        self.setup(space, score)
        for record in history:
            if self.done:
                break
            job = self.ask_job()
            if record.arch != job.arch or record.extra.get("epochs") != job.epochs:
                raise ResumeError(f"history entry {record.index} holds {record.arch.digest()} at "
                                  f"{record.extra.get('epochs')} epochs but the schedule asks {job.arch.digest()} "
                                  f"at {job.epochs}: the space, strategy or seed changed")
            self.tell_job(job, record.result, record.extra.get("state"))
        while not self.done:
            job = self.ask_job()
            started = time.perf_counter()
            try:
                result, state = evaluator.evaluate_at(space, job.arch, job.epochs or self.max_epochs, job.resume_from)
            except EvaluatorConfigError:  # a configuration error stops the search
                raise
            except Exception as error:  # an evaluator bug must not end the search
                log.exception("evaluator raised on %s", job.arch.digest())
                result, state = EvalResult.failed(f"{type(error).__name__}: {error}",
                                                  duration_s=time.perf_counter() - started), None
            extra: dict[str, Any] = {"epochs": job.epochs, "rung": job.rung, "bracket": job.bracket}
            if isinstance(state, str):
                extra["state"] = state
            history.append(job.arch, result, **extra)
            self.tell_job(job, result, state)
        return history


class TrainMultiFidelity:
    """A :class:`MultiFidelityEvaluator` over a :class:`TrainEvaluator`, continuing from checkpoints.

    Each evaluation saves a Lightning checkpoint ``<folder>/<arch digest>-e<epochs>.ckpt`` and
    returns its path as the state; a promotion fits the same initial network from that
    checkpoint (weights, optimizer, scheduler, epoch counter) up to the new epoch count.

    Args:
        evaluator: the train evaluator whose recipe, data and seeds are used.
        folder: where checkpoints go (default: a new temporary folder).

    Example:
        >>> fidelity = TrainMultiFidelity(TrainEvaluator(dm), folder="runs/ckpt")  # doctest: +SKIP
        >>> result, ckpt = fidelity.evaluate_at(space, arch, 1, None)  # doctest: +SKIP
        >>> result, ckpt = fidelity.evaluate_at(space, arch, 3, ckpt)  # doctest: +SKIP
    """

    def __init__(self, evaluator: TrainEvaluator, folder: str | None = None) -> None:
        self.evaluator = evaluator
        self.folder = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="hyperband-"))
        self._profiles: dict[Architecture, dict[str, float]] = {}

    def evaluate_at(
        self, space: SearchSpace, arch: Architecture, epochs: int, resume_from: Any | None
    ) -> tuple[EvalResult, Any]:
        """Train ``arch`` to ``epochs`` total epochs (from ``resume_from`` if given); never raises."""
        started = time.perf_counter()
        metrics: dict[str, float] = {}
        try:
            with _quiet_lightning():
                path = self._fit(space, arch, epochs, resume_from, metrics)
        except Exception as error:  # a bad candidate must not end the search
            return EvalResult.failed(f"{type(error).__name__}: {error}", metrics, time.perf_counter() - started), None
        return EvalResult("ok", metrics, duration_s=time.perf_counter() - started), path

    def _fit(self, space: SearchSpace, arch: Architecture, epochs: int, resume_from: Any | None,
             metrics: dict[str, float]) -> str:
        ev = self.evaluator
        model = ev.build(space, arch)
        if arch not in self._profiles:
            profile: dict[str, float] = {}
            ev._profile_into(profile, model, space)
            self._profiles[arch] = profile
        metrics.update(self._profiles[arch])
        module = ev._wrap(model, space.num_classes)
        ev._setup("fit")
        trainer = ev._trainer(epochs, [RecalibrateBatchNorm(BN_RECALIBRATION_BATCHES)])
        with seeded(derive_seed(ev.seed, arch.digest(), "train", str(epochs)), ev.deterministic):
            trainer.fit(module, train_dataloaders=ev.datamodule.train_dataloader(),
                        ckpt_path=None if resume_from is None else str(resume_from), weights_only=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{arch.digest()}-e{epochs}.ckpt"
        trainer.save_checkpoint(path)
        metrics.update(module.fit_metrics)
        scores = ev.validate_model(module)
        metrics["search/val_acc"], metrics["search/val_loss"] = scores["val/acc"], scores["val/loss"]
        metrics["train/epochs_budget"] = float(epochs)
        if not math.isfinite(scores["val/loss"]):
            raise FloatingPointError(f"validation loss is {scores['val/loss']}")
        return str(path)
