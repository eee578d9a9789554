"""Case-study search listeners that write a report at search end.

* :class:`RobustnessReport`: ``robustness.png`` / ``robustness.csv`` when candidates carry ``robust/*`` metrics.
* :class:`TransferReport`: ``transfer.png``, a warm-started run against a from-scratch run (or the source's best).
* :class:`EfficiencyReport`: ``efficiency.png`` / ``efficiency.csv``, accuracy per parameter, per MMAC, memory.

Each writes nothing when the metrics it needs are absent, and only on rank zero.

Example:
    >>> listeners = [RobustnessReport("out"), EfficiencyReport("out", max_params=5e6)]
    >>> run_search(space, strategy, evaluator, history, listeners=listeners)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning_nas.objectives.constraints import Constraint
from lightning_nas.objectives.front import rank_records
from lightning_nas.objectives.score import ScoreFn, default_score
from lightning_nas.results.history import History, Record
from lightning_nas.results.robustness_plots import (
    CLEAN,
    efficiency_plot,
    robust_keys,
    robustness_plot,
    transfer_reference_plot,
)
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies.transfer import load_source_run, transfer_plot

__all__ = ["EFFICIENCY_COLUMNS", "EfficiencyReport", "RobustnessReport", "TransferReport", "efficiency_rows"]

log = logging.getLogger(__name__)

EFFICIENCY_COLUMNS = ("index", "arch_id", "val_acc", "params", "macs", "latency_ms", "memory_mb",
                      "acc_per_100k_params", "acc_per_mmac", "violates")
"""The columns of ``efficiency.csv``."""


def _is_rank_zero() -> bool:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _value(record: Record, key: str) -> float:
    value = record.result.metrics.get(key, math.nan)
    return float(value) if value is not None else math.nan


def _cell(value: float) -> float | str:
    """A CSV cell: the value, or blank when missing or non-finite."""
    return value if math.isfinite(value) else ""


class _Report:
    """Listener base: nothing happens before the end; ``write`` does the work there."""

    def __init__(self, output_dir: str | Path | None = None) -> None:
        self.output_dir = Path(output_dir) if output_dir is not None else Path.cwd()

    def on_search_start(self, space: SearchSpace, history: History) -> None:
        """Nothing to do: the report is written at search end."""

    def on_candidate_end(self, record: Record, history: History) -> None:
        """Nothing to do: the report is written at search end."""

    def on_search_end(self, history: History) -> None:
        if _is_rank_zero():
            paths = self.write(history.records)
            if paths:
                log.info("%s wrote %s", type(self).__name__, ", ".join(str(p) for p in paths.values()))

    def write(self, records: Sequence[Record]) -> dict[str, Path]:
        raise NotImplementedError


class RobustnessReport(_Report):
    """Writes ``robustness.png`` (see :func:`robustness_plot`) and ``robustness.csv`` (one row per
    candidate with a ``robust/*`` metric, every robust metric as a column) at search end.

    Args:
        output_dir: folder for the files (``None``: the current directory).
        top_k: candidates shown in the bar panel, best clean accuracy first.
    """

    def __init__(self, output_dir: str | Path | None = None, top_k: int = 8) -> None:
        super().__init__(output_dir)
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be an int >= 1, got {top_k!r}")
        self.top_k = top_k

    def write(self, records: Sequence[Record]) -> dict[str, Path]:
        """Write both files when any record has ``robust/*`` metrics; returns name -> path written."""
        robust = [r for r in records if any(k.startswith("robust/") for k in r.result.metrics)]
        if not robust:
            return {}
        keys = robust_keys(robust)
        rows = [{"index": r.index, "arch_id": r.arch.digest(), "status": r.result.status,
                 **{k: _cell(_value(r, k)) for k in keys}} for r in robust]
        paths = {"csv": _write_csv(self.output_dir / "robustness.csv", ["index", "arch_id", "status", *keys], rows)}
        if any(r.result.ok and math.isfinite(_value(r, CLEAN)) for r in robust):
            paths["png"] = robustness_plot(robust, self.output_dir / "robustness.png", self.top_k)
        return paths


class TransferReport(_Report):
    """Writes ``transfer.png`` at search end: best-so-far score against evaluations for this
    (warm-started) run.

    With ``scratch`` (an earlier from-scratch run's folder or ``history.jsonl`` on the same task)
    both curves are drawn by :func:`~lightning_nas.strategies.transfer.transfer_plot`. Without it
    this run is drawn alone with the ``source`` run's best score as a dashed line, and the title
    says there is no baseline: the randomly sampled part of this run is not one (it shares the
    search with the seeds). Nothing is written when neither run is given or this run has no success.
    The accuracy predictor's held-out fit (``predictor_fit``) goes into the title and ``transfer.json``.

    Args:
        output_dir: folder for the file (``None``: the current directory).
        source: the source run of the warm start (folder or ``history.jsonl``), or ``None``.
        scratch: a from-scratch run to compare with, or ``None``.
        score: the score plotted (default: validation accuracy).
        predictor_fit: called at search end for the predictor's fit quality
            (:attr:`~lightning_nas.strategies.transfer.WarmStartEvolution.predictor_fit`), or ``None``.
    """

    def __init__(self, output_dir: str | Path | None = None, source: str | None = None,
                 scratch: str | None = None, score: ScoreFn = default_score,
                 predictor_fit: Callable[[], Mapping[str, Any] | None] | None = None) -> None:
        super().__init__(output_dir)
        self.source, self.scratch, self.score, self.predictor_fit = source, scratch, score, predictor_fit

    def _records(self, path: str | None, role: str) -> list[Record] | None:
        if path is None:
            return None
        try:
            return load_source_run(path, self.score)[1]
        except (OSError, ValueError) as error:
            log.warning("transfer report: cannot read the %s run %s: %s", role, path, error)
            return None

    def write(self, records: Sequence[Record]) -> dict[str, Path]:
        """Write ``transfer.png`` when possible, and ``transfer.json`` (the runs and the predictor's fit
        quality) with it or when the predictor was fitted; returns name -> path written."""
        if not any(math.isfinite(self.score(r.result)) for r in records if r.result.ok):
            return {}
        fit = dict(self.predictor_fit() or {}) if self.predictor_fit is not None else {}
        note = (f"\npredictor: Spearman {fit['spearman']:.2f} ({fit['method']}, n={fit['n']}), "
                f"screen x{fit['screen_factor']}" if fit else "")
        paths = self._plot(records, note)
        if paths or fit:
            clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in fit.items()}
            payload = {"source": self.source, "scratch": self.scratch, "predictor": clean or None}
            self.output_dir.mkdir(parents=True, exist_ok=True)
            paths["json"] = self.output_dir / "transfer.json"
            paths["json"].write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        return paths

    def _plot(self, records: Sequence[Record], note: str) -> dict[str, Path]:
        path = self.output_dir / "transfer.png"
        scratch = self._records(self.scratch, "from-scratch")
        if scratch is not None:
            return {"png": transfer_plot(scratch, list(records), path, self.score,
                                         title="Warm start vs from scratch" + note)}
        source = self._records(self.source, "source")
        if source is None:
            return {}
        scores = [self.score(r.result) for r in source if r.result.ok]
        best = max((s for s in scores if math.isfinite(s)), default=None)
        return {"png": transfer_reference_plot(records, path, best, self.score, title=(
            "Warm start vs source run's best (no from-scratch baseline)" + note))}


def efficiency_rows(records: Sequence[Record], max_params: float | None = None,
                    max_latency_ms: float | None = None,
                    constraints: Sequence[Constraint] = ()) -> list[dict[str, Any]]:
    """One row per successful candidate with ``search/val_acc`` and ``model/params`` (columns
    :data:`EFFICIENCY_COLUMNS`; blanks where a metric is missing). ``violates``: over a budget or
    violating any of ``constraints`` (e.g. ``min_accuracy``)."""
    rows = []
    for r in records:
        acc, params = _value(r, "search/val_acc"), _value(r, "model/params")
        if not (r.result.ok and math.isfinite(acc) and math.isfinite(params) and params > 0):
            continue
        macs, latency = _value(r, "model/macs"), _value(r, "hw/latency_ms")
        violates = (max_params is not None and params > max_params) or (
            max_latency_ms is not None and math.isfinite(latency) and latency > max_latency_ms) or any(
            c.violation(r.result.metrics) > 0 for c in constraints)
        rows.append({"index": r.index, "arch_id": r.arch.digest(), "val_acc": acc, "params": params,
                     "macs": _cell(macs), "latency_ms": _cell(latency), "memory_mb": _cell(_value(r, "hw/memory_mb")),
                     "acc_per_100k_params": acc / (params / 1e5),
                     "acc_per_mmac": _cell(acc / (macs / 1e6)) if macs > 0 else "", "violates": bool(violates)})
    return rows


class EfficiencyReport(_Report):
    """Writes ``efficiency.csv`` (:func:`efficiency_rows`) and ``efficiency.png`` (see
    :func:`~lightning_nas.results.robustness_plots.efficiency_plot`) at search end, for the
    efficient-convnet case study: accuracy per 100K parameters, per MMAC, activation memory.

    Args:
        output_dir: folder for the files (``None``: the current directory).
        max_params: parameter budget; candidates above it are marked (``None``: no budget).
        max_latency_ms: latency budget in ms; candidates above it are marked (``None``: no budget).
        constraints: the objective's constraints; a candidate violating any is marked infeasible.
        score: the search's score; the chosen model (:func:`rank_records`' first) is marked.
    """

    def __init__(self, output_dir: str | Path | None = None, max_params: float | None = None,
                 max_latency_ms: float | None = None, constraints: Sequence[Constraint] = (),
                 score: ScoreFn = default_score) -> None:
        super().__init__(output_dir)
        for name, bound in (("max_params", max_params), ("max_latency_ms", max_latency_ms)):
            if bound is not None and not (isinstance(bound, int | float) and bound > 0):
                raise ValueError(f"{name} must be a positive number or None, got {bound!r}")
        self.max_params, self.max_latency_ms = max_params, max_latency_ms
        self.constraints, self.score = list(constraints), score

    def write(self, records: Sequence[Record]) -> dict[str, Path]:
        """Write both files when a candidate has accuracy and parameters; returns name -> path written."""
        rows = efficiency_rows(records, self.max_params, self.max_latency_ms, self.constraints)
        if not rows:
            return {}
        paths = {"csv": _write_csv(self.output_dir / "efficiency.csv", EFFICIENCY_COLUMNS, rows)}

        def column(name: str) -> list[float]:
            return [math.nan if row[name] == "" else float(row[name]) for row in rows]

        paths["png"] = efficiency_plot(column("val_acc"), column("params"), column("memory_mb"),
                                       column("acc_per_100k_params"), self.output_dir / "efficiency.png",
                                       violates=[row["violates"] for row in rows],
                                       labels=[f"#{row['index']}" for row in rows], chosen=self._chosen(records, rows))
        return paths

    def _chosen(self, records: Sequence[Record], rows: Sequence[dict[str, Any]]) -> int | None:
        """The row of the run's chosen model (the best by :func:`rank_records`), if it has one."""
        ranked = rank_records(records, self.score)
        positions = {row["index"]: i for i, row in enumerate(rows)}
        return positions.get(ranked[0].index) if ranked else None
