"""Hardware targets (Hydra group ``hardware``): where a candidate's latency and memory come from.

Every target turns a plain network into ``hw/latency_ms`` and ``hw/latency_p90_ms`` (plus
``hw/memory_mb`` when it knows the memory) without training.
:class:`~lightning_nas.evaluators.hardware.HardwareEvaluator` wraps any evaluator so its results
carry the target's figures; the ``predicted`` target lives in :mod:`lightning_nas.hardware.predictor`.

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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from lightning_nas.hardware.base import MIB, HardwareTarget, register_hardware, timing_args
from lightning_nas.hardware.lookup_table import LayerCall, LookupTable, MissingEntryError, layer_calls
from lightning_nas.hardware.profile import LatencyStats, measure_latency, peak_activation_memory

__all__ = [
    "CpuTarget",
    "LookupTableTarget",
    "XnnpackTarget",
    "thread_time_latency",
]

log = logging.getLogger(__name__)

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
    return LatencyStats.of(times)


def _check_clock(clock: object, threads: int) -> None:
    """``hardware.clock`` is ``"wall"`` or ``"cpu"``; ``"cpu"`` times the calling thread, so it needs one thread."""
    if clock not in ("wall", "cpu"):
        raise ValueError(f"hardware.clock must be 'wall' or 'cpu', got {clock!r}")
    if clock == "cpu" and threads != 1:
        raise ValueError(f"hardware.clock 'cpu' times the calling thread only: it needs hardware.threads=1, "
                         f"got {threads}")


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
        self.threads, self.repeats, self.warmup = timing_args(threads, repeats, warmup)
        _check_clock(clock, self.threads)
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
        clock: ``"wall"``, or ``"cpu"``: each call timed with the calling thread's CPU clock, so a
            search whose workers share the cores still measures what a quiet machine would
            (needs ``threads=1``; with one runtime thread XNNPACK runs on the calling thread).
        reference: the name of a baseline (e.g. ``"two_conv_cnn"``; the app builds it and calls
            :meth:`calibrate`), timed in turn with every candidate, so
            the load of a busy machine drops out: :meth:`calibrate` times it once, alone, and each
            candidate's figures are scaled by that quiet latency over the reference's latency
            beside the candidate. ``hw/latency_unscaled_ms`` and ``hw/reference_ms`` keep the
            figures as timed. Even the CPU clock reads 3-15% high while other workers share the
            cores (caches, memory bandwidth, clock speed), enough to screen out a network at a
            latency bound; the ratio to the reference does not move with the load.

    Example:
        >>> XnnpackTarget(threads=1).measure(model, (1, 16, 16))  # doctest: +SKIP
        >>> target = XnnpackTarget(threads=1, clock="cpu", reference="two_conv_cnn")  # doctest: +SKIP
        >>> target.calibrate(build_baseline("two_conv_cnn", (1, 28, 28), 10), (1, 28, 28))  # doctest: +SKIP
    """

    name = "xnnpack"

    def __init__(self, threads: int = 1, repeats: int = 30, warmup: int = 5, quantize: bool = False,
                 clock: str = "wall", reference: str | None = None) -> None:
        self.threads, self.repeats, self.warmup = timing_args(threads, repeats, warmup)
        if not isinstance(quantize, bool):
            raise ValueError(f"hardware.quantize must be true or false, got {quantize!r}")
        _check_clock(clock, self.threads)
        if reference is not None and (not isinstance(reference, str) or not reference):
            raise ValueError(f"hardware.reference must name a baseline network or be null, got {reference!r}")
        self.quantize, self.clock, self.reference = quantize, clock, reference
        self._reference_program: bytes | None = None  # the reference's .pte, written beside each candidate's
        self._reference_figures: dict[str, float] | None = None  # calibrate's figures; hw/latency_ms is the unit

    def _export(self, model: nn.Module, shape: tuple[int, ...], path: Path) -> float:
        """Export ``model`` to ``path``; the seconds it took."""
        from lightning_nas.export.exporter import export_model

        example = torch.randn((1, *shape), generator=torch.Generator().manual_seed(0))
        start = time.perf_counter()
        export_model(model, example, path, quantize=self.quantize)
        return time.perf_counter() - start

    def calibrate(self, model: nn.Module, input_shape: Sequence[int]) -> float:
        """Export the :attr:`reference` network ``model`` and time it alone; later measurements time it
        beside each candidate. Returns its median latency (ms), the unit every scaled figure is given in:
        take it on a quiet machine (a bound that names the reference compares ratios either way)."""
        from lightning_nas.export.profiler import planned_memory_bytes, profile_pte

        if self.reference is None:
            raise ValueError("hardware.reference is null: there is no reference network to calibrate")
        shape = tuple(int(s) for s in input_shape)
        with tempfile.TemporaryDirectory(prefix="lightning_nas_pte_") as tmp, _quiet("lightning_nas.export"):
            path = Path(tmp) / "reference.pte"
            seconds = self._export(model, shape, path)
            repeats = max(3 * self.repeats, 30)  # the one figure every candidate's is scaled by
            profile = profile_pte(path, shape, repeats, self.warmup, self.threads, clock=self.clock)
            self._reference_program = path.read_bytes()
            memory = planned_memory_bytes(path) / MIB
        quiet = profile.median_ms
        self._reference_figures = {"hw/latency_ms": quiet, "hw/latency_p90_ms": profile.p90_ms,
                                   "hw/memory_mb": memory, "hw/export_s": seconds}
        log.info("hardware.reference %s: %.4f ms alone; each candidate is timed in turn with it", self.reference,
                 quiet)
        return quiet

    def reference_figures(self) -> dict[str, float]:
        """The :attr:`reference`'s own figures from :meth:`calibrate` (``hw/latency_ms`` is the unit of every
        scaled figure): a bound that names the reference is exactly this, so a candidate meets
        ``max_latency: 0.95x <reference>`` when it ran at most 0.95x the reference's speed beside it."""
        if self._reference_figures is None:
            raise RuntimeError(f"hardware.reference={self.reference!r}: calibrate(<the reference network>, "
                               "input_shape) has not run")
        return dict(self._reference_figures)

    def measure(self, model: nn.Module, input_shape: Sequence[int]) -> dict[str, float]:
        from lightning_nas.export.profiler import planned_memory_bytes, profile_pte, time_in_turn

        shape = tuple(int(s) for s in input_shape)
        with tempfile.TemporaryDirectory(prefix="lightning_nas_pte_") as tmp, _quiet("lightning_nas.export"):
            path = Path(tmp) / "model.pte"
            seconds = self._export(model, shape, path)
            memory = planned_memory_bytes(path) / MIB
            if self.reference is None:
                profile = profile_pte(path, shape, self.repeats, self.warmup, self.threads, clock=self.clock)
                return {"hw/latency_ms": profile.median_ms, "hw/latency_p90_ms": profile.p90_ms,
                        "hw/memory_mb": memory, "hw/export_s": seconds}
            if self._reference_program is None or self._reference_figures is None:
                raise RuntimeError(f"hardware.reference={self.reference!r} needs calibrate(<the reference network>, "
                                   "input_shape) before the first measurement")
            reference = Path(tmp) / "reference.pte"
            reference.write_bytes(self._reference_program)
            rounds = min(5, self.repeats)
            candidate_ms, reference_ms = time_in_turn(
                [path, reference], shape, rounds=rounds, repeats=math.ceil(self.repeats / rounds),
                warmup=max(1, self.warmup // rounds), threads=self.threads, clock=self.clock)
        now = statistics.median(reference_ms)
        scale = self._reference_figures["hw/latency_ms"] / now
        stats = LatencyStats.of(candidate_ms)
        return {"hw/latency_ms": stats.median_ms * scale, "hw/latency_p90_ms": stats.p90_ms * scale,
                "hw/memory_mb": memory, "hw/export_s": seconds, "hw/latency_unscaled_ms": stats.median_ms,
                "hw/reference_ms": now}


@contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Raise logger ``name`` to WARNING inside the block (a temporary export per candidate is no news)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


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
