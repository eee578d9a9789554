"""Per-operation latency lookup tables: latency of a device you cannot reach, as a sum over layers.

A model's latency is the sum of the table entries of its leaf layers, found by running one
batch-1 forward pass with forward hooks that record each layer call's input and output shapes.
``nn.Identity``, ``nn.Dropout`` and ``nn.Flatten`` are free (no entry needed); functional ops
inside a module's ``forward`` (residual adds, the squeeze-excite product) have no entry, which
is why :class:`~lightning_nas.hardware.predictor.LatencyPredictor` calibrates the sum.

Signatures (the table keys) name the layer type and the shape parameters that decide its
cost, with the spatial size of the *input*:

* ``Conv2d(cin=16,cout=24,k=3,s=2,g=1,h=14,w=14)`` (``d=`` for a dilation above 1 and ``p=``
  for a padding other than ``d * (k - 1) // 2``; ``3x5`` for non-square kernels or strides),
* ``Linear(cin=240,cout=10)`` (``n=`` for the product of extra leading dimensions),
* ``BatchNorm2d(c=24,h=16,w=16)``,
* anything else ``TypeName(c=24,h=16,w=16)`` for 4-D inputs, ``TypeName(n=240)`` for 2-D ones,
  ``TypeName(shape=AxB...)`` otherwise, with ``oh=``/``ow=`` (or ``out=``) added when the
  output shape differs from the input (``AdaptiveAvgPool2d(c=240,h=4,w=4,oh=1,ow=1)``).

File formats (chosen by suffix):

* JSON: ``{"format": "lightning_nas.latency_table/1", "device": "pixel7-xnnpack", "unit": "ms",
  "meta": {...}, "entries": {"<signature>": <ms>, ...}}``; a bare ``{"<signature>": <ms>}``
  object is read too. ``meta.cpu_scale`` (optional) is the device/CPU latency ratio used by
  :class:`~lightning_nas.hardware.targets.LookupTableTarget` for missing entries.
* CSV: a header ``signature,latency_ms`` and one row per signature.

Example:
    >>> from torch import nn
    >>> table = LookupTable({"Conv2d(cin=1,cout=4,k=3,s=1,g=1,h=8,w=8)": 0.02, "ReLU(c=4,h=8,w=8)": 0.005})
    >>> round(table.latency(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()), (1, 8, 8)), 3)
    0.025
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from lightning_nas.hardware.profile import forward_macs

if TYPE_CHECKING:
    from lightning_nas.hardware.base import HardwareTarget

__all__ = [
    "FREE_LAYERS",
    "TABLE_FORMAT",
    "LayerCall",
    "LookupTable",
    "MissingEntryError",
    "build_lookup_table",
    "layer_calls",
    "layer_signature",
    "measure_layers",
]

log = logging.getLogger(__name__)

TABLE_FORMAT = "lightning_nas.latency_table/1"
FREE_LAYERS: tuple[type[nn.Module], ...] = (nn.Identity, nn.Dropout, nn.Flatten)
"""Leaf layers that cost nothing and need no table entry."""


class MissingEntryError(LookupError):
    """A layer signature has no entry in the lookup table."""

    def __init__(self, signature: str, source: str) -> None:
        self.signature = signature
        super().__init__(f"the latency table {source} has no entry for {signature}; add it (measure it "
                         "on the device, e.g. with build_lookup_table) or use fallback='cpu'")


@dataclass(frozen=True)
class LayerCall:
    """One leaf-layer call seen during a batch-1 forward pass.

    ``input_shape`` and ``output_shape`` exclude the batch dimension; ``macs`` counts the
    multiply-accumulates of convolutions and linear layers (0 for other layers).
    """

    signature: str
    kind: str
    module: nn.Module = field(repr=False, compare=False)
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    macs: int

    @property
    def elements(self) -> int:
        """Number of output values (a proxy for memory traffic)."""
        return math.prod(self.output_shape)


def _pair(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[-1]))


def _size(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def _conv_signature(conv: nn.Conv2d, shape: Sequence[int]) -> str:
    k, s, d = _pair(conv.kernel_size), _pair(conv.stride), _pair(conv.dilation)
    parts = [f"cin={conv.in_channels}", f"cout={conv.out_channels}", f"k={_size(k)}", f"s={_size(s)}",
             f"g={conv.groups}", f"h={shape[-2]}", f"w={shape[-1]}"]
    if d != (1, 1):
        parts.append(f"d={_size(d)}")
    padding = conv.padding if isinstance(conv.padding, str) else _size(_pair(conv.padding))
    if padding != _size((d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)):
        parts.append(f"p={padding}")
    return f"Conv2d({','.join(parts)})"


def _shape_fields(shape: tuple[int, ...], out: tuple[int, ...]) -> list[str]:
    if len(shape) == 3:
        parts = [f"c={shape[0]}", f"h={shape[1]}", f"w={shape[2]}"]
    elif len(shape) == 1:
        parts = [f"n={shape[0]}"]
    else:
        parts = [f"shape={'x'.join(map(str, shape))}"]
    if out == shape:
        return parts
    if len(shape) == 3 and len(out) == 3 and out[0] == shape[0]:
        return [*parts, f"oh={out[1]}", f"ow={out[2]}"]
    return [*parts, f"out={'x'.join(map(str, out))}"]


def layer_signature(module: nn.Module, input_shape: Sequence[int], output_shape: Sequence[int] | None = None) -> str:
    """The table key of one call of a leaf layer (see the module docstring).

    Args:
        module: the leaf layer.
        input_shape: its input shape without the batch dimension.
        output_shape: its output shape without the batch dimension (default: same as the input).
    """
    shape = tuple(int(s) for s in input_shape)
    out = shape if output_shape is None else tuple(int(s) for s in output_shape)
    if isinstance(module, nn.Conv2d):
        return _conv_signature(module, shape)
    if isinstance(module, nn.Linear):
        extra = math.prod(shape[:-1])
        suffix = f",n={extra}" if len(shape) > 1 else ""
        return f"Linear(cin={module.in_features},cout={module.out_features}{suffix})"
    kind = "BatchNorm2d" if isinstance(module, nn.BatchNorm2d) else type(module).__name__
    return f"{kind}({','.join(_shape_fields(shape, out))})"


def _kind(module: nn.Module) -> str:
    for base in (nn.Conv2d, nn.Linear, nn.BatchNorm2d):
        if isinstance(module, base):
            return base.__name__
    return type(module).__name__


def _leaves(model: nn.Module) -> Iterator[nn.Module]:
    for module in model.modules():
        if not any(True for _ in module.children()) and not isinstance(module, FREE_LAYERS):
            yield module


def _device(model: nn.Module) -> torch.device:
    tensor = next(iter([*model.parameters(), *model.buffers()]), None)
    return torch.device("cpu") if tensor is None else tensor.device


@contextmanager
def _eval_one_thread(model: nn.Module) -> Iterator[None]:
    """Eval mode, no grad and one intra-op thread (extra threads only contend on a busy CPU)."""
    flags = [(m, m.training) for m in model.modules()]
    threads = torch.get_num_threads()
    model.eval()
    try:
        torch.set_num_threads(1)
        with torch.no_grad():
            yield
    finally:
        torch.set_num_threads(threads)
        for module, training in flags:
            module.training = training


def layer_calls(model: nn.Module, input_shape: Sequence[int]) -> list[LayerCall]:
    """Every non-free leaf-layer call of one batch-1 forward pass, in call order.

    Works on a model on the ``meta`` device too (shapes only, no arithmetic).

    Args:
        model: the network.
        input_shape: one input sample's shape, without the batch dimension.
    """
    calls: list[LayerCall] = []

    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if not args or not isinstance(args[0], torch.Tensor) or not isinstance(output, torch.Tensor):
            raise TypeError(f"{type(module).__name__}: lookup tables need one tensor in and one out")
        shape, out = tuple(args[0].shape[1:]), tuple(output.shape[1:])
        calls.append(LayerCall(layer_signature(module, shape, out), _kind(module), module, shape, out,
                               forward_macs(module.forward, args[0])))

    handles = [leaf.register_forward_hook(hook) for leaf in _leaves(model)]
    try:
        x = torch.zeros((1, *(int(s) for s in input_shape)), device=_device(model))
        with _eval_one_thread(model):
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return calls


@dataclass
class LookupTable:
    """Latency (ms) of layer signatures on one device.

    Args:
        entries: signature -> median latency in milliseconds (finite, >= 0).
        device: a free-text name of the device and runtime the entries were measured on.
        meta: extra facts (``cpu_scale``, measurement settings, ...); saved with the table.
        source: where the table came from (used in error messages).
    """

    entries: dict[str, float]
    device: str = "unknown"
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = "<memory>"

    def __post_init__(self) -> None:
        checked: dict[str, float] = {}
        for signature, value in self.entries.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{self.source}: entry {signature} must be a finite latency >= 0 ms, got {value!r}")
            checked[str(signature)] = float(value)
        self.entries = checked

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, signature: object) -> bool:
        return signature in self.entries

    def lookup(self, signature: str) -> float:
        """The latency of ``signature``; :class:`MissingEntryError` naming it when absent."""
        if signature not in self.entries:
            raise MissingEntryError(signature, self.source)
        return self.entries[signature]

    def latency(self, model: nn.Module, input_shape: Sequence[int]) -> float:
        """Sum of the entries of every leaf-layer call of ``model`` (ms).

        Args:
            model: the network.
            input_shape: one input sample's shape, without the batch dimension.
        """
        return float(sum(self.lookup(call.signature) for call in layer_calls(model, input_shape)))

    def save(self, path: str | Path) -> Path:
        """Write the table as JSON (``.json``) or CSV (``.csv``; device and meta are dropped)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".csv":
            with path.open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["signature", "latency_ms"])
                writer.writerows([s, repr(v)] for s, v in sorted(self.entries.items()))
        else:
            payload = {"format": TABLE_FORMAT, "device": self.device, "unit": "ms", "meta": self.meta,
                       "entries": dict(sorted(self.entries.items()))}
            path.write_text(json.dumps(payload, indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> LookupTable:
        """Read a JSON or CSV table (see the module docstring); ``ValueError`` names a bad file."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"latency table {path} does not exist")
        if path.suffix.lower() == ".csv":
            with path.open(newline="") as handle:
                rows = list(csv.DictReader(handle))
            if rows and not {"signature", "latency_ms"} <= set(rows[0]):
                raise ValueError(f"{path}: a CSV latency table needs the columns signature,latency_ms")
            return cls({r["signature"]: float(r["latency_ms"]) for r in rows}, source=str(path))
        data = json.loads(path.read_text())
        if not isinstance(data, Mapping):
            raise ValueError(f"{path}: a JSON latency table must be an object")
        if "entries" not in data:
            return cls(dict(data), source=str(path))
        if data.get("unit", "ms") != "ms":
            raise ValueError(f"{path}: unit must be 'ms', got {data.get('unit')!r}")
        return cls(dict(data["entries"]), str(data.get("device", "unknown")), dict(data.get("meta", {})), str(path))


def measure_layers(calls: Iterable[LayerCall], target: HardwareTarget) -> dict[str, float]:
    """Latency (ms) of each distinct signature among ``calls``, its layer timed alone on ``target``.

    Args:
        calls: layer calls (from :func:`layer_calls` on real, not ``meta``, models).
        target: where to time them.
    """
    entries: dict[str, float] = {}
    for call in calls:
        if call.signature not in entries:
            entries[call.signature] = target.latency(call.module, call.input_shape)
    return entries


def build_lookup_table(
    models: Iterable[nn.Module], input_shape: Sequence[int], target: HardwareTarget, device: str | None = None
) -> LookupTable:
    """Measure every distinct leaf-layer signature of ``models`` in isolation on ``target``.

    Each layer runs alone at batch size 1 with the input shape it saw inside its model, so
    the table holds this machine's (or this runtime's) per-layer medians.

    Args:
        models: networks whose layers to measure (e.g. architectures sampled from a space).
        input_shape: one input sample's shape, without the batch dimension.
        target: where to measure, e.g. ``CpuTarget(threads=1)``.
        device: the name stored in the table (default: the target's ``name``).

    Example:
        >>> table = build_lookup_table([model], (1, 16, 16), CpuTarget())  # doctest: +SKIP
        >>> table.save("cpu_table.json")  # doctest: +SKIP
    """
    entries = measure_layers((call for model in models for call in layer_calls(model, input_shape)), target)
    log.info("measured %d layer signatures on %s", len(entries), target)
    meta = {"input_shape": [int(s) for s in input_shape], "target": repr(target)}
    return LookupTable(entries, device or str(getattr(target, "name", type(target).__name__)), meta)
