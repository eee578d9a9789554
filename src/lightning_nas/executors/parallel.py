"""The search loop with an executor: speculative batches, the sequential ask/tell order kept exactly."""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

from tqdm.auto import tqdm

from lightning_nas.arch import Architecture
from lightning_nas.evaluators.base import EvalResult, Evaluator
from lightning_nas.executors.base import Executor
from lightning_nas.results.history import History
from lightning_nas.search import _replay, notify
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies.base import ScoreFn, Strategy, default_score

__all__ = ["run_search_parallel", "speculate"]

log = logging.getLogger(__name__)


def speculate(strategy: Strategy, arch: Architecture, seen: dict[Architecture, EvalResult],
              n: int) -> list[Architecture]:
    """``arch`` and up to ``n - 1`` architectures a copy of ``strategy`` asks next, without feedback.

    The copy is told ``arch`` and each guess with a placeholder (failed) result; already-evaluated
    architectures get their real result. ``strategy`` itself is not touched. A strategy that cannot
    be deep-copied gets no guesses (the batch is ``[arch]``).

    Args:
        strategy: the live strategy, just after it asked ``arch``.
        arch: the architecture it asked.
        seen: results of architectures already evaluated.
        n: the batch size wanted.
    """
    batch = [arch]
    if n <= 1:
        return batch
    try:
        clone = copy.deepcopy(strategy)
    except Exception as error:  # a strategy holding un-copyable state: no speculation
        log.debug("cannot copy %s to speculate (%s): evaluating one candidate at a time", strategy, error)
        return batch
    placeholder = EvalResult.failed("pending (speculative placeholder)")
    clone.tell(arch, placeholder)
    for _ in range(4 * n):  # bounded: duplicates are skipped, not counted
        if clone.done or len(batch) >= n:
            break
        guess = clone.ask()
        clone.tell(guess, seen.get(guess, placeholder))
        if guess not in seen and guess not in batch:
            batch.append(guess)
    return batch


def run_search_parallel(
    space: SearchSpace,
    strategy: Strategy,
    evaluator: Evaluator,
    history: History,
    executor: Executor,
    batch_size: int | None = None,
    score: ScoreFn = default_score,
    listeners: Sequence[object] = (),
    progress: bool = True,
) -> History:
    """:func:`~lightning_nas.search.run_search` evaluating speculative batches on ``executor``.

    The ask/tell sequence, and so the history, is exactly the sequential one: records are
    appended in ask order, each told its real result. Results of guesses the strategy never asks
    are dropped at the end (logged). Resuming replays ``history`` first, like ``run_search``.

    Args:
        space: the search space.
        strategy: the sample-based strategy.
        evaluator: scores candidates (must pickle for process and Ray executors).
        history: the (possibly resumed) history to append to.
        executor: where batches run.
        batch_size: candidates per batch; None means ``executor.parallelism``.
        score: the scalar the strategy maximises.
        listeners: receive ``on_search_start``, ``on_candidate_end``, ``on_search_end``.
        progress: show a progress bar.

    Example:
        >>> with ProcessExecutor(max_workers=2) as executor:  # doctest: +SKIP
        ...     run_search_parallel(space, RandomSearch(20), evaluator, History(), executor)
    """
    size = executor.parallelism if batch_size is None else int(batch_size)
    if size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size!r}")
    strategy.setup(space, score)
    seen = _replay(strategy, history)
    notify(listeners, "on_search_start", space, history)
    cache: dict[Architecture, EvalResult] = {}
    bar = tqdm(total=strategy.num_samples, initial=strategy.num_told, desc="search", unit="cand",
               disable=not progress, dynamic_ncols=True)
    with bar:
        while not strategy.done:
            arch = strategy.ask()
            if arch in seen:
                strategy.tell(arch, seen[arch])
                bar.update(1)
                continue
            if arch not in cache:
                batch = speculate(strategy, arch, seen, size)
                cache.update(zip(batch, executor.map_evaluate(evaluator, space, batch), strict=True))
            result = cache.pop(arch)
            record = history.append(arch, result)
            seen[arch] = result
            strategy.tell(arch, result)
            if not result.ok:
                log.warning("candidate %d failed: %s", record.index, result.error)
            bar.update(1)
            notify(listeners, "on_candidate_end", record, history)
    if cache:
        log.info("%d speculative evaluations were not asked by the strategy and were dropped", len(cache))
    notify(listeners, "on_search_end", history)
    return history
