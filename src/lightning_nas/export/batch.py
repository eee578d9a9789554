"""Export many architectures of a search space, recording every failure instead of raising."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lightning_nas.arch import Architecture
from lightning_nas.export.exporter import ExportError, ExportReport, export_model
from lightning_nas.spaces.base import SearchSpace

__all__ = ["ExportOutcome", "export_many"]

log = logging.getLogger(__name__)

_CALIBRATION_SAMPLES = 16


@dataclass(frozen=True)
class ExportOutcome:
    """The result of exporting one architecture.

    ``stage`` is ``"build"`` when the architecture was invalid or the network could not be
    built, an :data:`~lightning_nas.export.exporter.STAGES` entry when the export failed,
    ``"unknown"`` for anything else, and ``None`` on success.
    """

    arch_id: str
    arch: dict[str, Any]
    ok: bool
    report: ExportReport | None = None
    stage: str | None = None
    reason: str | None = None


def _identify(index: int, arch: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(digest, JSON-ready dict)`` of ``arch``; a positional id when it is not even a valid mapping."""
    try:
        parsed = Architecture(arch)
        return parsed.digest(), parsed.to_dict()
    except Exception:
        return f"arch-{index}", {"repr": repr(arch)}


class _BuildError(Exception):
    """The architecture is invalid or its network could not be built."""


def _export_one(space: SearchSpace, arch: Mapping[str, Any], path: Path, quantize: bool) -> ExportReport:
    """Build and export one architecture; ``ExportError`` names the stage that failed."""
    try:
        model = space.build(arch)
    except Exception as exc:
        raise _BuildError(f"{type(exc).__name__}: {exc}") from exc
    generator = torch.Generator().manual_seed(0)  # never touches the global RNG
    example = torch.randn((1, *space.input_shape), generator=generator)
    calibration = [torch.randn((_CALIBRATION_SAMPLES, *space.input_shape), generator=generator)] if quantize else None
    return export_model(model, example, path, quantize=quantize, calibration=calibration)


def export_many(
    space: SearchSpace, archs: Iterable[Mapping[str, Any]], out_dir: str | Path, *, quantize: bool = False
) -> list[ExportOutcome]:
    """Export every architecture to ``out_dir/<arch digest>.pte``; never raises for one architecture.

    Args:
        space: the search space that builds each architecture.
        archs: architectures (mappings label -> choice).
        out_dir: folder for the ``.pte`` files (created).
        quantize: int8 PT2E quantization, calibrated on 16 seeded Gaussian inputs (for real data,
            call :func:`~lightning_nas.export.exporter.export_model` with ``calibration``).

    Returns:
        One :class:`ExportOutcome` per architecture, in order; failures carry the architecture
        id, the stage and the reason.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for index, arch in enumerate(archs):
        arch_id, arch_dict = _identify(index, arch)
        try:
            report = _export_one(space, arch, out / f"{arch_id}.pte", quantize)
            outcome = ExportOutcome(arch_id, arch_dict, ok=True, report=report)
        except _BuildError as exc:
            outcome = ExportOutcome(arch_id, arch_dict, ok=False, stage="build", reason=str(exc))
        except ExportError as exc:
            outcome = ExportOutcome(arch_id, arch_dict, ok=False, stage=exc.stage, reason=exc.reason)
        except Exception as exc:  # anything unforeseen is recorded, never raised
            reason = f"{type(exc).__name__}: {exc}"
            outcome = ExportOutcome(arch_id, arch_dict, ok=False, stage="unknown", reason=reason)
        if not outcome.ok:
            log.warning("export of %s failed at %s: %s", arch_id, outcome.stage, outcome.reason)
        outcomes.append(outcome)
    return outcomes
