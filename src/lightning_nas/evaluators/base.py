"""The :class:`Evaluator` interface (what a candidate scores) and :func:`evaluate_job`, its never-raising call."""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from typing import Any

from lightning_nas.arch import Architecture, EvalResult, Job
from lightning_nas.spaces.base import SearchSpace

__all__ = ["Evaluator", "EvaluatorConfigError", "evaluate_job", "safe_evaluate"]

log = logging.getLogger(__name__)


class EvaluatorConfigError(Exception):
    """A configuration error found while evaluating (e.g. a table that does not cover the space).

    Unlike a bad candidate, it stops the search: the search loop re-raises it and the app reports
    its one-line message.
    """


class Evaluator(ABC):
    """Scores candidates of a :class:`SearchSpace`. Must never raise for a bad candidate:
    return ``EvalResult.failed(...)`` instead, so the search goes on."""

    test_source: str = "retrained from scratch"
    """Where :meth:`test`'s figures come from (said in the run's summary)."""
    test_action: str = "retraining the best architecture {arch} from scratch for the test report"
    """What :meth:`test` does, logged before it runs (``{arch}``: the architecture's digest)."""

    @abstractmethod
    def evaluate(self, space: SearchSpace, arch: Architecture) -> EvalResult:
        """Score ``arch`` on validation data (the search never sees the test split)."""

    def evaluate_at(self, space: SearchSpace, arch: Architecture, epochs: int,
                    resume_from: Any | None) -> tuple[EvalResult, Any]:
        """The result after ``epochs`` total epochs (from ``resume_from``) and the state to continue from.

        Multi-fidelity strategies (Hyperband) ask for this; an evaluator without fidelities raises.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot evaluate at a fidelity (epochs)")

    def test(self, space: SearchSpace, arch: Architecture) -> dict[str, float]:
        """Final report on the test split for the chosen architecture (used once, at the end)."""
        raise NotImplementedError(f"{type(self).__name__} has no test-split report")


def evaluate_job(evaluator: Any, space: SearchSpace, job: Job) -> tuple[EvalResult, Any]:
    """``job``'s result and the state it leaves; an exception becomes a failed result (logged),
    except :class:`EvaluatorConfigError`, which stops the search.

    A job without a fidelity calls ``evaluator.evaluate``, one with ``epochs`` calls
    ``evaluator.evaluate_at``.
    """
    started = time.perf_counter()
    try:
        if job.epochs is None:
            return evaluator.evaluate(space, job.arch), None
        result, state = evaluator.evaluate_at(space, job.arch, job.epochs, job.resume_from)
        return result, state
    except EvaluatorConfigError:  # e.g. a table that does not cover the space: stop, not one bad candidate
        raise
    except Exception as error:  # an evaluator bug must not end the search
        log.exception("evaluator raised on %s", job.arch.digest())
        return EvalResult.failed(f"{type(error).__name__}: {error}", duration_s=time.perf_counter() - started), None


def safe_evaluate(evaluator: Evaluator, space: SearchSpace, arch: Architecture) -> EvalResult:
    """``evaluator.evaluate(space, arch)``; an exception becomes a failed result (logged)."""
    return evaluate_job(evaluator, space, Job(arch))[0]
