"""JSON that every reader accepts: non-finite floats (NaN, inf) become ``null``.

Python's ``json`` writes ``NaN`` and ``Infinity`` by default, which is not JSON: ``jq``, browsers and
most other languages refuse the file. Result files (summaries, benchmark figures) go through
:func:`dumps` so that a missing figure reads as ``null`` everywhere.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["dumps", "finite_or_none"]


def finite_or_none(value: Any) -> Any:
    """``value`` with every non-finite float, also inside dicts, lists and tuples, replaced by ``None``.

    Example:
        >>> finite_or_none({"acc": float("nan"), "runs": [1.0, float("inf")], "name": "a"})
        {'acc': None, 'runs': [1.0, None], 'name': 'a'}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(item) for item in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """:func:`json.dumps` of ``value`` with non-finite floats written as ``null`` (strict JSON)."""
    return json.dumps(finite_or_none(value), allow_nan=False, **kwargs)
