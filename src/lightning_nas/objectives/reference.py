"""Constraint bounds relative to a hand-designed network: ``max_latency: 0.95x two_conv_cnn``.

A ``max_*`` bound may name a network of :data:`~lightning_nas.baselines.BASELINES`, optionally
scaled (``"two_conv_cnn"``, ``"0.95x two_conv_cnn"``). The app measures that network the way it
measures a candidate (same hardware target) before the search, and the bound becomes the
scaled figure: "no slower than the 2-conv CNN on this device" without typing a number that
another machine would make wrong.

Example:
    >>> parse_reference("0.95x two_conv_cnn")
    (0.95, 'two_conv_cnn')
    >>> parse_reference("5M") is None
    True
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping

from lightning_nas.objectives.constraints import CONSTRAINT_KEYS
from lightning_nas.objectives.score import metric_key

__all__ = ["parse_reference", "resolve_reference_bounds"]

log = logging.getLogger(__name__)

_REFERENCE = re.compile(r"^\s*(?:(\d+\.?\d*|\.\d+)\s*[x*]\s*)?([A-Za-z_][A-Za-z0-9_]*)\s*$")


def parse_reference(raw: object) -> tuple[float, str] | None:
    """``(factor, network name)`` when ``raw`` is a bound naming a network, else ``None``."""
    if not isinstance(raw, str) or (match := _REFERENCE.match(raw)) is None:
        return None
    return float(match.group(1) or 1.0), match.group(2)


def resolve_reference_bounds(
    constraints: Mapping[str, object] | None,
    measure: Callable[[str], Mapping[str, float]],
    known: Mapping[str, object],
) -> dict[str, object]:
    """``constraints`` with each bound that names a network replaced by its scaled measured figure.

    Args:
        constraints: constraint key -> bound, as configured.
        measure: network name -> its metrics (``model/params``, ``hw/latency_ms``, ...), measured
            like a candidate's; called once per named network.
        known: the networks a bound may name.

    Raises:
        ValueError: naming ``objective.constraints.<key>`` for a reference on a ``min_*`` key, an
            unknown network, a non-positive factor, or a metric the measurement lacks.
    """
    resolved: dict[str, object] = dict(constraints or {})
    figures: dict[str, Mapping[str, float]] = {}
    for key, raw in resolved.items():
        reference = parse_reference(raw)
        if reference is None or key not in CONSTRAINT_KEYS:
            continue  # a quantity, or an unknown key that parse_constraints reports
        factor, name = reference
        where = f"objective.constraints.{key}"
        alias, kind, _units = CONSTRAINT_KEYS[key]
        if kind != "max":
            raise ValueError(f"{where}: only max_* bounds may name a network, got {raw!r}")
        if name not in known:
            raise ValueError(f"{where}: {raw!r} is neither a quantity nor a known network ({', '.join(sorted(known))})")
        if factor <= 0:
            raise ValueError(f"{where}: the factor in {raw!r} must be above 0")
        if name not in figures:
            figures[name] = measure(name)
        value = figures[name].get(metric_key(alias))
        if value is None or not math.isfinite(value):
            raise ValueError(f"{where}: measuring {name} gave no {metric_key(alias)}")
        resolved[key] = factor * float(value)
        log.info("%s: %s -> %.6g (%s's %s is %.6g)", where, raw, resolved[key], name, metric_key(alias), value)
    return resolved
