"""Model metrics computed without training: parameters, MACs, latency and activation memory.

Every function takes a plain ``nn.Module`` and the shape of one input sample
``(channels, height, width)``; measurements run at batch size 1 in eval mode, and the
module's training flag (and torch's thread count) are restored afterwards.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "LatencyStats",
    "count_macs",
    "count_params",
    "forward_macs",
    "iter_profile",
    "measure_latency",
    "peak_activation_memory",
    "profile_model",
]

InputShape = Sequence[int]


@dataclass(frozen=True)
class LatencyStats:
    """Wall-clock latency of one batch-1 forward pass, in milliseconds."""

    median_ms: float
    p90_ms: float
    mean_ms: float

    @classmethod
    def of(cls, times: Sequence[float]) -> LatencyStats:
        """The median, 90th percentile and mean of timed passes (ms; at least one)."""
        ordered = sorted(times)
        p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]
        return cls(statistics.median(ordered), p90, statistics.fmean(ordered))


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters (shared parameters counted once).

    Args:
        model: any module.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _device_of(model: nn.Module) -> torch.device:
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if tensor is None else tensor.device


def _example(model: nn.Module, input_shape: InputShape) -> torch.Tensor:
    shape = tuple(int(s) for s in input_shape)
    if not shape or min(shape) < 1:
        raise ValueError(f"input_shape must be a non-empty sequence of positive ints, got {input_shape!r}")
    generator = torch.Generator().manual_seed(0)  # never touches the global RNG
    return torch.randn((1, *shape), generator=generator).to(_device_of(model))


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode and restore every submodule's training flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in flags:
            module.training = training


def count_macs(model: nn.Module, input_shape: InputShape) -> int:
    """Multiply-accumulates of one forward pass at batch size 1.

    Counted with :class:`torch.utils.flop_counter.FlopCounterMode` (FLOPs / 2), which covers
    matmuls and convolutions; elementwise ops, norms and pooling are not counted.

    Args:
        model: the network.
        input_shape: shape of one input sample, without the batch dimension.
    """
    x = _example(model, input_shape)
    with _eval_mode(model):
        return forward_macs(model, x)


def forward_macs(forward: Callable[..., Any], *inputs: Any) -> int:
    """Multiply-accumulates of ``forward(*inputs)``: :class:`~torch.utils.flop_counter.FlopCounterMode`'s
    FLOPs / 2 (the one MAC counter: :func:`count_macs` and the lookup table's per-layer calls use it).

    Args:
        forward: a module, or a module's ``forward`` (which bypasses its hooks).
        inputs: its inputs (``meta`` tensors are fine: only shapes are used).
    """
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        forward(*inputs)
    return int(counter.get_total_flops()) // 2


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(
    model: nn.Module, input_shape: InputShape, repeats: int = 30, warmup: int = 5, threads: int = 1
) -> LatencyStats:
    """Eager-mode latency of a batch-1 forward pass on the model's device.

    Args:
        model: the network.
        input_shape: shape of one input sample, without the batch dimension.
        repeats: timed forward passes.
        warmup: untimed forward passes run first.
        threads: intra-op CPU threads during the measurement (restored afterwards).
    """
    if repeats < 1 or warmup < 0 or threads < 1:
        raise ValueError(f"need repeats >= 1, warmup >= 0, threads >= 1; got {repeats}, {warmup}, {threads}")
    x = _example(model, input_shape)
    device = x.device
    previous_threads = torch.get_num_threads()
    times: list[float] = []
    try:
        torch.set_num_threads(threads)
        with _eval_mode(model), torch.inference_mode():
            for _ in range(warmup):
                model(x)
            _synchronize(device)
            for _ in range(repeats):
                start = time.perf_counter()
                model(x)
                _synchronize(device)
                times.append((time.perf_counter() - start) * 1e3)
    finally:
        torch.set_num_threads(previous_threads)
    return LatencyStats.of(times)


class _ActivationTracker(TorchDispatchMode):
    """Tracks the bytes of live tensor storages created by ops, and their running maximum.

    A storage is counted once when an op first returns a tensor on it and released when the
    storage is garbage-collected; storages in ``ignored`` (parameters, buffers) never count.
    """

    def __init__(self, ignored: set[int], baseline: int) -> None:
        super().__init__()
        self.ignored = ignored
        self.live = baseline
        self.peak = baseline
        self._sizes: dict[int, int] = {}

    def __torch_dispatch__(
        self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self._track(leaf.untyped_storage())
        return out

    def _track(self, storage: torch.UntypedStorage) -> None:
        key, size = storage.data_ptr(), storage.nbytes()
        if size == 0 or key in self.ignored or key in self._sizes:
            return
        self._sizes[key] = size
        self.live += size
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._release, key).atexit = False

    def _release(self, key: int) -> None:
        self.live -= self._sizes.pop(key, 0)


def peak_activation_memory(model: nn.Module, input_shape: InputShape) -> int:
    """Peak bytes of live activations during one batch-1 inference forward pass.

    Counts the input plus every tensor storage the forward creates, from creation until it is
    freed; parameters and buffers are excluded, and so is scratch memory used inside a kernel.

    Args:
        model: the network.
        input_shape: shape of one input sample, without the batch dimension.
    """
    x = _example(model, input_shape)
    ignored = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    storage = x.untyped_storage()
    ignored.add(storage.data_ptr())  # the input is live throughout: counted in the baseline
    tracker = _ActivationTracker(ignored, baseline=storage.nbytes())
    with _eval_mode(model), torch.no_grad(), tracker:
        model(x)
    return tracker.peak


def iter_profile(
    model: nn.Module, input_shape: InputShape, latency_repeats: int = 20, latency_threads: int = 1,
    size_only: bool = False,
) -> Iterator[tuple[str, float]]:
    """Yield ``(metric name, value)`` one metric at a time, cheapest first.

    Callers that must keep partial results when a later measurement fails (a forward pass
    that raises) consume this lazily; :func:`profile_model` collects it into a dict.

    Args:
        model: the network.
        input_shape: shape of one input sample, without the batch dimension.
        latency_repeats: timed forward passes for the latency figures.
        latency_threads: intra-op CPU threads for the latency figures.
        size_only: only ``model/params`` and ``model/macs`` (a hardware target measures the rest).
    """
    yield "model/params", float(count_params(model))
    yield "model/macs", float(count_macs(model, input_shape))
    if size_only:
        return
    yield "hw/memory_mb", peak_activation_memory(model, input_shape) / 2**20
    stats = measure_latency(model, input_shape, repeats=latency_repeats, threads=latency_threads)
    yield "hw/latency_ms", stats.median_ms
    yield "hw/latency_p90_ms", stats.p90_ms


def profile_model(
    model: nn.Module, input_shape: InputShape, latency_repeats: int = 20, latency_threads: int = 1
) -> dict[str, float]:
    """All model metrics: ``model/params``, ``model/macs``, ``hw/latency_ms``,
    ``hw/latency_p90_ms`` and ``hw/memory_mb`` (peak activation memory, MiB).

    Args:
        model: the network.
        input_shape: shape of one input sample, without the batch dimension.
        latency_repeats: timed forward passes for the latency figures.
        latency_threads: intra-op CPU threads for the latency figures.
    """
    return dict(iter_profile(model, input_shape, latency_repeats, latency_threads))
