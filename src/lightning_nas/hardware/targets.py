"""Hardware targets (Hydra group ``hardware``): where a candidate's latency and memory come from.

Every target turns a plain network into ``hw/latency_ms`` and ``hw/latency_p90_ms`` (plus
``hw/memory_mb`` when it knows the memory) without training. :class:`HardwareEvaluator`
wraps any evaluator so its results carry the target's figures.

Example:
    >>> from torch import nn
    >>> metrics = CpuTarget(repeats=5, warmup=1).measure(nn.Conv2d(1, 4, 3), (1, 8, 8))
    >>> sorted(metrics)
    ['hw/latency_ms', 'hw/latency_p90_ms', 'hw/memory_mb']
"""

from __future__ import annotations

import logging
import math
import statistics
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from lightning_nas.arch import Architecture
from lightning_nas.evaluators.base import EvalResult, Evaluator
from lightning_nas.hardware.lookup_table import LayerCall, LookupTable, MissingEntryError, layer_calls
from lightning_nas.hardware.profile import LatencyStats, measure_latency, peak_activation_memory
from lightning_nas.registry import Registry
from lightning_nas.spaces.base import SearchSpace

__all__ = [
    "HARDWARE",
    "CpuTarget",
    "HardwareEvaluator",
    "HardwareTarget",
    "LookupTableTarget",
    "PredictedLatencyTarget",
    "XnnpackTarget",
    "register_hardware",
    "thread_time_latency",
]

log = logging.getLogger(__name__)

HARDWARE: Registry[type[HardwareTarget]] = Registry("hardware target")
register_hardware = HARDWARE.register

MIB = 2.0**20


def _check_int(key: str, value: object, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"hardware.{key} must be an int >= {low}, got {value!r}")
    return value


def _timing_args(threads: object, repeats: object, warmup: object) -> tuple[int, int, int]:
    return _check_int("threads", threads, 1), _check_int("repeats", repeats, 1), _check_int("warmup", warmup, 0)


def thread_time_latency(model: nn.Module, input_shape: Sequence[int], repeats: int = 30, warmup: int = 5
                        ) -> LatencyStats:
    """Like :func:`~lightning_nas.hardware.profile.measure_latency` with one thread, but each pass is
    timed with the calling thread's CPU clock (``time.thread_time``): waiting for a core is not counted.

    Args:
        model: the network (on the CPU).
        input_shape: one input sample's shape, without the batch dimension.
        repeats: timed forward passes.
        warmup: untimed forward passes run first.
    """
    x = torch.randn((1, *(int(s) for s in input_shape)), generator=torch.Generator().manual_seed(0))
    flags = [(module, module.training) for module in model.modules()]
    threads, times = torch.get_num_threads(), []
    try:
        torch.set_num_threads(1)
        model.eval()
        with torch.inference_mode():
            for _ in range(warmup):
                model(x)
            for _ in range(repeats):
                start = time.thread_time()
                model(x)
                times.append((time.thread_time() - start) * 1e3)
    finally:
        torch.set_num_threads(threads)
        for module, training in flags:
            module.training = training
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]
    return LatencyStats(statistics.median(ordered), p90, statistics.fmean(ordered))


class HardwareTarget(ABC):
    """Measures (or predicts) a network's latency on one device and runtime.

    Subclasses implement :meth:`measure`; :meth:`measure_candidate` builds the candidate
    first (targets that predict from the architecture itself override it).
    """

    name: str = "hardware"

    @abstractmethod
    def measure(self, model: nn.Module, input_shape: Sequence[int]) -> dict[str, float]:
        """``hw/latency_ms``, ``hw/latency_p90_ms`` (and ``hw/memory_mb`` when known) of ``model``.

        Args:
            model: a plain network (no choice modules inside).
            input_shape: one input sample's shape, without the batch dimension.
        """

    def latency(self, model: nn.Module, input_shape: Sequence[int]) -> float:
        """The ``hw/latency_ms`` figure alone (targets may skip their other measurements)."""
        return self.measure(model, input_shape)["hw/latency_ms"]

    def measure_candidate(
        self, space: SearchSpace, arch: Architecture, model: nn.Module | None = None
    ) -> dict[str, float]:
        """The figures of ``arch`` of ``space`` (built unless ``model`` is given).

        Args:
            space: the search space.
            arch: the architecture.
            model: the already built network, to avoid building it again.
        """
        if model is None:
            with torch.random.fork_rng(devices=[]):  # weights do not matter; keep the global RNG
                model = space.build(arch)
        return self.measure(model, space.input_shape)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


@register_hardware("cpu")
class CpuTarget(HardwareTarget):
    """Eager PyTorch on this machine's CPU, batch size 1 (median and p90 of timed passes).

    ``hw/memory_mb`` is the peak activation memory of one forward pass. ``clock="wall"`` is the
    latency a user sees. On a shared machine (CI, a busy workstation) wall-clock times swing
    with every preemption; ``clock="cpu"`` times each pass with the calling thread's CPU clock,
    which leaves out the time spent waiting for a core, so rankings stay stable under load
    (it needs ``threads=1``: other threads' work would not be counted).

    Args:
        threads: intra-op CPU threads during the measurement.
        repeats: timed forward passes.
        warmup: untimed forward passes run first.
        clock: ``"wall"`` or ``"cpu"`` (thread CPU time).

    Example:
        >>> CpuTarget(threads=1, repeats=30).measure(model, (1, 16, 16))  # doctest: +SKIP
        {'hw/latency_ms': 1.9, 'hw/latency_p90_ms': 2.1, 'hw/memory_mb': 0.05}
    """

    name = "cpu"

    def __init__(self, threads: int = 1, repeats: int = 30, warmup: int = 5, clock: str = "wall") -> None:
        self.threads, self.repeats, self.warmup = _timing_args(threads, repeats, warmup)
        if clock not in ("wall", "cpu"):
            raise ValueError(f"hardware.clock must be 'wall' or 'cpu', got {clock!r}")
        if clock == "cpu" and self.threads != 1:
            raise ValueError(f"hardware.clock 'cpu' times the calling thread only: it needs hardware.threads=1, "
                             f"got {self.threads}")
        self.clock = clock

    def _stats(self, model: nn.Module, input_shape: Sequence[int]) -> LatencyStats:
        if self.clock == "wall":
            return measure_latency(model, input_shape, self.repeats, self.warmup, self.threads)
        return thread_time_latency(model, input_shape, self.repeats, self.warmup)

    def latency(self, model: nn.Module, input_shape: Sequence[int]) -> float:
        """Median eager latency (ms) only (no memory measurement)."""
        return self._stats(model, input_shape).median_ms

    def measure(self, model: nn.Module, input_shape: Sequence[int]) -> dict[str, float]:
        stats = self._stats(model, input_shape)
        return {"hw/latency_ms": stats.median_ms, "hw/latency_p90_ms": stats.p90_ms,
                "hw/memory_mb": peak_activation_memory(model, input_shape) / MIB}


@register_hardware("xnnpack")
class XnnpackTarget(HardwareTarget):
    """ExecuTorch with the XNNPACK delegate on this CPU: export to a temporary ``.pte`` and time it.

    ``hw/memory_mb`` is the program's planned (non-constant) memory; ``hw/export_s`` is the
    export time. Export takes seconds per candidate, far more than the eager ``cpu`` target.

    Args:
        threads: size of ExecuTorch's threadpool during the measurement.
        repeats: timed ``forward`` calls.
        warmup: untimed calls run first.
        quantize: int8 post-training quantization (calibrated on random inputs) before lowering.

    Example:
        >>> XnnpackTarget(threads=1).measure(model, (1, 16, 16))  # doctest: +SKIP
    """

    name = "xnnpack"

    def __init__(self, threads: int = 1, repeats: int = 30, warmup: int = 5, quantize: bool = False) -> None:
        self.threads, self.repeats, self.warmup = _timing_args(threads, repeats, warmup)
        if not isinstance(quantize, bool):
            raise ValueError(f"hardware.quantize must be true or false, got {quantize!r}")
        self.quantize = quantize

    def measure(self, model: nn.Module, input_shape: Sequence[int]) -> dict[str, float]:
        from lightning_nas.export.exporter import export_model
        from lightning_nas.export.profiler import profile_pte

        shape = tuple(int(s) for s in input_shape)
        example = torch.randn((1, *shape), generator=torch.Generator().manual_seed(0))
        with tempfile.TemporaryDirectory(prefix="lightning_nas_pte_") as tmp:
            path = Path(tmp) / "model.pte"
            start = time.perf_counter()
            export_model(model, example, path, quantize=self.quantize)
            seconds = time.perf_counter() - start
            profile = profile_pte(path, shape, self.repeats, self.warmup, self.threads)
        return {"hw/latency_ms": profile.median_ms, "hw/latency_p90_ms": profile.p90_ms,
                "hw/memory_mb": profile.planned_memory_bytes / MIB, "hw/export_s": seconds}


@register_hardware("lookup_table")
class LookupTableTarget(HardwareTarget):
    """Latency from a per-operation table measured on another device (a phone, a board).

    The latency is the sum of the table entries of the model's leaf-layer calls (see
    :mod:`lightning_nas.hardware.lookup_table` for signatures and file formats); the p90
    equals it. A layer missing from the table is an error naming its signature, unless
    ``fallback="cpu"``: then that layer is timed alone on this CPU (eager, 1 thread) and
    multiplied by ``scale``.

    Args:
        table: path of the JSON or CSV table.
        fallback: ``"error"`` or ``"cpu"``.
        scale: device/CPU latency ratio for ``fallback="cpu"``; ``None`` reads the table's
            ``meta.cpu_scale`` (default 1).

    Example:
        >>> LookupTableTarget("pixel7.json").measure(model, (3, 32, 32))  # doctest: +SKIP
    """

    name = "lookup_table"

    def __init__(self, table: str, fallback: str = "error", scale: float | None = None) -> None:
        if not isinstance(table, str | Path) or not Path(table).is_file():
            raise ValueError(f"hardware.table: latency table {table!r} does not exist")
        if fallback not in ("error", "cpu"):
            raise ValueError(f"hardware.fallback must be 'error' or 'cpu', got {fallback!r}")
        if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int | float)
                                  or not math.isfinite(scale) or scale <= 0):
            raise ValueError(f"hardware.scale must be a positive number or null, got {scale!r}")
        try:
            self.table = LookupTable.load(table)
        except (ValueError, KeyError) as error:
            raise ValueError(f"hardware.table: {error}") from error
        self.fallback = fallback
        self.scale = float(scale if scale is not None else self.table.meta.get("cpu_scale", 1.0))
        self._measured: dict[str, float] = {}
        self._cpu = CpuTarget(threads=1, repeats=20, warmup=3)

    def _entry(self, call: LayerCall) -> float:
        if call.signature in self.table:
            return self.table.entries[call.signature]
        if self.fallback == "error":
            raise MissingEntryError(call.signature, self.table.source)
        if call.signature not in self._measured:
            log.warning("%s is not in %s: timing it on this CPU x %.3g", call.signature, self.table.source,
                        self.scale)
            self._measured[call.signature] = self.scale * self._cpu.latency(call.module, call.input_shape)
        return self._measured[call.signature]

    def measure(self, model: nn.Module, input_shape: Sequence[int]) -> dict[str, float]:
        total = float(sum(self._entry(call) for call in layer_calls(model, input_shape)))
        return {"hw/latency_ms": total, "hw/latency_p90_ms": total}

    def __repr__(self) -> str:
        return (f"LookupTableTarget(table={self.table.source!r}, device={self.table.device!r}, "
                f"entries={len(self.table)}, fallback={self.fallback!r}, scale={self.scale})")


@register_hardware("predicted")
class PredictedLatencyTarget(HardwareTarget):
    """Latency from a saved :class:`~lightning_nas.hardware.predictor.LatencyPredictor` instead of
    a measurement (the p90 equals the prediction). Fit the predictor on the same search space and
    input shape as the search: its features depend on both.

    Args:
        predictor_path: a file written by ``LatencyPredictor.save``.

    Example:
        >>> PredictedLatencyTarget("latency.json").measure_candidate(space, arch)  # doctest: +SKIP
        {'hw/latency_ms': 2.4, 'hw/latency_p90_ms': 2.4}
    """

    name = "predicted"

    def __init__(self, predictor_path: str) -> None:
        from lightning_nas.hardware.predictor import LatencyPredictor

        if not isinstance(predictor_path, str | Path) or not Path(predictor_path).is_file():
            raise ValueError(f"hardware.predictor_path: {predictor_path!r} does not exist")
        try:
            self.predictor = LatencyPredictor.load(predictor_path)
        except (ValueError, KeyError, EOFError) as error:
            raise ValueError(f"hardware.predictor_path: {error}") from error
        self.predictor_path = str(predictor_path)

    def measure_candidate(
        self, space: SearchSpace, arch: Architecture, model: nn.Module | None = None
    ) -> dict[str, float]:
        value = float(self.predictor.predict(space, [arch])[0])
        return {"hw/latency_ms": value, "hw/latency_p90_ms": value}

    def measure(self, model: nn.Module, input_shape: Sequence[int]) -> dict[str, float]:
        value = self.predictor.predict_model(model, input_shape)
        return {"hw/latency_ms": value, "hw/latency_p90_ms": value}

    def __repr__(self) -> str:
        return f"PredictedLatencyTarget(predictor_path={self.predictor_path!r})"


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
