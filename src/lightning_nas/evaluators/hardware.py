"""An evaluator whose results carry a hardware target's latency and memory figures."""

from __future__ import annotations

import logging
import time

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.evaluators.base import Evaluator
from lightning_nas.hardware.base import HardwareTarget
from lightning_nas.spaces.base import SearchSpace

__all__ = ["HardwareEvaluator"]

log = logging.getLogger(__name__)


class HardwareEvaluator(Evaluator):
    """Wraps an evaluator: after each evaluation, ``target`` measures the candidate and its
    figures replace any the inner evaluator reported under the same names.

    A failing measurement turns the result into a failure (the inner metrics are kept).

    Args:
        evaluator: the evaluator that scores accuracy (e.g. ``TrainEvaluator``).
        target: the hardware target.

    Example:
        >>> evaluator = HardwareEvaluator(TrainEvaluator(datamodule), CpuTarget())  # doctest: +SKIP
    """

    def __init__(self, evaluator: Evaluator, target: HardwareTarget) -> None:
        self.evaluator, self.target = evaluator, target

    def evaluate(self, space: SearchSpace, arch: Architecture) -> EvalResult:
        result = self.evaluator.evaluate(space, arch)
        if not result.ok:
            return result
        start = time.perf_counter()
        try:
            figures = self.target.measure_candidate(space, arch)
        except Exception as error:  # a candidate the target cannot handle must not end the search
            log.warning("%s could not measure %s: %s", self.target.name, arch.digest(), error)
            return EvalResult.failed(f"hardware.{self.target.name}: {type(error).__name__}: {error}",
                                     result.metrics, result.duration_s + time.perf_counter() - start)
        duration = result.duration_s + time.perf_counter() - start
        return EvalResult("ok", {**result.metrics, **figures}, duration_s=duration)

    def test(self, space: SearchSpace, arch: Architecture) -> dict[str, float]:
        return {**self.evaluator.test(space, arch), **self.target.measure_candidate(space, arch)}

    def __getattr__(self, name: str) -> object:
        inner = self.__dict__.get("evaluator")  # the inner evaluator's helpers stay reachable
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)
