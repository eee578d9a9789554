"""Speculation: the jobs a copy of the strategy asks next, evaluated as one batch by the one loop."""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

from lightning_nas.arch import Architecture, EvalResult, Job
from lightning_nas.strategies.base import Strategy

__all__ = ["speculate"]

log = logging.getLogger(__name__)


def speculate(strategy: Strategy, job: Job, seen: Mapping[tuple[Architecture, int | None], tuple[EvalResult, Any]],
              n: int) -> list[Job]:
    """``job`` and up to ``n - 1`` jobs a copy of ``strategy`` asks next, without feedback.

    The copy is told ``job`` and each guess with a placeholder (failed) result; already-evaluated jobs
    get their real result. ``strategy`` itself
    is not touched. A strategy that cannot be deep-copied gets no guesses (the batch is ``[job]``),
    nor does a job with a fidelity (its successors depend on its result).

    Args:
        strategy: the live strategy, just after it asked ``job``.
        job: the job it asked.
        seen: results (and states) of the jobs already evaluated, keyed by ``(arch, epochs)``.
        n: the batch size wanted.
    """
    batch = [job]
    if n <= 1 or job.epochs is not None:
        return batch
    try:
        clone = copy.deepcopy(strategy)
    except Exception as error:  # a strategy holding un-copyable state: no speculation
        log.debug("cannot copy %s to speculate (%s): evaluating one candidate at a time", strategy, error)
        return batch
    placeholder = EvalResult.failed("pending (speculative placeholder)")
    clone.tell_job(job, placeholder)
    for _ in range(4 * n):  # bounded: duplicates are skipped, not counted
        if clone.done or len(batch) >= n:
            break
        guess = clone.ask_job()
        known = seen.get((guess.arch, guess.epochs))
        clone.tell_job(guess, placeholder if known is None else known[0])
        if known is None and guess.epochs is None and all(guess.arch != b.arch for b in batch):
            batch.append(guess)
    return batch
