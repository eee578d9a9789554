"""Architectures: frozen, hashable, JSON-serialisable ``label -> choice`` mappings."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeAlias

ChoiceValue: TypeAlias = int | float | str | bool | tuple[int, ...]

__all__ = ["Architecture", "ChoiceValue", "normalise_value"]


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
