"""The one search loop: ask, evaluate, record, tell — resumable from its history, on any executor."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any, Protocol

from tqdm.auto import tqdm

from lightning_nas.arch import Architecture, EvalResult, Job
from lightning_nas.evaluators.base import Evaluator, evaluate_job
from lightning_nas.executors.base import Executor, LocalExecutor
from lightning_nas.executors.parallel import speculate
from lightning_nas.objectives.front import rank_records
from lightning_nas.objectives.score import ScoreFn, default_score
from lightning_nas.results.history import History, Record
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies.base import Strategy, notify

__all__ = ["ResumeError", "SearchListener", "best_record", "notify", "run_search"]

log = logging.getLogger(__name__)

Key = tuple[Architecture, int | None]
"""A job's identity for de-duplication and replay: the architecture and its fidelity (epochs)."""


class ResumeError(RuntimeError):
    """The saved history does not match what the configured strategy asks on replay."""


class SearchListener(Protocol):
    """Receives search events (e.g. the Pareto front logger); every hook is optional."""

    def on_search_start(self, space: SearchSpace, history: History) -> None: ...

    def on_candidate_end(self, record: Record, history: History) -> None: ...

    def on_search_end(self, history: History) -> None: ...


def _replay(strategy: Strategy, history: History) -> dict[Key, tuple[EvalResult, Any]]:
    """Feed the saved history back through ask/tell so RNG and population come back exactly."""
    seen: dict[Key, tuple[EvalResult, Any]] = {}
    position = 0
    while position < len(history) and not strategy.done:
        job = strategy.ask_job()
        key = (job.arch, job.epochs)
        if key in seen:
            strategy.tell_job(job, *seen[key])
            continue
        record = history[position]
        if (record.arch, record.extra.get("epochs")) != key:
            at = "" if job.epochs is None else f" at {job.epochs} epochs"
            raise ResumeError(
                f"history entry {record.index} holds {record.arch.digest()} but the strategy now asks "
                f"{job.arch.digest()}{at}: the search space, strategy or seed changed since that run"
            )
        seen[key] = (record.result, record.extra.get("state"))
        strategy.tell_job(job, *seen[key])
        position += 1
    return seen


def _evaluate(executor: Executor, evaluator: Evaluator, space: SearchSpace,
              batch: list[Job]) -> list[tuple[EvalResult, Any]]:
    """Results and states of ``batch``: plain jobs on ``executor``, a job with a fidelity in this process."""
    if batch[0].epochs is not None:
        return [evaluate_job(evaluator, space, batch[0])]
    return [(result, None) for result in executor.map_evaluate(evaluator, space, [job.arch for job in batch])]


def run_search(
    space: SearchSpace,
    strategy: Strategy,
    evaluator: Evaluator,
    history: History,
    score: ScoreFn = default_score,
    listeners: Sequence[object] = (),
    progress: bool = True,
    executor: Executor | None = None,
    batch_size: int | None = None,
) -> History:
    """Run ``strategy`` over ``space`` until its budget is spent, appending to ``history``.

    A non-empty ``history`` (a resumed run) is replayed first, without re-evaluating. A job asked
    again (the same architecture at the same fidelity) is answered from its earlier result. Jobs
    with a fidelity (multi-fidelity strategies such as Hyperband) call ``evaluator.evaluate_at``
    and record ``epochs``, ``rung``, ``bracket`` (and a string ``state``) in the record's extra.

    With an ``executor`` (or an evaluator, e.g. ``SupernetEvaluator(workers=n)``) of parallelism ``n``
    (or ``batch_size``), a cache miss evaluates the job
    and up to ``n - 1`` jobs a copy of the strategy asks next (:func:`speculate`) as one batch; the
    ask/tell sequence, and so the history, is exactly the sequential one. Jobs with a fidelity
    run one at a time in this process.

    Args:
        space: the search space.
        strategy: the sample-based strategy.
        evaluator: scores candidates (must pickle for process and Ray executors).
        history: the (possibly resumed) history to append to.
        score: the scalar the strategy maximises.
        listeners: receive ``on_search_start``, ``on_candidate_end``, ``on_search_end``.
        progress: show a progress bar.
        executor: where batches run (default: in this process, one at a time).
        batch_size: candidates per batch; None means ``executor.parallelism``.
    """
    executor = LocalExecutor() if executor is None else executor
    parallelism = max(executor.parallelism, int(getattr(evaluator, "parallelism", 1)))
    size = parallelism if batch_size is None else int(batch_size)
    if size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size!r}")
    strategy.setup(space, score)
    seen = _replay(strategy, history)
    if history:
        log.info("resumed: replayed %d evaluations from %s", len(history), history.path)
    notify(listeners, "on_search_start", space, history)
    started = time.perf_counter()
    best = max((score(r.result) for r in history), default=-math.inf)
    failed = sum(not r.result.ok for r in history)
    cache: dict[Key, tuple[EvalResult, Any]] = {}
    bar = tqdm(total=strategy.num_samples, initial=strategy.num_told, desc="search", unit="cand",
               disable=not progress, dynamic_ncols=True)
    with bar:
        while not strategy.done:
            job = strategy.ask_job()
            key = (job.arch, job.epochs)
            if key in seen:
                strategy.tell_job(job, *seen[key])
                bar.update(1)
                continue
            if key not in cache:
                batch = speculate(strategy, job, seen, size)
                outcomes = _evaluate(executor, evaluator, space, batch)
                cache.update(zip([(j.arch, j.epochs) for j in batch], outcomes, strict=True))
            result, state = seen[key] = cache.pop(key)
            extra: dict[str, Any] = {**job.extra(), **({"state": state} if isinstance(state, str) else {})}
            record = history.append(job.arch, result, **extra)
            strategy.tell_job(job, result, state)
            if not result.ok:
                failed += 1
                log.warning("candidate %d failed: %s", record.index, result.error)
            best = max(best, score(result))
            bar.set_postfix(best=f"{best:.4f}", failed=failed, elapsed=f"{time.perf_counter() - started:.0f}s")
            bar.update(1)
            notify(listeners, "on_candidate_end", record, history)
            if bar.total != strategy.num_samples:  # a time budget re-plans the number of candidates
                bar.total = max(strategy.num_samples, bar.n)
                bar.refresh()
    if cache:
        log.info("%d speculative evaluations were not asked by the strategy and were dropped", len(cache))
    notify(listeners, "on_search_end", history)
    return history


def best_record(history: History, score: ScoreFn = default_score) -> Record:
    """The record with the highest finite score (ties: see :func:`rank_records`); ``RuntimeError`` if none."""
    ranked = rank_records(history, score)
    if not ranked:
        raise RuntimeError(f"no successful candidate among {len(history)} evaluations")
    return ranked[0]
