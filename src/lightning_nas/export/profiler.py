"""Latency, planned memory and an operator-level profile of an ExecuTorch ``.pte`` on this CPU.

Timing runs the program through :class:`executorch.runtime.Runtime` from Python, so each
measured call includes the pybind input/output copies (a few microseconds) besides the
ExecuTorch ``Method::execute`` itself.

Threads: XNNPACK (and the optimized kernels) share ExecuTorch's global pthreadpool, whose size
the pybindings expose only as ``_unsafe_reset_threadpool(n)`` / ``_threadpool_get_thread_count()``.
The reset destroys and recreates the pool, so programs loaded *before* a change must not run
after it (their XNNPACK runtimes hold the old pool): :func:`profile_pte` resizes the pool
only when the requested count differs, loads its own programs afterwards, and restores the
previous size before returning. Do not call it while another thread runs an ExecuTorch program.

Operator profile: the pip build of ExecuTorch 1.5.1 is compiled with the event tracer, so
``load_program(..., enable_etdump=True)`` records an ETDump that
:class:`executorch.devtools.Inspector` parses into per-event timings, including one event per
XNNPACK operator inside the delegate (for example ``Convolution (NHWC, F32) IGEMM #1``) next to
``DELEGATE_CALL`` and ``Method::execute``. XNNPACK's per-operator timer has microsecond
resolution, so very small operators read 0.0 ms. Should a build lack the event tracer (no ETDump
written), the CSV holds only the honest fallback: the Python wall-clock time of whole
``Method::execute`` calls, marked ``source=wall_clock``.
"""

from __future__ import annotations

import csv
import logging
import math
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = ["OpTiming", "PteProfile", "planned_memory_bytes", "profile_pte", "rounds_in_turn", "runtime_threads",
           "time_in_turn"]

log = logging.getLogger(__name__)

_CSV_FIELDS = ("source", "block", "event", "delegated", "backend", "count", "median_ms", "p90_ms",
               "mean_ms", "min_ms", "max_ms")


@dataclass(frozen=True)
class OpTiming:
    """Timings of one profiled event (an operator, a delegate call or the whole method)."""

    block: str
    event: str
    delegated: bool
    backend: str
    count: int
    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float


@dataclass(frozen=True)
class PteProfile:
    """Measured behaviour of a ``.pte`` at batch size 1.

    ``planned_memory_bytes`` is the sum of the non-constant buffers of ExecuTorch's memory plan
    for ``forward`` (activations and inputs/outputs that the runtime allocates); scratch memory
    that XNNPACK allocates internally for a delegate is not part of the plan.
    """

    path: Path
    median_ms: float
    p90_ms: float
    mean_ms: float
    planned_memory_bytes: int
    file_bytes: int
    threads: int
    repeats: int
    op_profile: tuple[OpTiming, ...] = ()
    op_profile_source: str = "none"
    etdump_csv: Path | None = None


def _p90(ordered: Sequence[float]) -> float:
    return ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]


def planned_memory_bytes(path: str | Path, method: str = "forward") -> int:
    """Bytes of the non-constant memory-planned buffers of ``method`` in a ``.pte``.

    Read from the program's execution plan (``non_const_buffer_sizes``; entry 0 is reserved
    for constants and skipped): the Python ``MethodMeta`` of this build does not expose the
    C++ ``memory_planned_buffer_size``.

    Args:
        path: the ``.pte`` file.
        method: the method name.
    """
    from executorch.exir._serialize._program import deserialize_pte_binary

    program = deserialize_pte_binary(Path(path).read_bytes()).program
    for plan in program.execution_plan:
        if plan.name == method:
            return int(sum(plan.non_const_buffer_sizes[1:]))
    raise ValueError(f"{path} has no method {method!r}")


@contextmanager
def runtime_threads(threads: int) -> Iterator[int]:
    """Size ExecuTorch's shared threadpool to ``threads`` inside the block (see module notes).

    Args:
        threads: worker threads for XNNPACK and the optimized kernels (>= 1).
    """
    from executorch.extension.pybindings import portable_lib

    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    previous = int(portable_lib._threadpool_get_thread_count())
    if previous != threads:
        portable_lib._unsafe_reset_threadpool(threads)
    try:
        yield int(portable_lib._threadpool_get_thread_count())
    finally:
        if previous != threads:
            portable_lib._unsafe_reset_threadpool(previous)


def _input_for(method: Any, input_shape: Sequence[int]) -> torch.Tensor:
    """A seeded input matching the program's static input shape (with or without batch dim)."""
    planned = tuple(int(s) for s in method.metadata.input_tensor_meta(0).sizes())
    shape = tuple(int(s) for s in input_shape)
    if shape not in (planned, planned[1:]):
        raise ValueError(f"input_shape {shape} does not match the program's input {planned}")
    generator = torch.Generator().manual_seed(0)
    return torch.randn(planned, generator=generator)


def _load(path: Path, etdump: bool) -> tuple[Any, Any]:
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(path, enable_etdump=etdump)
    return program, program.load_method("forward")


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}
"""Clocks a latency is read from: ``wall`` (what a user waits) or ``cpu`` (the calling thread's CPU
time: with one runtime thread the whole call runs on it, and time spent waiting for a core on a
busy machine is not counted)."""


def _check_clock(clock: str, threads: int) -> None:
    """``clock`` is one of :data:`CLOCKS`, and ``"cpu"`` runs on one thread."""
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {sorted(CLOCKS)}, got {clock!r}")
    if clock == "cpu" and threads != 1:
        raise ValueError(f"clock 'cpu' times the calling thread only: it needs threads=1, got {threads}")


def _time_calls(method: Any, x: torch.Tensor, repeats: int, warmup: int, clock: str = "wall") -> list[float]:
    now = CLOCKS[clock]
    for _ in range(warmup):
        method.execute([x])
    times = []
    for _ in range(repeats):
        start = now()
        method.execute([x])
        times.append((now() - start) * 1e3)
    return times


def _measure(path: Path, input_shape: Sequence[int], repeats: int, warmup: int, clock: str = "wall"
             ) -> tuple[list[float], torch.Tensor]:
    """Sorted latencies (ms, read from ``clock``) of ``forward`` and the input used."""
    _program, method = _load(path, etdump=False)
    x = _input_for(method, input_shape)
    return sorted(_time_calls(method, x, repeats, warmup, clock)), x


def time_in_turn(paths: Sequence[str | Path], input_shape: Sequence[int], rounds: int = 5, repeats: int = 4,
                 warmup: int = 2, threads: int = 1, clock: str = "wall") -> list[list[float]]:
    """Latencies (ms) of several ``.pte`` files timed in turn, so that they share the machine's load.

    In each of ``rounds`` rounds every program runs ``warmup`` untimed then ``repeats`` timed calls,
    one program after the other, in reverse order every other round (going first reads slightly
    slower); a round lasts milliseconds, so a busy machine slows them alike and their ratio holds
    where each figure alone would not.

    Args:
        paths: the ``.pte`` files (each ``forward`` takes one float tensor of ``input_shape``).
        input_shape: one input sample's shape, without the batch dimension.
        rounds: rounds of turns.
        repeats: timed calls per program and round.
        warmup: untimed calls per program and round, run just before its timed ones.
        threads: size of ExecuTorch's threadpool (``clock="cpu"`` needs 1).
        clock: ``"wall"`` or ``"cpu"`` (see :data:`CLOCKS`).

    Returns:
        Per path, its ``rounds * repeats`` latencies, sorted (:func:`rounds_in_turn` keeps the rounds apart).
    """
    by_round = rounds_in_turn(paths, input_shape, rounds, repeats, warmup, threads, clock)
    return [sorted(t for round_ in program for t in round_) for program in by_round]


def rounds_in_turn(paths: Sequence[str | Path], input_shape: Sequence[int], rounds: int = 5, repeats: int = 4,
                   warmup: int = 2, threads: int = 1, clock: str = "wall") -> list[list[list[float]]]:
    """:func:`time_in_turn`'s latencies (ms) kept by round: per path, per round, its ``repeats`` calls in order."""
    if rounds < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"need rounds >= 1, repeats >= 1 and warmup >= 0, got {rounds}, {repeats}, {warmup}")
    _check_clock(clock, threads)
    with runtime_threads(threads):  # programs are loaded, run and freed inside
        loaded = [_load(Path(path), etdump=False) for path in paths]
        inputs = [_input_for(method, input_shape) for _program, method in loaded]
        times: list[list[list[float]]] = [[] for _ in paths]
        turns = list(zip(loaded, inputs, times, strict=True))
        for round_ in range(rounds):
            for (_program, method), x, timed in turns if round_ % 2 == 0 else reversed(turns):
                timed.append(_time_calls(method, x, repeats, warmup, clock))
    return times


def _timing(block: str, event: str, raw: Sequence[float], delegated: bool = False, backend: str = "") -> OpTiming:
    ordered = sorted(float(r) for r in raw)
    return OpTiming(block, event, delegated, backend, len(ordered), statistics.median(ordered),
                    _p90(ordered), statistics.fmean(ordered), ordered[0], ordered[-1])


def _etdump_timings(program: Any, workdir: Path, warmup: int) -> list[OpTiming]:
    """Per-event timings from the program's ETDump (warmup runs dropped); [] when none was written."""
    from executorch.devtools import Inspector

    etdump, debug = workdir / "run.etdp", workdir / "debug.bin"
    try:
        program.write_etdump_result_to_file(str(etdump), str(debug))
    except (RuntimeError, OSError) as exc:  # a build without the event tracer cannot write one
        log.warning("no ETDump from this ExecuTorch build: %s", exc)
        return []
    if not etdump.is_file() or etdump.stat().st_size == 0:
        return []
    inspector = Inspector(etdump_path=str(etdump), debug_buffer_path=str(debug) if debug.is_file() else None)
    timings = []
    for block in inspector.event_blocks:
        for event in block.events:
            if event.perf_data is None or not event.perf_data.raw:
                continue
            raw = list(event.perf_data.raw)
            raw = raw[warmup:] if len(raw) > warmup else raw
            timings.append(_timing(block.name, str(event.name), raw, bool(event.is_delegated_op),
                                   str(event.delegate_backend_name or "")))
    return timings


def _write_csv(path: Path, source: str, timings: Sequence[OpTiming]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(_CSV_FIELDS)
        for t in timings:
            writer.writerow([source, t.block, t.event, int(t.delegated), t.backend, t.count,
                             f"{t.median_ms:.6f}", f"{t.p90_ms:.6f}", f"{t.mean_ms:.6f}",
                             f"{t.min_ms:.6f}", f"{t.max_ms:.6f}"])


def _op_profile(path: Path, x: torch.Tensor, repeats: int, warmup: int, csv_path: Path) -> tuple[str, list[OpTiming]]:
    """Run the program with ETDump enabled and write the operator profile to ``csv_path``."""
    program, method = _load(path, etdump=True)
    times = _time_calls(method, x, repeats, warmup)
    with tempfile.TemporaryDirectory(prefix="etdump_") as tmp:
        timings = _etdump_timings(program, Path(tmp), warmup)
    source = "etdump" if timings else "wall_clock"
    if not timings:
        timings = [_timing("Execute", "Method::execute (python wall clock)", times)]
    _write_csv(csv_path, source, timings)
    return source, timings


def profile_pte(
    path: str | Path,
    input_shape: Sequence[int],
    repeats: int = 50,
    warmup: int = 5,
    threads: int = 1,
    etdump_csv: str | Path | None = None,
    clock: str = "wall",
) -> PteProfile:
    """Measure a ``.pte`` in the ExecuTorch runtime at batch size 1.

    Args:
        path: the ``.pte`` file (its ``forward`` takes one float tensor).
        input_shape: shape of one input sample without the batch dimension (the full static
            shape, batch included, is accepted too).
        repeats: timed ``forward`` calls.
        warmup: untimed calls run first.
        threads: size of ExecuTorch's threadpool during the measurement (restored afterwards).
        etdump_csv: when given, a second run with ETDump enabled writes a per-operator profile
            here (columns: source, block, event, delegated, backend, count, median/p90/mean/min/max ms).
        clock: ``"wall"`` or ``"cpu"`` (see :data:`CLOCKS`; ``"cpu"`` needs ``threads=1``).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    _check_clock(clock, threads)
    path = Path(path)
    source: str = "none"
    timings: list[OpTiming] = []
    with runtime_threads(threads) as active:  # programs are loaded, run and freed inside
        ordered, x = _measure(path, input_shape, repeats, warmup, clock)
        if etdump_csv is not None:
            source, timings = _op_profile(path, x, repeats, warmup, Path(etdump_csv))
    profile = PteProfile(
        path=path, median_ms=statistics.median(ordered), p90_ms=_p90(ordered), mean_ms=statistics.fmean(ordered),
        planned_memory_bytes=planned_memory_bytes(path), file_bytes=path.stat().st_size, threads=active,
        repeats=repeats, op_profile=tuple(timings), op_profile_source=source,
        etdump_csv=Path(etdump_csv) if etdump_csv is not None else None,
    )
    log.info("profiled %s: median %.4f ms, p90 %.4f ms, planned memory %d B (%d threads)",
             path, profile.median_ms, profile.p90_ms, profile.planned_memory_bytes, active)
    return profile
