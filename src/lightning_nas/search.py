"""The sample-based search loop: ask, evaluate, record, tell — resumable from its history."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Protocol

from tqdm.auto import tqdm

from lightning_nas.arch import Architecture
from lightning_nas.evaluators.base import EvalResult, Evaluator, EvaluatorConfigError
from lightning_nas.objectives.front import rank_records
from lightning_nas.results.history import History, Record
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies.base import ScoreFn, Strategy, default_score

__all__ = ["ResumeError", "SearchListener", "best_record", "notify", "run_search"]

log = logging.getLogger(__name__)


class ResumeError(RuntimeError):
    """The saved history does not match what the configured strategy asks on replay."""


class SearchListener(Protocol):
    """Receives search events (e.g. the Pareto front logger); every hook is optional."""

    def on_search_start(self, space: SearchSpace, history: History) -> None: ...

    def on_candidate_end(self, record: Record, history: History) -> None: ...

    def on_search_end(self, history: History) -> None: ...


def _safe_evaluate(evaluator: Evaluator, space: SearchSpace, arch: Architecture) -> EvalResult:
    started = time.perf_counter()
    try:
        return evaluator.evaluate(space, arch)
    except EvaluatorConfigError:  # e.g. a table that does not cover the space: stop, not one bad candidate
        raise
    except Exception as error:  # an evaluator bug must not end the search
        log.exception("evaluator raised on %s", arch.digest())
        return EvalResult.failed(f"{type(error).__name__}: {error}", duration_s=time.perf_counter() - started)


def _replay(strategy: Strategy, history: History) -> dict[Architecture, EvalResult]:
    """Feed the saved history back through ask/tell so RNG and population come back exactly."""
    seen: dict[Architecture, EvalResult] = {}
    position = 0
    while position < len(history) and not strategy.done:
        arch = strategy.ask()
        if arch in seen:
            strategy.tell(arch, seen[arch])
            continue
        record = history[position]
        if arch != record.arch:
            raise ResumeError(
                f"history entry {record.index} holds {record.arch.digest()} but the strategy now asks "
                f"{arch.digest()}: the search space, strategy or seed changed since that run"
            )
        seen[arch] = record.result
        strategy.tell(arch, record.result)
        position += 1
    return seen


def notify(listeners: Sequence[object], hook: str, *args: object) -> None:
    """Call ``hook(*args)`` on every listener that defines it."""
    for listener in listeners:
        method = getattr(listener, hook, None)
        if callable(method):
            method(*args)


def run_search(
    space: SearchSpace,
    strategy: Strategy,
    evaluator: Evaluator,
    history: History,
    score: ScoreFn = default_score,
    listeners: Sequence[object] = (),
    progress: bool = True,
) -> History:
    """Run ``strategy`` over ``space`` until its budget is spent, appending to ``history``.

    A non-empty ``history`` (a resumed run) is replayed first, without re-evaluating.
    Duplicate asks are answered from earlier results and not evaluated again.
    """
    strategy.setup(space, score)
    seen = _replay(strategy, history)
    if history:
        log.info("resumed: replayed %d evaluations from %s", len(history), history.path)
    notify(listeners, "on_search_start", space, history)
    started = time.perf_counter()
    best = max((score(r.result) for r in history), default=-math.inf)
    failed = sum(not r.result.ok for r in history)
    bar = tqdm(total=strategy.num_samples, initial=strategy.num_told, desc="search", unit="cand",
               disable=not progress, dynamic_ncols=True)
    with bar:
        while not strategy.done:
            arch = strategy.ask()
            if arch in seen:
                strategy.tell(arch, seen[arch])
                bar.update(1)
                continue
            result = _safe_evaluate(evaluator, space, arch)
            record = history.append(arch, result)
            seen[arch] = result
            strategy.tell(arch, result)
            if not result.ok:
                failed += 1
                log.warning("candidate %d failed: %s", record.index, result.error)
            best = max(best, score(result))
            bar.set_postfix(best=f"{best:.4f}", failed=failed, elapsed=f"{time.perf_counter() - started:.0f}s")
            bar.update(1)
            notify(listeners, "on_candidate_end", record, history)
    notify(listeners, "on_search_end", history)
    return history


def best_record(history: History, score: ScoreFn = default_score) -> Record:
    """The record with the highest finite score (ties: see :func:`rank_records`); ``RuntimeError`` if none."""
    ranked = rank_records(history, score)
    if not ranked:
        raise RuntimeError(f"no successful candidate among {len(history)} evaluations")
    return ranked[0]
