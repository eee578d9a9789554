"""Eager checks of constructor arguments: each error names the ``data.<argument>`` and its value."""

from __future__ import annotations

import math
from os import PathLike

__all__ = [
    "check_bool",
    "check_choice",
    "check_fraction",
    "check_non_negative_int",
    "check_optional_path",
    "check_optional_positive_int",
    "check_path",
    "check_positive_int",
    "check_stats",
]


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an int >= 1, else raise ``ValueError`` naming ``data.<name>``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"data.{name} must be a positive integer, got {value!r}")
    return value


def check_non_negative_int(name: str, value: object) -> int:
    """Return ``value`` if it is an int >= 0, else raise ``ValueError`` naming ``data.<name>``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"data.{name} must be a non-negative integer, got {value!r}")
    return value


def check_optional_positive_int(name: str, value: object) -> int | None:
    """Return ``value`` if it is ``None`` or an int >= 1, else raise ``ValueError``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"data.{name} must be a positive integer or None, got {value!r}")
    return value


def check_fraction(name: str, value: object) -> float:
    """Return ``value`` as a float if it lies strictly between 0 and 1, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value < 1.0:
        raise ValueError(f"data.{name} must be a number strictly between 0 and 1, got {value!r}")
    return float(value)


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` if it is a bool, else raise ``ValueError`` naming ``data.<name>``."""
    if not isinstance(value, bool):
        raise ValueError(f"data.{name} must be true or false, got {value!r}")
    return value


def check_path(name: str, value: object) -> str:
    """Return ``value`` as a string path, else raise ``ValueError`` naming ``data.<name>``."""
    if not isinstance(value, str | PathLike) or not str(value):
        raise ValueError(f"data.{name} must be a non-empty path, got {value!r}")
    return str(value)


def check_optional_path(name: str, value: object) -> str | None:
    """Return ``value`` as a string path (or ``None``), else raise ``ValueError``."""
    if value is None:
        return None
    if not isinstance(value, str | PathLike) or not str(value):
        raise ValueError(f"data.{name} must be a non-empty path or None, got {value!r}")
    return str(value)


def check_stats(name: str, value: object, channels: int) -> tuple[float, ...] | None:
    """Return per-channel statistics as a tuple of ``channels`` floats (or ``None``)."""
    if value is None:
        return None
    try:
        stats = tuple(float(v) for v in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        stats = ()
    if len(stats) != channels or not all(math.isfinite(s) for s in stats):
        raise ValueError(f"data.{name} must be a list of {channels} finite numbers or None, got {value!r}")
    if name == "std" and min(stats) <= 0:
        raise ValueError(f"data.std must be positive, got {value!r}")
    return stats


def check_choice(name: str, value: object, choices: tuple[object, ...]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices`` (bools never match ints)."""
    if isinstance(value, bool) or value not in choices:
        raise ValueError(f"data.{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
