"""The run fingerprint: what a history's records depend on, stored in the history's header line.

A resumed run must be the same search: same space, strategy, evaluator, objective, data, hardware
and seed. Settings that only extend a search (``strategy.num_samples``, ``strategy.generations``) or
that do not change any record (``data.num_workers``) are left out, so a resume may raise the budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

__all__ = ["FINGERPRINT_GROUPS", "differences", "flatten", "run_fingerprint"]

FINGERPRINT_GROUPS = ("search_space", "strategy", "evaluator", "objective", "data", "hardware", "seed")
_FREE = {"strategy.num_samples", "strategy.generations", "data.num_workers"}


def run_fingerprint(cfg: DictConfig) -> dict[str, Any]:
    """The resolved settings of :data:`FINGERPRINT_GROUPS` in ``cfg`` (JSON-ready)."""
    found: dict[str, Any] = {}
    for group in FINGERPRINT_GROUPS:
        value = cfg.get(group)
        found[group] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    return found


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (an empty mapping stays a value)."""
    if isinstance(value, Mapping) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The dotted keys whose values differ between two fingerprints (sorted; extend-only keys ignored)."""
    old, new = flatten(dict(saved)), flatten(dict(current))
    changed = {key for key in old.keys() | new.keys() if old.get(key, _MISSING) != new.get(key, _MISSING)}
    return sorted(changed - _FREE)


_MISSING = object()
