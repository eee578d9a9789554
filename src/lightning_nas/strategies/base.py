"""The :class:`Strategy` interface (what to try next): ask / tell, with checkpointable state.

:class:`Strategy` owns the bookkeeping every sample-based strategy needs: the pending ask (asking
twice without telling returns the same architecture), every told result in order, the set of
architectures seen, the clean-up of failed or NaN scores (:meth:`Strategy.fitness`) and the
``state_dict`` of all that. A subclass implements :meth:`Strategy._propose` and
:meth:`Strategy._observe`, and adds to the state only what it cannot rebuild.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lightning_nas.arch import Architecture, EvalResult, Job
from lightning_nas.objectives.score import ScoreFn, default_score
from lightning_nas.registry import Registry
from lightning_nas.spaces.base import SearchSpace

__all__ = ["STRATEGIES", "SearchContext", "SearchMethod", "Strategy", "Told", "notify", "register_strategy"]

log = logging.getLogger(__name__)


def notify(listeners: Sequence[object], hook: str, *args: object) -> None:
    """Call ``hook(*args)`` on every listener that defines it."""
    for listener in listeners:
        method = getattr(listener, hook, None)
        if callable(method):
            method(*args)


@dataclass
class SearchContext:
    """What a search method gets from ``run(cfg)``: the built objects, the loop and where to write.

    Args:
        space: the search space.
        datamodule: the data (one-shot methods train on it).
        evaluator: scores candidates.
        history: the (possibly resumed) history to append to.
        score: the objective the search maximises.
        listeners: receive ``on_search_start``, ``on_candidate_end`` and ``on_search_end``.
        output_dir: the run folder.
        search: the one loop, bound to this run's history, executor and listeners:
            ``search(strategy, evaluator)`` runs ``strategy`` to its budget.
        accelerator: the trainer's accelerator (for one-shot training).
        progress: show progress bars.
        logger: the run's logger (``log_images``).
    """

    space: SearchSpace
    datamodule: Any
    evaluator: Any
    history: Any
    score: ScoreFn
    listeners: Sequence[object]
    output_dir: Path
    search: Callable[[Strategy, Any], Any]
    accelerator: str = "cpu"
    progress: bool = False
    logger: Any = None

    def notify(self, hook: str, *args: object) -> None:
        notify(self.listeners, hook, *args)


class SearchMethod:
    """What ``run(cfg)`` drives: a sample-based :class:`Strategy` or a one-shot method (DARTS, supernet)."""

    def run(self, context: SearchContext) -> None:
        """Search, appending every evaluated candidate to ``context.history`` and notifying listeners."""
        raise NotImplementedError(f"{type(self).__name__} has no search driver")

    def resolve(self, space: SearchSpace, evaluator: Any) -> SearchMethod:
        """The method to run for ``space`` and ``evaluator``: this one (``strategy=auto`` chooses one)."""
        return self

    def transfer(self) -> dict[str, Any] | None:
        """The warm start to report (``source``, ``scratch``, ``predictor_fit``), or None for a search from scratch."""
        return None

    def final_training(self, context: SearchContext, arch: Architecture) -> tuple[dict[str, float], Any]:
        """Train the chosen architecture once more and report it on the test split.

        Returns the test metrics and the trained network (``None`` when the evaluator trains none, e.g. a table).
        """
        log.info(context.evaluator.test_action.format(arch=arch.digest()))
        metrics = dict(context.evaluator.test(context.space, arch))
        return metrics, getattr(context.evaluator, "trained_models", {}).get(arch)


@dataclass(frozen=True)
class Told:
    """One tell: the job, its result, the state it left, and whether it answered the pending ask."""

    job: Job
    result: EvalResult
    asked: bool = True
    state: Any | None = None

    @property
    def arch(self) -> Architecture:
        return self.job.arch

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch.to_dict(), "result": self.result.to_dict(), "asked": self.asked,
                **({"epochs": self.job.epochs} if self.job.epochs is not None else {}),
                **({"state": self.state} if isinstance(self.state, str) else {})}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Told:
        job = Job(Architecture(data["arch"]), data.get("epochs"))
        return cls(job, EvalResult.from_dict(data["result"]), bool(data.get("asked", True)), data.get("state"))


class Strategy(SearchMethod):
    """A sample-based search algorithm driven by :func:`lightning_nas.search.run_search`.

    The loop calls :meth:`ask` for the next architecture and :meth:`tell` with its result.
    Asking again before telling returns the same (pending) architecture; telling an architecture
    that was not asked (e.g. a seed from an ensemble) leaves the pending ask pending. Strategies
    take their randomness from ``self.rng`` (or generators seeded from ``seed``) only, so a search
    replayed from its history asks exactly the same architectures again.

    Checkpoints: :meth:`state_dict` holds the RNG state, the counters, every told result and the
    pending ask (JSON-ready). A subclass whose state is a function of the seed and the told
    results sets ``replays = True``: :meth:`load_state_dict` then rebuilds it by asking and telling
    the stored results again on a fresh strategy (when the space is bound: at :meth:`setup` if it
    is not yet). Otherwise the state is restored directly and the subclass adds its own fields.
    The attributes named in ``checked`` must match the checkpoint's.

    Args:
        num_samples: evaluation budget (architectures to evaluate in total).
        seed: seed of the strategy's ``numpy.random.Generator``.
    """

    name: str = "strategy"
    replays: bool = False
    """Restore a checkpoint by replaying its told results (see the class docstring)."""
    checked: tuple[str, ...] = ()
    """Attributes a checkpoint must agree on (``strategy.<name>`` is named when it does not)."""

    def __init__(self, num_samples: int, seed: int = 0) -> None:
        if int(num_samples) < 1:
            raise ValueError(f"strategy.num_samples must be at least 1, got {num_samples!r}")
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.space: SearchSpace | None = None
        self.score: ScoreFn = default_score
        self.num_told = 0
        self._told: list[Told] = []
        self._results: dict[Architecture, EvalResult] = {}  # first result of each architecture, in told order
        self._pending: Job | None = None
        self._loaded: dict[str, Any] | None = None  # a checkpoint to replay once the space is bound

    def setup(self, space: SearchSpace, score: ScoreFn = default_score) -> None:
        """Bind the search space and the scalar score to maximise; called once before asking.

        Subclasses prepare their own machinery in :meth:`_prepare`; a checkpoint loaded before
        this call is replayed at its end.
        """
        self.space = space
        self.score = score
        self._prepare(space)
        if self._loaded is not None:
            state, self._loaded = self._loaded, None
            self._replay(state)

    def _prepare(self, space: SearchSpace) -> None:
        """Build what depends on the bound space and score (a model, a study); nothing by default."""

    def run(self, context: SearchContext) -> None:
        """Run this strategy to its budget in the one loop."""
        context.search(self, context.evaluator)

    @property
    def done(self) -> bool:
        return self.num_told >= self.num_samples

    @property
    def told(self) -> list[Told]:
        """Every result told so far, in order (a copy)."""
        return list(self._told)

    def seen(self, arch: Architecture) -> bool:
        """Whether ``arch`` has been told."""
        return arch in self._results

    def fitness(self, result: EvalResult) -> float:
        """The score of ``result``; ``-inf`` when it failed or scores NaN."""
        value = float(self.score(result)) if result.ok else -math.inf
        return -math.inf if math.isnan(value) else value

    def ask(self) -> Architecture:
        """The next architecture to evaluate (the pending one until it is told)."""
        return self.ask_job().arch

    def tell(self, arch: Architecture, result: EvalResult) -> None:
        """Report the result of evaluating ``arch``."""
        pending = self._pending
        self.tell_job(pending if pending is not None and pending.arch == arch else Job(arch), result)

    def ask_job(self) -> Job:
        """The next job (the pending one until it is told)."""
        if self.space is None:
            raise RuntimeError(f"{type(self).__name__}.setup(space) must be called before ask()")
        if self._pending is None:
            self._pending = self._propose_job(self.space)
        return self._pending

    def tell_job(self, job: Job, result: EvalResult, state: Any | None = None) -> None:
        """Report the result of ``job`` and the state its candidate can continue from."""
        asked = self._pending is not None and job == self._pending
        if asked:
            self._pending = None
        self.num_told += 1
        self._told.append(Told(job, result, asked, state))
        self._results.setdefault(job.arch, result)
        self._observe_job(job, result, state)

    def _propose_job(self, space: SearchSpace) -> Job:
        """A new job (called only when none is pending): :meth:`_propose` at the evaluator's budget."""
        return Job(self._propose(space))

    def _propose(self, space: SearchSpace) -> Architecture:
        """A new architecture to evaluate (called only when no ask is pending)."""
        raise NotImplementedError(f"{type(self).__name__} implements neither _propose nor _propose_job")

    def _observe(self, arch: Architecture, result: EvalResult) -> None:
        """Learn from a result; the base class has recorded it already (``self.told``)."""

    def _observe_job(self, job: Job, result: EvalResult, state: Any | None) -> None:
        """Learn from a job's result (multi-fidelity strategies); :meth:`_observe` by default."""
        self._observe(job.arch, result)

    def state_dict(self) -> dict[str, Any]:
        """RNG state, counters, every told result and the pending ask (JSON-ready)."""
        if self._loaded is not None:  # loaded but never bound: hand the same checkpoint on
            return dict(self._loaded)
        return {
            **{key: getattr(self, key) for key in self.checked},
            "rng": self.rng.bit_generator.state,
            "num_told": self.num_told,
            "told": [entry.to_dict() for entry in self._told],
            "pending": None if self._pending is None else {"arch": self._pending.arch.to_dict(),
                                                           "epochs": self._pending.epochs},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (by replay, see the class docstring, or directly)."""
        for key in self.checked:
            mine = getattr(self, key)
            theirs = list(state[key]) if isinstance(mine, list) else state[key]
            if theirs != mine:
                raise ValueError(f"strategy.{key} is {mine!r} but the checkpoint has {state[key]!r}")
        if self.replays:
            if self.space is None:
                self._loaded = state
            else:
                self._replay(state)
            return
        self.rng.bit_generator.state = state["rng"]
        self.num_told = int(state["num_told"])
        self._told = [Told.from_dict(entry) for entry in state["told"]]
        self._results = {}
        for entry in self._told:
            self._results.setdefault(entry.arch, entry.result)
        self._pending = None if state["pending"] is None else _job(state["pending"])

    def _replay(self, state: dict[str, Any]) -> None:
        """Ask and tell the checkpoint's results again on this fresh strategy, then re-ask its pending one."""
        if self._told or self._pending is not None:
            raise RuntimeError("load_state_dict needs a fresh strategy (setup called, nothing asked)")
        for entry in (Told.from_dict(e) for e in state["told"]):
            job = self.ask_job() if entry.asked else entry.job
            if (job.arch, job.epochs) != (entry.arch, entry.job.epochs):
                raise ValueError(f"the checkpoint's results do not replay from this seed and space: after "
                                 f"{len(self._told)} results it asks {job.arch.digest()}, the checkpoint has "
                                 f"{entry.arch.digest()}")
            self.tell_job(job, entry.result, entry.state)
        pending = None if state["pending"] is None else _job(state["pending"])
        if pending is not None and (self.ask_job().arch, self.ask_job().epochs) != (pending.arch, pending.epochs):
            raise ValueError("the checkpoint's pending ask does not replay from this seed and space")


def _job(data: dict[str, Any]) -> Job:
    return Job(Architecture(data["arch"]), data.get("epochs"))


STRATEGIES: Registry[type[Strategy]] = Registry("strategy")
register_strategy = STRATEGIES.register
