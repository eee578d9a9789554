"""The :class:`HardwareTarget` interface and the ``hardware`` registry (below targets, tables and predictors)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import nn

from lightning_nas.arch import Architecture
from lightning_nas.registry import Registry
from lightning_nas.spaces.base import SearchSpace

__all__ = ["HARDWARE", "MIB", "HardwareTarget", "check_int", "register_hardware", "timing_args"]


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


HARDWARE: Registry[type[HardwareTarget]] = Registry("hardware target")
register_hardware = HARDWARE.register

MIB = 2.0**20


def check_int(key: str, value: object, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"hardware.{key} must be an int >= {low}, got {value!r}")
    return value


def timing_args(threads: object, repeats: object, warmup: object) -> tuple[int, int, int]:
    return check_int("threads", threads, 1), check_int("repeats", repeats, 1), check_int("warmup", warmup, 0)
