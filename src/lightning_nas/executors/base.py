"""The :class:`Executor` interface and :class:`LocalExecutor` (in-process, sequential)."""

from __future__ import annotations

import math
import signal
from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import TracebackType

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.evaluators.base import Evaluator, safe_evaluate
from lightning_nas.spaces.base import SearchSpace

__all__ = ["Executor", "LocalExecutor", "check_retry_options", "exit_reason"]


def check_retry_options(retries: int, timeout_s: float | None) -> None:
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ValueError(f"executor.retries must be an int >= 0, got {retries!r}")
    if timeout_s is not None and not (isinstance(timeout_s, int | float) and math.isfinite(timeout_s)
                                      and timeout_s > 0):
        raise ValueError(f"executor.timeout_s must be None or a number > 0, got {timeout_s!r}")


def exit_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name} (exit code {exitcode})"
        except ValueError:
            pass
    return f"exit code {exitcode}"


class Executor(ABC):
    """Evaluates batches of candidates; a context manager that releases its workers on exit."""

    #: how many candidates run at once (the default batch size of :func:`lightning_nas.search.run_search`)
    parallelism: int = 1

    @abstractmethod
    def map_evaluate(self, evaluator: Evaluator, space: SearchSpace,
                     archs: Sequence[Architecture]) -> list[EvalResult]:
        """One result per architecture, in input order; never raises for a candidate."""

    def close(self) -> None:
        """Release workers (idempotent); nothing to release by default."""
        return None

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


class LocalExecutor(Executor):
    """Evaluates in this process, one candidate after another (no timeout, no isolation); an evaluator
    with ``evaluate_many`` (e.g. ``SupernetEvaluator(workers=2)``) gets the whole batch.

    Example:
        >>> results = LocalExecutor().map_evaluate(evaluator, space, archs)  # doctest: +SKIP
    """

    def map_evaluate(self, evaluator: Evaluator, space: SearchSpace,
                     archs: Sequence[Architecture]) -> list[EvalResult]:
        many = getattr(evaluator, "evaluate_many", None)
        if callable(many) and len(archs) > 1:
            results: list[EvalResult] = many(space, archs)  # one result per architecture, never raises
            return results
        return [safe_evaluate(evaluator, space, arch) for arch in archs]


