"""The :class:`Evaluator` interface (what a candidate scores) and its result record."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

from lightning_nas.arch import Architecture
from lightning_nas.spaces.base import SearchSpace

__all__ = ["EvalResult", "Evaluator", "EvaluatorConfigError", "Status"]

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


class EvaluatorConfigError(Exception):
    """A configuration error found while evaluating (e.g. a table that does not cover the space).

    Unlike a bad candidate, it stops the search: the search loop re-raises it and the app reports
    its one-line message.
    """


class Evaluator(ABC):
    """Scores candidates of a :class:`SearchSpace`. Must never raise for a bad candidate:
    return ``EvalResult.failed(...)`` instead, so the search goes on."""

    @abstractmethod
    def evaluate(self, space: SearchSpace, arch: Architecture) -> EvalResult:
        """Score ``arch`` on validation data (the search never sees the test split)."""

    def test(self, space: SearchSpace, arch: Architecture) -> dict[str, float]:
        """Final report on the test split for the chosen architecture (used once, at the end)."""
        raise NotImplementedError(f"{type(self).__name__} has no test-split report")
