"""``budget.time``: a run that plans its own time from measured training throughput.

:class:`TimeBudget` measures how fast a few candidates train, splits the budget between the
search and the final training (whose epochs it chooses), stops the search at its deadline (as a
search listener: it lowers the strategy's ``num_samples`` once the next candidate would not fit),
re-plans the final epochs for the chosen network from its own throughput, and stops the final
training at the deadline if it runs late. Progress lines say how much time is left.
"""

from __future__ import annotations

import logging
import math
import re
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from lightning_nas.evaluators.classifier import WarmupCosine
from lightning_nas.evaluators.precision import choose_precision, training_speed, validate_precision
from lightning_nas.evaluators.train import SCREENED, TrainEvaluator
from lightning_nas.results.history import History, Record
from lightning_nas.spaces.base import SearchSpace

__all__ = ["DeadlineCallback", "Plan", "TimeBudget", "cpu_seconds", "format_seconds", "measure_throughput",
           "parse_duration", "set_train_batches", "time_budget_from_config", "train_evaluator"]

log = logging.getLogger(__name__)

_UNITS = {"h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0, "m": 60.0, "min": 60.0, "mins": 60.0,
          "minute": 60.0, "minutes": 60.0, "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
          "": 1.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$")
EVAL_SPEEDUP = 3.0
"""Inference runs about this many times faster per image than a training step (forward + backward)."""
MIN_RESERVE_SECONDS = 2.5
"""The least time set aside after the final training (validation, test, summary, reports)."""
FINAL_EPOCH_MARGIN = 1.08
"""Final epochs are planned this much longer than the probes measure (per-epoch validation, logging, noise):
a deadline that cuts the final training also cuts its learning-rate schedule short."""
MIN_FINAL_SHARE = 0.05
"""The least share of the training images a final epoch is cut to where the epochs would not fit (plan or re-plan)."""
EXPORT_SECONDS = 30.0
"""Time set aside per exported model (ExecuTorch lowering, profiling, code package)."""


def parse_duration(value: Any, key: str = "budget.time") -> float | None:
    """Seconds in ``value``: ``"60min"``, ``"90s"``, ``"1.5h"``, ``"45m"`` or a number of seconds.

    ``None`` (or an empty string) means no time budget. Raises a one-line ``ValueError`` naming ``key``.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value).lower()) if isinstance(value, str) else None
        if match is None or match.group(2) not in _UNITS:
            raise ValueError(f"{key} must be a duration such as 60min, 90s or 1.5h, got {value!r}")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{key} must be a positive duration, got {value!r}")
    return seconds


def cpu_seconds() -> float:
    """CPU seconds of this process and of its finished (waited-for) child processes, all threads."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def format_seconds(seconds: float) -> str:
    """``h:mm:ss`` or ``m:ss``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` inside the block, restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def measure_throughput(model: nn.Module, input_shape: tuple[int, ...], num_classes: int, batch_size: int,
                       steps: int = 4, channels_last: bool = False, warmup: int = 2, precision: str = "32") -> float:
    """Training images per second of ``model`` (forward, backward, AdamW step) on random data, as on
    cores of its own (the lesser of wall and CPU time).

    ``warmup`` untimed steps first; the model's weights are restored afterwards. ``precision``:
    ``"32"``, ``"bf16-mixed"``, or ``"auto"`` (the speed of the precision
    :func:`~lightning_nas.evaluators.precision.choose_precision` keeps, as a fit with it trains).
    """
    if validate_precision(precision, "precision") == "auto":
        return choose_precision(model, input_shape, num_classes, batch_size, channels_last=channels_last,
                                steps=steps, warmup=warmup)[1]
    return training_speed(model, input_shape, num_classes, batch_size, steps=steps, warmup=warmup,
                          channels_last=channels_last, precision=precision)


@dataclass
class Plan:
    """What the planner chose: search size and deadline, final epochs, the figures behind them."""

    evaluations: int
    final_epochs: int
    search_deadline: float
    final_deadline: float
    candidate_seconds: float
    epoch_seconds: float
    candidate_epochs: float = 1.0
    """Epochs a candidate trains (the evaluator's ``max_epochs``): a multi-fidelity job's cost is
    scaled by ``candidate_epochs / train/epochs_run`` before it counts as a candidate's pace."""


class TimeBudget:
    """Plans a run to fit ``total_s`` seconds from ``started`` and enforces the plan stage by stage.

    Args:
        total_s: the whole budget (``budget.time``), counted from ``started``.
        started: ``time.perf_counter()`` at the start of the run (default: now).
        final_fraction: share of the budget left to the final training when its epochs are chosen.
        final_epochs: a fixed number of final epochs (the search gets what is left), or None.
        final_core_share: the share of a core the final training expects, where other work shares the
            machine (``budget.final_core_share``; 1: a core of its own): with fixed final epochs, the search
            sets aside their time on a core of its own divided by it.
        reserve_s: seconds kept for what follows the final training (test, export, reports).
        overhead: wall time of a real fit per second of pure compute (data, Lightning, metrics).
        max_final_epochs: the most final epochs the planner chooses.
    """

    def __init__(self, total_s: float, started: float | None = None, *, final_fraction: float = 0.4,
                 final_epochs: int | None = None, final_core_share: float = 1.0, reserve_s: float = 0.0,
                 overhead: float = 1.3, max_final_epochs: int = 300) -> None:
        if not 0 < final_fraction < 1:
            raise ValueError(f"budget.final_fraction must be in (0, 1), got {final_fraction!r}")
        if isinstance(final_core_share, bool) or not isinstance(final_core_share, int | float) \
                or not 0 < final_core_share <= 1:
            raise ValueError(f"budget.final_core_share must be in (0, 1], got {final_core_share!r}")
        self.final_core_share = float(final_core_share)
        if final_epochs is not None and (not isinstance(final_epochs, int) or final_epochs < 1):
            raise ValueError(f"budget.final_epochs must be None or an int >= 1, got {final_epochs!r}")
        self.total_s, self.final_fraction, self.fixed_epochs = float(total_s), float(final_fraction), final_epochs
        self.started = time.perf_counter() if started is None else started
        self.reserve_s, self.overhead, self.max_final_epochs = float(reserve_s), float(overhead), max_final_epochs
        self.plan: Plan | None = None
        self.strategy: Any = None
        self._search_started = self.started
        self._trained = 0  # candidates trained (not screened) since the search started
        self._candidates = 0  # all candidates since the search started, screened ones too
        self._screened_s = 0.0  # the screened candidates' own seconds (an export and a timing under a latency bound)
        self._workers = 1  # candidates evaluated at once (plan_search's workers)
        self._paces: list[float] = []  # seconds per candidate of this search's successful candidates
        self.score: Callable[[Any], float] | None = None
        """The search's objective (the app sets it): with a fixed number of final epochs, each new best
        candidate's final epoch is timed by short real fits and the search deadline follows it."""
        self._search_space: SearchSpace | None = None
        self._trainer: TrainEvaluator | None = None
        self._best_score = -math.inf
        # seconds per final epoch the search leaves time for: the costliest of the best candidates so far, so
        # that a new best found late (too late to move the deadline) costs no more than what is set aside
        self._reserved_epoch_s: float | None = None
        self.deadline_callback: DeadlineCallback | None = None
        """The final training's deadline (set by :meth:`plan_final`): epochs trained, stopped early or not."""

    @property
    def end(self) -> float:
        return self.started + self.total_s

    def left(self) -> float:
        """Seconds left of the whole budget."""
        return self.end - time.perf_counter()

    # --- planning -------------------------------------------------------------------------------
    def plan_search(self, space: SearchSpace, evaluator: Any, strategy: Any, workers: int = 1,
                    samples: int = 3) -> Plan | None:
        """Measure ``samples`` candidates' throughput, choose the final epochs and the search's size.

        Sets ``strategy.num_samples`` to the planned evaluations (the deadline still decides).
        None (nothing planned) when ``evaluator`` holds no :class:`TrainEvaluator`.
        """
        trainer = train_evaluator(evaluator)
        if trainer is None:
            return None
        train_n, val_n, batch = _split_sizes(trainer)
        rng = np.random.default_rng(0)
        img_s = statistics.median(self._speed(space.build(space.sample(rng)), space, trainer) for _ in range(samples))
        candidate_s = self.overhead * trainer.max_epochs * _images(trainer.limit_train_batches, train_n, batch) / img_s
        candidate_s += val_n / (EVAL_SPEEDUP * img_s)
        epoch_s = self.overhead * _images(trainer.final_limit_train_batches, train_n, batch) / img_s
        final_end = self.end - self.reserve_s
        shared_epoch_s = epoch_s / self.final_core_share  # in wall time, beside the other work on the machine
        epochs = self.fixed_epochs or self._epochs_for(self.final_fraction * (final_end - time.perf_counter()),
                                                       shared_epoch_s)
        search_deadline = final_end - epochs * shared_epoch_s - val_n / (EVAL_SPEEDUP * img_s)
        search_s = max(0.0, search_deadline - time.perf_counter())
        evaluations = max(1, math.floor(search_s * max(1, workers) / candidate_s))
        if search_s < candidate_s:
            log.warning("time budget: %d final epochs (~%.0f s each) leave %.0f s for the search, less than one "
                        "candidate (~%.0f s); one candidate is scored anyway", epochs, epoch_s, search_s, candidate_s)
        self.plan = Plan(evaluations, epochs, search_deadline, final_end, candidate_s, epoch_s,
                         float(trainer.max_epochs))
        self._workers = max(1, workers)
        self._search_space, self._trainer = space, trainer
        if strategy is not None and hasattr(strategy, "num_samples"):
            strategy.num_samples, self.strategy = evaluations, strategy
        log.info("time budget %s: %.0f img/s measured; a candidate ~%.0f s, a final epoch ~%.0f s -> up to %d "
                 "candidates in %s, then %d final epochs; %s left", format_seconds(self.total_s), img_s,
                 candidate_s, epoch_s, evaluations, format_seconds(search_s), epochs, format_seconds(self.left()))
        return self.plan

    def plan_final(self, space: SearchSpace, arch: Any, evaluator: Any) -> int | None:
        """Choose the final epochs for ``arch``; set them and the deadline on ``evaluator``.

        Two short real fits of ``arch`` (k and 3k batches, after a warm-up fit whose one-time costs,
        lazy initialisation and kernel selection, would otherwise hide in the shorter one) give the
        seconds per batch and the fixed cost of a fit, in wall time, so that other work sharing the cores
        counts. When the epochs (chosen, or fixed by ``budget.final_epochs``) would not all fit before the
        deadline, every epoch trains on the same share of the images instead: the learning-rate schedule
        runs to its end rather than being cut by the deadline. None (nothing changed) before
        :meth:`plan_search`, or without a :class:`TrainEvaluator`.
        """
        trainer = train_evaluator(evaluator)
        if self.plan is None or trainer is None:
            return None
        plan = self.plan
        epoch_s, fixed = self._final_epoch_seconds(space, arch, trainer)
        available = plan.final_deadline - time.perf_counter() - fixed
        epochs = self.fixed_epochs or self._epochs_for(available, epoch_s, math.ceil)
        limit = trainer.final_limit_train_batches
        if isinstance(limit, float) and epochs * epoch_s > available:
            # the last part would not fit: every epoch takes the same share of the images instead, at least
            # one batch (Lightning refuses a share under one; 1e-9: 49 * (1 / 49) < 1 in floats)
            train_n, _, batch = _split_sizes(trainer)
            one_batch = min(1.0, 1.0 / max(1, train_n // batch) + 1e-9)
            full_epoch_s = epoch_s
            fitting_share = limit * max(0.0, available) / (epochs * epoch_s)
            trainer.final_limit_train_batches = max(MIN_FINAL_SHARE, one_batch, fitting_share)
            epoch_s *= trainer.final_limit_train_batches / limit
            if self.fixed_epochs:
                log.warning("time budget: %d final epochs of ~%.0f s would end after the deadline; each trains on "
                            "%.0f%% of the images instead", epochs, full_epoch_s,
                            100 * trainer.final_limit_train_batches)
        trainer.final_max_epochs = epochs
        self.deadline_callback = DeadlineCallback(self, plan.final_deadline,
                                                  max_share=limit if isinstance(limit, float) else None)
        trainer.final_callbacks = [*trainer.final_callbacks, self.deadline_callback]
        log.info("time budget: final training of %s for %d epochs (~%.0f s each, %s available); %s left",
                 arch.digest(), epochs, epoch_s, format_seconds(available), format_seconds(self.left()))
        return epochs

    def _final_epoch_seconds(self, space: SearchSpace, arch: Any, trainer: TrainEvaluator,
                             own_core: bool = False) -> tuple[float, float]:
        """Seconds per final epoch of ``arch`` and the fixed cost of a fit, from two short real fits (k and
        3k batches, after a warm-up fit whose one-time costs, lazy initialisation and kernel selection,
        would otherwise hide in the shorter one). ``own_core``: timed on one thread as on a core of its
        own (the lesser of wall and CPU time), while other work shares the machine."""
        train_n, _, batch = _split_sizes(trainer)
        per_epoch = _images(trainer.final_limit_train_batches, train_n, batch) / batch
        k = int(max(3, min(10, per_epoch // 10)))
        with torch_threads(1 if own_core else torch.get_num_threads()):
            self._probe(space, arch, trainer, max(2, k // 2), own_core)  # warm-up: one-time costs
            short, long = (self._probe(space, arch, trainer, n, own_core) for n in (k, 3 * k))
        per_batch = max((long - short) / (2 * k), 0.3 * long / (3 * k))  # a noisy difference is bounded below
        return FINAL_EPOCH_MARGIN * per_epoch * per_batch, max(0.0, short - k * per_batch)

    @staticmethod
    def _probe(space: SearchSpace, arch: Any, evaluator: TrainEvaluator, batches: int, own_core: bool = False) -> float:
        """Seconds of a real ``batches``-batch fit of ``arch`` (data, Lightning, BN recalibration): wall
        time, or with ``own_core`` the lesser of wall and this process's CPU time."""
        started, cpu_started = time.perf_counter(), time.process_time()
        evaluator.fit_model(evaluator.build(space, arch), 1, num_classes=space.num_classes,
                            limit_train_batches=batches, final=True)  # final: with the weight average's cost
        wall = time.perf_counter() - started
        return min(wall, time.process_time() - cpu_started) if own_core else wall

    def _speed(self, model: nn.Module, space: SearchSpace, evaluator: TrainEvaluator) -> float:
        # the precision its fits will train in (with "auto", chosen once per structure by the evaluator)
        return measure_throughput(model, tuple(space.input_shape), space.num_classes, _split_sizes(evaluator)[2],
                                  channels_last=bool(evaluator.recipe.get("channels_last")),
                                  precision=evaluator.training_precision(model))

    def _epochs_for(self, seconds: float, epoch_s: float, rounding: Any = math.floor) -> int:
        return int(min(self.max_final_epochs, max(1, rounding(seconds / epoch_s))))

    def _require_plan(self) -> Plan:
        if self.plan is None:
            raise RuntimeError("TimeBudget.plan_search must run before plan_final")
        return self.plan

    # --- the search listener --------------------------------------------------------------------
    def on_search_start(self, space: SearchSpace, history: History) -> None:
        self._search_started, self._trained, self._candidates, self._screened_s = time.perf_counter(), 0, 0, 0.0

    def on_candidate_end(self, record: Record, history: History) -> None:
        """Stop the search once the next candidate would end after the search deadline; log the time left.

        With a fixed number of final epochs (``budget.final_epochs``), the search deadline follows the
        final epochs' cost: each new best candidate (by :attr:`score`) has its final epoch timed by short
        real fits on one thread, as on a core of its own; until one is, a final epoch is taken to cost the
        75th percentile of the candidates' CPU seconds (``train/cpu_s``; wall seconds without it) per
        image (the very first estimate comes from a few steps on random data). (Otherwise the final
        training keeps ``final_fraction`` of the time and :meth:`plan_final` fits its epochs to it.)
        """
        plan = self._require_plan()
        screened = bool(record.result.metrics.get(SCREENED))  # not trained: neither a pace nor a candidate's time
        self._trained += not screened
        self._candidates += 1
        if screened:
            self._screened_s += record.result.duration_s
        cost = record.result.metrics.get("train/cpu_s", record.result.duration_s)
        epochs_run = record.result.metrics.get("train/epochs_run")  # a multi-fidelity job: a rung's share
        if epochs_run:
            cost *= plan.candidate_epochs / epochs_run
        if self.fixed_epochs and record.result.ok and cost > 0 and not screened:
            self._paces.append(cost)
            self._time_new_best(record)
            self._replan_search(plan)
        now = time.perf_counter()
        elapsed = now - self._search_started
        # the next candidate may be one to train: the wall time a trained one has taken, the screened ones'
        # share left out (nothing under a size bound; an export and a timing each under a latency bound)
        screened_wall = min(elapsed, self._screened_s / self._workers)
        per_trained = (elapsed - screened_wall) / self._trained if self._trained else elapsed / self._candidates
        stopping = now + per_trained > plan.search_deadline
        strategy = self.strategy
        if strategy is not None:
            # the measured pace replaces the first estimate: the budget (and the progress bar) say what will fit.
            # Screened candidates count too, so the pace is over all of them: the mix so far predicts the mix
            # ahead (the deadline, not this count, is what stops the search in time). A count already reached
            # grows again when there is room: a deadline that moved later (fixed final epochs) leaves time
            fits = 0 if stopping else math.floor((plan.search_deadline - now) / max(elapsed / self._candidates, 1e-9))
            strategy.num_samples = plan.evaluations = strategy.num_told + fits
        log.info("time budget: %d candidates (about %d in all), %s left (search %s)", len(history),
                 max(len(history), plan.evaluations), format_seconds(self.end - now),
                 "ends now" if stopping else f"stops in {format_seconds(plan.search_deadline - now)}")

    def _time_new_best(self, record: Record) -> None:
        """If ``record`` is the best trained candidate so far (by :attr:`score`), time its final epoch."""
        if self.score is None or self._search_space is None or self._trainer is None:
            return
        value = self.score(record.result)
        if not math.isfinite(value) or value <= self._best_score:
            return
        self._best_score = value
        try:
            epoch_s, _ = self._final_epoch_seconds(self._search_space, record.arch, self._trainer, own_core=True)
        except Exception as error:  # timing is advice: the candidates' pace still plans
            log.warning("time budget: timing the final epoch of %s failed (%s)", record.arch.digest(), error)
            return
        self._reserved_epoch_s = max(epoch_s, self._reserved_epoch_s or 0.0)
        share = f" at {self.final_core_share:.2f} of a core" if self.final_core_share < 1 else ""
        log.info("time budget: new best %s: a final epoch ~%.0f s on a core of its own (set aside: ~%.0f s%s, the "
                 "costliest best so far)", record.arch.digest(), epoch_s,
                 self._reserved_epoch_s / self.final_core_share, share)

    def _replan_search(self, plan: Plan) -> None:
        """Move the search deadline to the final epochs' cost: the costliest timed final epoch of the bests so
        far, or before one is timed, the candidates' measured pace (a final epoch keeps the first plan's ratio of
        images to a candidate's, validation included)."""
        candidate_s = float(np.quantile(self._paces, 0.75))
        epoch_s = candidate_s * plan.epoch_seconds / plan.candidate_seconds
        if self._reserved_epoch_s is not None:
            epoch_s = self._reserved_epoch_s
        deadline = plan.final_deadline - plan.final_epochs * epoch_s / self.final_core_share
        if abs(deadline - plan.search_deadline) > 1.0:
            log.debug("time budget: a final epoch ~%.0f s at the search's pace; the search deadline moves by %+.0f s",
                      epoch_s, deadline - plan.search_deadline)
        plan.candidate_seconds, plan.epoch_seconds, plan.search_deadline = candidate_s, epoch_s, deadline


RESCALE_DEADBAND = 0.02
""":class:`DeadlineCallback` changes the batches per epoch only by more than this share of them (or to give the
epochs all the images they may take)."""


class DeadlineCallback(L.Callback):
    """Logs the time left after each epoch and stops training at ``deadline`` (``time.perf_counter()``).

    With ``max_share`` (the largest share of the training images an epoch may take), from the second epoch
    on it re-plans the images per epoch from the pace of the last epoch (the first carries one-time
    costs): the remaining epochs train on as many batches as end them by the deadline, up to
    ``max_share``, and the learning-rate schedule (:class:`~lightning_nas.evaluators.classifier.WarmupCosine`)
    is stretched or shortened to end with them. A plan made before the training (from short timed fits,
    often beside other work) is corrected both ways: images it gave up come back, and a training that
    runs late trains fewer images rather than being cut before its schedule ends.

    Otherwise (or where the images cannot shrink further) it projects the end from the pace of the epochs
    after the first and warns, once, when the planned epochs will not all fit before the deadline.
    :attr:`epochs_trained` counts the epochs completed, :attr:`stopped_early` says whether the deadline cut
    the training short, and :attr:`batches_per_epoch` lists the batches each epoch trained.
    """

    def __init__(self, budget: TimeBudget, deadline: float, max_share: float | None = None) -> None:
        if max_share is not None and not 0 < max_share <= 1:
            raise ValueError(f"max_share must be in (0, 1], got {max_share!r}")
        self.budget, self.deadline, self.max_share = budget, deadline, max_share
        self.epochs_trained = 0
        self.stopped_early = False
        self.batches_per_epoch: list[int] = []
        self.full_batches: int | None = None
        """Batches of a whole pass over the training images (known once the training started)."""
        self._first_epoch_end: float | None = None
        self._last_epoch_end: float | None = None
        self._paced_epochs = 1
        self._warned = False

    @property
    def rescaled(self) -> bool:
        """Whether the epochs trained on different numbers of batches (the images per epoch were re-planned)."""
        return len(set(self.batches_per_epoch)) > 1

    @property
    def mean_share(self) -> float | None:
        """The mean share of the training images per epoch that the epochs trained (None before one ended)."""
        if not self.batches_per_epoch or not self.full_batches:
            return None
        return sum(self.batches_per_epoch) / (len(self.batches_per_epoch) * self.full_batches)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._first_epoch_end, self.epochs_trained, self.stopped_early, self._warned = None, 0, False, False
        self._last_epoch_end, self._paced_epochs, self.batches_per_epoch = None, 1, []
        self.full_batches = _full_train_batches(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if time.perf_counter() >= self.deadline and not trainer.should_stop:
            trainer.should_stop = True
            last_batch = batch_idx + 1 >= getattr(trainer, "num_training_batches", math.inf)
            if last_batch and trainer.current_epoch + 1 >= (trainer.max_epochs or 0):
                return  # the training ends here anyway: nothing was cut
            log.warning("time budget: final training stopped at its deadline in epoch %d of %d",
                        trainer.current_epoch + 1, trainer.max_epochs or 0)
            self.stopped_early = True
            self.epochs_trained = trainer.current_epoch + (1 if last_batch else 0)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.stopped_early:  # the stop logged it and counted the epochs it left complete
            return
        now = time.perf_counter()
        self.epochs_trained = trainer.current_epoch + 1
        batches = getattr(trainer, "num_training_batches", None)
        if isinstance(batches, int):
            self.batches_per_epoch.append(batches)
        planned = trainer.max_epochs or 0
        log.info("time budget: final training epoch %d/%d done, %s left", trainer.current_epoch + 1, planned,
                 format_seconds(self.budget.left()))
        last_epoch_s = None if self._last_epoch_end is None else now - self._last_epoch_end
        self._last_epoch_end = now
        if self._first_epoch_end is None:
            self._first_epoch_end = now
            return
        if last_epoch_s is not None and self._rescale(trainer, now, last_epoch_s):
            self._first_epoch_end, self._paced_epochs = now, self.epochs_trained  # a new pace from here
            return
        epoch_s = (now - self._first_epoch_end) / max(1, self.epochs_trained - self._paced_epochs)
        fit = self.epochs_trained + max(0, math.floor((self.deadline - now) / max(epoch_s, 1e-9)))
        if not self._warned and fit < planned:
            self._warned = True
            log.warning("time budget: the final epochs take ~%.0f s each; at this pace about %d of the %d planned "
                        "fit before the deadline, which will stop the training", epoch_s, fit, planned)


    def _rescale(self, trainer: L.Trainer, now: float, epoch_s: float) -> bool:
        """Train the remaining epochs on as many batches as end them by the deadline at the last epoch's pace
        (``epoch_s``), from :data:`MIN_FINAL_SHARE` of the images up to :attr:`max_share`; True when the batches
        changed."""
        if self.max_share is None:
            return False
        remaining = (trainer.max_epochs or 0) - self.epochs_trained
        batches, full = trainer.num_training_batches, self.full_batches
        if remaining <= 0 or not isinstance(batches, int) or batches < 1 or not full:
            return False
        per_batch = epoch_s / batches  # the epoch's fixed costs too: a little cautious when the batches grow
        fitting = math.floor((self.deadline - now) / (remaining * per_batch * FINAL_EPOCH_MARGIN))
        cap = max(1, math.floor(full * self.max_share + 1e-9))
        wanted = min(cap, max(1, math.ceil(MIN_FINAL_SHARE * full), fitting))
        if wanted == batches or (wanted != cap and abs(wanted - batches) <= max(1.0, RESCALE_DEADBAND * batches)):
            return False  # a change too small to pay for itself, unless it gives the epochs all their images
        schedules = _retargetable_schedules(trainer)
        if schedules is None or not set_train_batches(trainer, wanted):
            return False
        steps = trainer.global_step + remaining * math.ceil(wanted / max(1, trainer.accumulate_grad_batches))
        for schedule in schedules:
            schedule.retarget(trainer.global_step, steps)
        log.info("time budget: the last final epoch took %.0f s on %d batches; the remaining %d train on %d "
                 "(%.0f%% of the images) to end by the deadline", epoch_s, batches, remaining, wanted,
                 100 * wanted / full)
        return True


def set_train_batches(trainer: L.Trainer, batches: int) -> bool:
    """Train ``batches`` batches per epoch from the next epoch of ``trainer``'s fit on (the training data stay
    as loaded: the shuffling goes on). False, and nothing changed, where this Lightning's fit loop has no
    loaded training data to limit."""
    loader = getattr(trainer.fit_loop, "_combined_loader", None)
    if loader is None or not hasattr(loader, "limits") or not hasattr(loader, "flattened"):
        return False
    loader.limits = [batches] * len(loader.flattened)
    trainer.limit_train_batches = batches
    trainer.fit_loop.max_batches = batches
    if isinstance(trainer.val_check_interval, float):  # validation at the end of each (new-length) epoch
        trainer.val_check_batch = max(1, int(batches * trainer.val_check_interval))
    return True


def _full_train_batches(trainer: L.Trainer) -> int | None:
    """Batches of one whole pass over ``trainer``'s training data (None where its loader has no length)."""
    try:
        return len(getattr(trainer, "train_dataloader", None))  # type: ignore[arg-type]
    except TypeError:
        return None


def _retargetable_schedules(trainer: L.Trainer) -> list[WarmupCosine] | None:
    """The fit's per-step :class:`WarmupCosine` schedules ([] without any scheduler), or None where another
    scheduler would not follow a change of the batches per epoch."""
    schedules: list[WarmupCosine] = []
    for config in trainer.lr_scheduler_configs:
        lambdas = getattr(config.scheduler, "lr_lambdas", None)
        if config.interval != "step" or not lambdas or not all(isinstance(f, WarmupCosine) for f in lambdas):
            return None
        schedules.extend(lambdas)
    return schedules


def time_budget_from_config(budget: Any, started: float, export_top_k: int = 0) -> TimeBudget | None:
    """The :class:`TimeBudget` the ``budget`` config node asks for (None without ``budget.time``)."""
    total = parse_duration(budget.get("time"))
    if total is None:
        return None
    reserve = max(0.03 * total, MIN_RESERVE_SECONDS) + EXPORT_SECONDS * max(0, int(export_top_k))
    final_epochs = budget.get("final_epochs")
    return TimeBudget(total, started, final_fraction=float(budget.get("final_fraction", 0.4)),
                      final_epochs=None if final_epochs is None else int(final_epochs),
                      final_core_share=float(budget.get("final_core_share", 1.0)), reserve_s=reserve)


def train_evaluator(evaluator: Any) -> TrainEvaluator | None:
    """The :class:`TrainEvaluator` inside ``evaluator`` (wrappers keep theirs in ``.evaluator``), or None."""
    while evaluator is not None and not isinstance(evaluator, TrainEvaluator):
        evaluator = getattr(evaluator, "evaluator", None)
    return evaluator


def _split_sizes(evaluator: TrainEvaluator) -> tuple[int, int, int]:
    """Training and validation images and the batch size of ``evaluator``'s data (set up on first use)."""
    evaluator._setup("fit")
    data: Any = evaluator.datamodule
    return len(data.train_dataset), len(data.val_dataset), int(data.batch_size)


def _images(limit: float, total: int, batch_size: int) -> float:
    """Training images per epoch under Lightning's ``limit_train_batches``."""
    batches = math.ceil(total / batch_size)
    used = min(batches, int(limit)) if isinstance(limit, int) else int(batches * limit)
    return max(1, used) * batch_size
