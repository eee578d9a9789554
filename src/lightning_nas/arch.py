"""The value types at the bottom of the layers: architectures (frozen, hashable, JSON-serialisable
``label -> choice`` mappings), evaluation jobs and their results."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

ChoiceValue: TypeAlias = int | float | str | bool | tuple[int, ...]

__all__ = ["Architecture", "ChoiceValue", "EvalResult", "Job", "Status", "normalise_value"]


def normalise_value(value: Any) -> ChoiceValue:
    """Return ``value`` in its canonical, hashable form (lists become tuples of ints)."""
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ValueError(f"sequence choice values must hold integers only, got {value!r}")
        return tuple(int(v) for v in value)
    raise ValueError(f"unsupported choice value {value!r} of type {type(value).__name__}")


class Architecture(Mapping[str, ChoiceValue]):
    """An immutable mapping from decision label to the chosen value.

    Equal architectures hash equally whatever the insertion order, and
    ``Architecture.from_json(arch.to_json()) == arch`` holds exactly.

    Example:
        >>> arch = Architecture({"stage0/kernel": 5, "width": 0.75})
        >>> Architecture.from_json(arch.to_json()) == arch
        True
    """

    __slots__ = ("_hash", "_items")

    def __init__(self, choices: Mapping[str, Any] | None = None) -> None:
        items = {str(k): normalise_value(v) for k, v in (choices or {}).items()}
        self._items: dict[str, ChoiceValue] = dict(sorted(items.items()))
        self._hash = hash(tuple((k, type(v).__name__, v) for k, v in self._items.items()))

    def __getitem__(self, label: str) -> ChoiceValue:
        return self._items[label]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Architecture):
            return NotImplemented
        return self._items == other._items and all(
            type(v) is type(other._items[k]) for k, v in self._items.items()
        )

    def __repr__(self) -> str:
        return f"Architecture({self._items!r})"

    def replace(self, **changes: Any) -> Architecture:
        """Return a copy with some labels set to new values."""
        return Architecture({**self._items, **changes})

    def with_value(self, label: str, value: Any) -> Architecture:
        """Return a copy with ``label`` set to ``value`` (labels may contain '/')."""
        return Architecture({**self._items, label: value})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self._items.items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Architecture:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"an architecture JSON must be an object, got {type(data).__name__}")
        return cls(data)

    def digest(self) -> str:
        """Short stable identifier (first 12 hex digits of the SHA-1 of the JSON)."""
        return hashlib.sha1(self.to_json().encode()).hexdigest()[:12]

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Architecture:
        return cls.from_json(Path(path).read_text())


Status = Literal["ok", "failed"]


@dataclass(frozen=True)
class EvalResult:
    """What one evaluation produced.

    ``metrics`` uses ``stage/metric`` names: ``search/val_acc``, ``model/params``,
    ``model/macs``, ``hw/latency_ms``, ``hw/memory_mb``. A failed evaluation keeps the
    error text and whatever metrics were computed before the failure.
    """

    status: Status
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def failed(cls, error: str, metrics: dict[str, float] | None = None, duration_s: float = 0.0) -> EvalResult:
        return cls("failed", dict(metrics or {}), error, duration_s)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "metrics": {
                k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in self.metrics.items()
            },
            "error": self.error,
            "duration_s": self.duration_s,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResult:
        metrics = {k: (math.nan if v is None else float(v)) for k, v in data.get("metrics", {}).items()}
        return cls(data["status"], metrics, data.get("error"), float(data.get("duration_s", 0.0)))


@dataclass(frozen=True)
class Job:
    """One evaluation a strategy asks for: ``arch``, at a fidelity for multi-fidelity strategies.

    Args:
        arch: the architecture.
        epochs: train to this many epochs in total (``None``: the evaluator's own budget).
        resume_from: the state (e.g. a checkpoint path) an earlier, lower-fidelity job left.
        rung: the fidelity level (index into the strategy's epoch ladder).
        bracket: the Hyperband bracket the job belongs to.
    """

    arch: Architecture
    epochs: int | None = None
    resume_from: Any | None = None
    rung: int = 0
    bracket: int = 0

    def extra(self) -> dict[str, int]:
        """What a history record stores about the fidelity (nothing for a plain job)."""
        return {} if self.epochs is None else {"epochs": self.epochs, "rung": self.rung, "bracket": self.bracket}
