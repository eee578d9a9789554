"""Training precision on the CPU: bfloat16 autocast where it trains a network faster.

CPUs with native bfloat16 (AVX512-BF16, AMX) run dense convolutions and matrix products faster
under ``torch.autocast`` (weights, optimizer and BatchNorm stay in float32), while depthwise
convolutions can run slower. ``precision="auto"`` therefore times a few training steps of each
network in both precisions and keeps the faster one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BF16_MIN_SPEEDUP", "PRECISIONS", "choose_precision", "cpu_has_native_bf16", "faster_precision",
           "recorded_precision", "training_speed", "validate_precision"]

PRECISIONS = ("32", "bf16-mixed", "auto")
"""``evaluator.precision`` values: float32, bfloat16 autocast, or the faster of the two per network."""
BF16_MIN_SPEEDUP = 1.1
"""``auto`` keeps float32 unless bfloat16 trains at least this many times as fast (timing noise aside)."""


def validate_precision(value: object, key: str = "evaluator.precision") -> str:
    """``value`` as a precision name, or a ValueError that names ``key``."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if text not in PRECISIONS:
        raise ValueError(f"{key} must be one of {', '.join(PRECISIONS)}, got {value!r}")
    return str(text)


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively on this CPU (without it, bfloat16 is emulated, and slow)."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except (RuntimeError, AttributeError):
        return False


def faster_precision(fp32: float, bf16: float | None) -> str:
    """``"bf16-mixed"`` where bfloat16 trains at ``bf16`` images/s, at least :data:`BF16_MIN_SPEEDUP` times
    float32's ``fp32``; ``"32"`` otherwise, or when bfloat16 was not timed (None)."""
    return "bf16-mixed" if bf16 is not None and bf16 >= BF16_MIN_SPEEDUP * fp32 else "32"


def recorded_precision(metrics: Mapping[str, float]) -> str:
    """The precision a fit trained in, from its metrics: ``"bf16-mixed"`` where ``train/bf16`` is set,
    ``"32"`` otherwise (fits with ``evaluator.precision=32`` do not record it)."""
    return "bf16-mixed" if metrics.get("train/bf16") else "32"


def training_speed(model: nn.Module, input_shape: tuple[int, ...], num_classes: int, batch_size: int, *,
                   steps: int = 4, warmup: int = 2, channels_last: bool = False, precision: str = "32") -> float:
    """Training images per second of ``model`` (forward, backward, AdamW step) on random data, as on
    cores of its own (the lesser of wall and CPU time).

    ``warmup`` untimed steps first; the model's weights, buffers and memory format and torch's random
    state are restored afterwards. ``precision``: ``"32"`` or ``"bf16-mixed"`` (CPU autocast).
    """
    if precision not in ("32", "bf16-mixed"):
        raise ValueError(f"precision must be '32' or 'bf16-mixed' to be timed, got {precision!r}")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    was_training = model.training
    fmt = torch.channels_last if channels_last and len(input_shape) == 3 else torch.contiguous_format
    with torch.random.fork_rng():
        model.train().to(memory_format=fmt)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x = torch.randn(batch_size, *input_shape).contiguous(memory_format=fmt)
        y = torch.randint(0, num_classes, (batch_size,))
        started = cpu_started = 0.0
        for step in range(steps + warmup):
            if step == warmup:
                started, cpu_started = time.perf_counter(), time.process_time()
            optimizer.zero_grad(set_to_none=True)
            autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16-mixed"
                        else nullcontext())
            with autocast:
                loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
        # other work on the cores stretches wall time but not this process's CPU time: the lesser of the
        # two is the speed the model trains at on cores of its own
        seconds = min(time.perf_counter() - started, time.process_time() - cpu_started)
    model.to(memory_format=torch.contiguous_format)
    model.load_state_dict(state)
    for parameter in model.parameters():
        parameter.grad = None
    model.train(was_training)
    return steps * batch_size / max(seconds, 1e-9)


def choose_precision(model: nn.Module, input_shape: tuple[int, ...], num_classes: int, batch_size: int, *,
                     channels_last: bool = False, steps: int = 3, warmup: int = 1) -> tuple[str, float]:
    """The faster precision to train ``model`` in on this CPU, and its speed (images/s).

    ``"bf16-mixed"`` where the CPU runs bfloat16 natively and it trains at least
    :data:`BF16_MIN_SPEEDUP` times as fast as float32; ``"32"`` otherwise (then only float32 is timed
    on a CPU without native bfloat16). Each timing runs ``warmup`` untimed steps, then ``steps`` timed ones.
    """
    def speed(precision: str) -> float:
        return training_speed(model, input_shape, num_classes, batch_size, steps=steps, warmup=warmup,
                              channels_last=channels_last, precision=precision)

    fp32 = speed("32")
    if not cpu_has_native_bf16():
        return "32", fp32
    bf16 = speed("bf16-mixed")
    fp32 = max(fp32, speed("32"))  # a second float32 round: the first one carried the one-time costs
    choice = faster_precision(fp32, bf16)
    return choice, bf16 if choice == "bf16-mixed" else fp32
