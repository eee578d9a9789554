"""``ParetoFrontLogger``: a search listener that tracks the Pareto front and its hypervolume."""

from __future__ import annotations

import csv
import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lightning_nas.callbacks.wandb_logger import WandbSearchLogger, arch_columns
from lightning_nas.objectives.front import describe_objectives, front_objectives, rank_records, score_label
from lightning_nas.objectives.multi import FEASIBLE_FLOOR, MultiObjective
from lightning_nas.objectives.pareto import correlation_matrix, hypervolume, ranks
from lightning_nas.objectives.score import METRIC_ALIASES, metric_key
from lightning_nas.results.history import History, Record
from lightning_nas.results.plots import correlation_plot, pareto3d_plot, pareto_plot, progress_plot
from lightning_nas.results.strict_json import finite_or_none
from lightning_nas.spaces.base import SearchSpace

__all__ = ["ParetoFrontLogger"]

log = logging.getLogger(__name__)

_LABELS = {"search/val_acc": "accuracy", "hw/latency_ms": "latency (ms)", "model/macs": "MACs",
           "model/params": "parameters", "hw/memory_mb": "memory (MB)"}


def _finite_or_none(value: Any) -> Any:
    """``None`` for a blank or a non-finite float (W&B table columns are typed JSON), else the value."""
    return None if value == "" else finite_or_none(value)


def _is_rank_zero() -> bool:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0


class ParetoFrontLogger:
    """Keeps the Pareto front and the hypervolume over time, and writes them out.

    After every candidate it updates the hypervolume series (and logs ``search/hypervolume``,
    ``search/front_size`` to W&B at the candidate's step); every ``every_n`` candidates and at
    the end it writes ``pareto.csv`` and ``pareto.png`` under ``output_dir``; at the end also
    ``pareto3d.png`` (when accuracy, latency and memory were measured), ``progress.png`` and
    ``correlation.png``, and to W&B the candidates table, a front scatter and the front image.

    The hypervolume reference point is fixed when the first feasible candidate arrives, so
    the series never decreases: a metric the objective bounds keeps that bound (its
    ``reference_point``, a constraint, 0 for accuracy); any other is set to twice its worst
    value on the front then (a min metric; a positive max metric gets 0). Set
    ``reference_point`` in the objective for figures comparable across runs. Side effects
    happen on rank zero only; W&B is only written to an existing run (never started here, so
    never a login prompt).

    Args:
        objective: the search's objective; ``None`` means accuracy (max) against ``x_metric`` (min).
        output_dir: folder for the files; ``None`` means the current directory.
        x_metric: the cost on the x axis of ``pareto.png``: ``"latency"``, ``"macs"``, ``"params"``,
            ``"memory"`` or a ``stage/metric`` name.
        wandb_run: ``"auto"`` (the active ``wandb.run``, if any), a :class:`WandbSearchLogger`
            (its run, once started), a W&B run, or ``None`` for no W&B.
        every_n: write ``pareto.csv``/``pareto.png`` every ``every_n`` candidates (0: at the end only).

    Example:
        >>> logger = ParetoFrontLogger(MultiObjective({"accuracy": "max", "latency": "min"}), "out")
        >>> run_search(space, strategy, evaluator, history, score=objective, listeners=[logger])  # doctest: +SKIP
    """

    def __init__(self, objective: MultiObjective | None = None, output_dir: str | None = None,
                 x_metric: str = "latency", wandb_run: Any = "auto", every_n: int = 1) -> None:
        try:
            self.x_key = metric_key(x_metric)
        except ValueError as error:
            raise ValueError(f"x_metric: {error}") from None
        if not isinstance(every_n, int) or isinstance(every_n, bool) or every_n < 0:
            raise ValueError(f"every_n must be an int >= 0, got {every_n!r}")
        if objective is not None and not isinstance(objective, MultiObjective):
            raise ValueError(f"objective must be a MultiObjective or None, got {type(objective).__name__}")
        if isinstance(wandb_run, str) and wandb_run != "auto":
            raise ValueError(f"wandb_run must be 'auto', None, a WandbSearchLogger or a run, got {wandb_run!r}")
        self.objective = objective or MultiObjective({"accuracy": "max", x_metric: "min"})
        self.output_dir = Path(output_dir) if output_dir is not None else Path.cwd()
        self.x_metric, self.wandb_run, self.every_n = x_metric, wandb_run, every_n
        self.hypervolumes: list[float] = []
        self.best_scores: list[float] = []
        self.reference: np.ndarray[Any, np.dtype[np.float64]] | None = None
        self._front: list[Record] = []

    # --- listener hooks -----------------------------------------------------------------------
    def on_search_start(self, space: SearchSpace, history: History) -> None:
        self.hypervolumes, self.best_scores, self.reference, self._front = [], [], None, []
        for record in history:
            self._update(record)

    def on_candidate_end(self, record: Record, history: History) -> None:
        self._update(record)
        if self.every_n and len(self.hypervolumes) % self.every_n == 0:
            self._write_front(history.records)

    def on_search_end(self, history: History) -> None:
        if not _is_rank_zero():
            return
        paths = self.write(history.records)
        self._log_wandb_final(history.records, paths)
        if self._front:
            log.info("Pareto front: %d of %d candidates; hypervolume %.4g; files in %s", len(self._front),
                     len(history), self.hypervolumes[-1] if self.hypervolumes else 0.0, self.output_dir)

    # --- state --------------------------------------------------------------------------------
    def _update(self, record: Record) -> None:
        """Extend the front, the hypervolume and the best-score series with the newest ``record``."""
        self._front = self.objective.front([*self._front, record])  # dominance is transitive
        score = self.objective(record.result)
        best = self.best_scores[-1] if self.best_scores else math.nan
        if score > FEASIBLE_FLOOR and (math.isnan(best) or score > best):
            best = score
        self.best_scores.append(best)
        if self.reference is None and self._front:
            self.reference = self._first_reference(self._front)
        volume = 0.0
        if self.reference is not None and self._front:
            points = np.array([self.objective.vector(r.result) for r in self._front])
            volume = hypervolume(points, self.reference, self.objective.directions)
        self.hypervolumes.append(volume)
        self._log_wandb_step(record.index, volume)

    def _first_reference(self, front: Sequence[Record]) -> np.ndarray[Any, np.dtype[np.float64]]:
        """The objective's fixed reference values; any other metric at twice its worst front value
        (min metrics; 0 for positive max metrics)."""
        reference = self.objective.reference(())
        values = np.array([self.objective.vector(r.result) for r in front])
        for j, direction in enumerate(self.objective.directions):
            if math.isnan(reference[j]):
                worst = float(values[:, j].max() if direction == "min" else values[:, j].min())
                sign = 1.0 if direction == "min" else -1.0
                reference[j] = worst + sign * abs(worst) if worst else sign
        return reference

    @property
    def front(self) -> list[Record]:
        """The feasible non-dominated records seen so far."""
        return list(self._front)

    # --- files --------------------------------------------------------------------------------
    def write(self, records: Sequence[Record]) -> dict[str, Path]:
        """Write every file for ``records``; returns name -> path of what was written."""
        if not _is_rank_zero():
            return {}
        paths = self._write_front(records)
        chosen = self._chosen(records)
        if len(self.hypervolumes) == len(records) and records:
            paths["progress"] = progress_plot(np.arange(1, len(records) + 1), self.best_scores, self.hypervolumes,
                                              self.output_dir / "progress.png", score_label=score_label(self.objective),
                                              chosen=None if chosen is None else chosen + 1)
        table = self._metric_table(records, (metric_key("accuracy"), metric_key("latency"), metric_key("memory")))
        if table is not None:
            feasible = np.array([self.objective.feasible(r.result) for r in records])
            paths["pareto3d"] = pareto3d_plot(table[:, 1], table[:, 2], table[:, 0], self.output_dir / "pareto3d.png",
                                              front=self._on_front(records), feasible=feasible, chosen=chosen,
                                              title=f"Pareto front over {self._named()}")
        names, matrix = correlation_matrix(list(records), self._correlation_names(records))
        if len(names) >= 2 and np.isfinite(matrix).any():
            paths["correlation"] = correlation_plot(names, matrix, self.output_dir / "correlation.png")
        return paths

    def _write_front(self, records: Sequence[Record]) -> dict[str, Path]:
        if not _is_rank_zero() or not records:
            return {}
        paths = {"csv": self._write_csv(records)}
        table = self._metric_table(records, (self.x_key, metric_key("accuracy")))
        if table is not None:
            feasible = np.array([self.objective.feasible(r.result) for r in records])
            two_d = sorted(self.objective.keys) == sorted((self.x_key, metric_key("accuracy")))
            paths["pareto"] = pareto_plot(
                table[:, 0], table[:, 1], self.output_dir / "pareto.png", front=self._on_front(records),
                feasible=feasible, chosen=self._chosen(records), staircase=two_d,
                x_label=_LABELS.get(self.x_key, self.x_key), log_x=self.x_key in ("model/macs", "model/params"),
                title=f"Pareto front over {self._named()}\n(chosen = best score; "
                      f"{'staircase: 2-D front' if two_d else 'front points only: other objectives not drawn'})",
            )
        return paths

    def _named(self) -> str:
        return describe_objectives(front_objectives(self.objective))

    def _on_front(self, records: Sequence[Record]) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """Mask of ``records`` on the front over all the objective's metrics (the one front of the run)."""
        members = {id(r) for r in self.objective.front(records)}
        return np.array([id(r) in members for r in records], dtype=bool)

    def _chosen(self, records: Sequence[Record]) -> int | None:
        """Position in ``records`` of the chosen model (the run's best, :func:`rank_records`)."""
        ranked = rank_records(records, self.objective)
        return next(i for i, r in enumerate(records) if r is ranked[0]) if ranked else None

    @staticmethod
    def _metric_table(records: Sequence[Record], keys: Sequence[str]) -> np.ndarray[Any, np.dtype[np.float64]] | None:
        """``(n, len(keys))`` metric values (NaN where missing), or None when no record has them all."""
        table = np.array([[r.result.metrics.get(k, math.nan) for k in keys] for r in records], dtype=np.float64)
        return table if np.isfinite(table).all(axis=1).any() else None

    def _correlation_names(self, records: Sequence[Record]) -> list[str]:
        names = list(self.objective.names)
        keys = {metric_key(name) for name in names}
        for alias, key in METRIC_ALIASES.items():
            if key not in keys and any(key in r.result.metrics for r in records):
                names.append(alias)
                keys.add(key)
        return names

    def rows(self, records: Sequence[Record]) -> list[dict[str, Any]]:
        """One row per candidate (the columns of ``pareto.csv``)."""
        objective = self.objective
        vectors = np.array([objective.vector(r.result) for r in records]).reshape(len(records), len(objective.names))
        violations = np.array([objective.violation(r.result) for r in records])
        usable = np.flatnonzero(np.isfinite(vectors).all(axis=1) & np.array([r.result.ok for r in records], dtype=bool))
        rank: dict[int, int] = {}
        if usable.size:
            rank = dict(zip(usable.tolist(), ranks(vectors[usable], objective.directions, violations[usable]).tolist(),
                            strict=True))
        on_front = {id(r) for r in objective.front(records)}
        metric_names = sorted({name for r in records for name in r.result.metrics})
        return [
            {"index": r.index, "arch_id": r.arch.digest(), "arch": r.arch.to_json(), "status": r.result.status,
             "feasible": bool(violations[i] == 0.0), "violation": float(violations[i]), "on_front": id(r) in on_front,
             "rank": rank.get(i, ""), "score": objective(r.result),
             "hypervolume": self.hypervolumes[i] if i < len(self.hypervolumes) else "",
             **{name: r.result.metrics.get(name, "") for name in metric_names}}
            for i, r in enumerate(records)
        ]

    def _write_csv(self, records: Sequence[Record]) -> Path:
        rows = self.rows(records)
        path = self.output_dir / "pareto.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return path

    # --- W&B ----------------------------------------------------------------------------------
    def _run(self) -> Any:
        if self.wandb_run is None or not _is_rank_zero():
            return None
        if isinstance(self.wandb_run, str):  # "auto": only a run somebody already started
            wandb = sys.modules.get("wandb")
            return getattr(wandb, "run", None) if wandb is not None else None
        if isinstance(self.wandb_run, WandbSearchLogger):
            return self.wandb_run.run
        return self.wandb_run

    def _log_wandb_step(self, step: int, volume: float) -> None:
        run = self._run()
        if run is not None:
            run.log({"search/hypervolume": volume, "search/front_size": len(self._front)}, step=step)

    def _log_wandb_final(self, records: Sequence[Record], paths: dict[str, Path]) -> None:
        run = self._run()
        if run is None or not records:
            return
        import wandb

        labels = list(dict.fromkeys(label for r in records for label in r.arch))
        rows = [{**{k: v for k, v in row.items() if k != "arch"}, **dict.fromkeys((f"arch/{x}" for x in labels), ""),
                 **arch_columns(r.arch)} for row, r in zip(self.rows(records), records, strict=True)]
        columns = list(rows[0])
        data = [[_finite_or_none(row[c]) for c in columns] for row in rows]
        payload: dict[str, Any] = {"search/pareto": wandb.Table(columns=list[str | int](columns), data=data)}
        x_name, acc = self.x_key, metric_key("accuracy")
        points = [[row[x_name], row[acc], row["on_front"]] for row in rows
                  if isinstance(row.get(x_name), float) and isinstance(row.get(acc), float)]
        if points:
            label = _LABELS.get(x_name, x_name)
            scatter = wandb.Table(columns=[label, "accuracy", "on_front"], data=points)
            payload["search/pareto_scatter"] = wandb.plot.scatter(scatter, label, "accuracy", title="Pareto front")
        for name in ("pareto", "pareto3d", "progress", "correlation"):
            if name in paths:
                payload[f"search/{name}"] = wandb.Image(str(paths[name]))
        run.log(payload)
        if self.hypervolumes:
            run.summary["search/hypervolume"] = self.hypervolumes[-1]
            run.summary["search/front_size"] = len(self._front)
