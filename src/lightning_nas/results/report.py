"""Terminal summary of a search: the top candidates and the best architecture."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from lightning_nas.objectives.constraints import Constraint
from lightning_nas.objectives.front import describe_objectives, front_objectives, rank_records, score_label
from lightning_nas.objectives.score import ScoreFn
from lightning_nas.results.history import History, Record
from lightning_nas.spaces.base import SearchSpace

__all__ = ["constraint_report", "format_constraints", "format_metric", "summary_table", "top_records"]

_COLUMNS: tuple[tuple[str, str], ...] = (
    ("val_acc", "search/val_acc"),
    ("params", "model/params"),
    ("MACs", "model/macs"),
    ("latency_ms", "hw/latency_ms"),
    ("memory_MB", "hw/memory_mb"),
)


def top_records(history: History, score: ScoreFn, k: int) -> list[Record]:
    """The ``k`` best successful records, best first (the order of :func:`rank_records`)."""
    return rank_records(history, score)[:k]


def format_metric(name: str, value: float | None) -> str:
    """Human units: 1.23M params, 4.5M MACs, 4 decimals for accuracies; 2 for ms and MB from 1 up and three
    significant digits below (an XNNPACK program's 0.0402 ms, its planned 0.00351 MB)."""
    if value is None or not math.isfinite(value):
        return "-"
    if name in ("model/params", "model/macs"):
        return f"{value / 1e6:.2f}M" if value >= 1e5 else f"{value / 1e3:.1f}K"
    if "acc" in name:
        return f"{value:.4f}"
    return f"{value:.2f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"


def _render(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    return [line, "-" * len(line)] + ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]


def _rows(records: Sequence[Record], score: ScoreFn | None) -> list[list[str]]:
    return [[str(rank), str(r.index), r.arch.digest(),
             *([f"{score(r.result):.4g}"] if score is not None else []),
             *(format_metric(key, r.result.metrics.get(key)) for _, key in _COLUMNS)]
            for rank, r in enumerate(records, start=1)]


def summary_table(top: Sequence[Record], space: SearchSpace, best: Record, test: dict[str, float],
                  output_dir: Path, front: Sequence[Record] = (), test_source: str = "retrained from scratch",
                  score: ScoreFn | None = None, objective: object = None) -> str:
    """The block printed at the end of a run.

    Args:
        top: the ranked records (:func:`top_records`), best first.
        space: the search space (describes the best architecture).
        best: the chosen record.
        test: the final training's metrics.
        output_dir: the run folder (its files are listed).
        front: the Pareto front (:func:`~lightning_nas.objectives.front.front_records`).
        test_source: where the test accuracy comes from (e.g. ``"retrained from scratch"``).
        score: the search's score, shown as a column when given.
        objective: what the front is over (named in its title); default: ``score``.
    """
    objective = score if objective is None else objective
    label = score_label(score) if score is not None else "score"
    header = ["rank", "#", "arch_id", *(["score"] if score is not None else []), *(t for t, _ in _COLUMNS)]
    order = (f"ordered by score ({label}), best first; equal scores: dominating first, then fewer params, "
             "lower latency")
    lines = ["", f"Top {len(top)} architectures, {order}", *_render(header, _rows(top, score)), ""]
    if front:
        named = describe_objectives(front_objectives(objective))
        lines += [f"Pareto front: {len(front)} architectures over {named} (feasible, non-dominated)",
                  *_render(header, _rows(front, score)), ""]
    lines.append(f"Best architecture (#{best.index}, {best.arch.digest()}): {space.describe(best.arch)}")
    metrics = best.result.metrics
    lines.append("  " + ", ".join(f"{title} {format_metric(key, metrics.get(key))}" for title, key in _COLUMNS))
    if test:
        lines.append(f"  {test_source}: test accuracy {format_metric('test/acc', test.get('test/acc'))}")
    files = [output_dir / "history.jsonl", output_dir / "best" / "arch.json", output_dir / "summary.json"]
    if (output_dir / "best" / "model.pt").is_file():
        files.insert(2, output_dir / "best" / "model.pt")
    lines.append("Files: " + ", ".join(map(str, files)))
    return "\n".join(lines)


def constraint_report(records: Iterable[Record], constraints: Sequence[Constraint], best: Record | None = None
                      ) -> dict[str, Any]:
    """How the successful ``records`` fare against ``constraints`` (``{}`` when there are none).

    Returns:
        ``constraints`` (as text), ``evaluated`` and ``violating`` counts of successful candidates,
        ``by_constraint`` (violations per constraint) and ``best_feasible`` (when ``best`` is given).
    """
    if not constraints:
        return {}
    done = [r for r in records if r.result.ok]
    by_constraint = {str(c): sum(c.violation(r.result.metrics) > 0 for r in done) for c in constraints}
    violating = sum(any(c.violation(r.result.metrics) > 0 for c in constraints) for r in done)
    report: dict[str, Any] = {"constraints": [str(c) for c in constraints], "evaluated": len(done),
                              "violating": violating, "by_constraint": by_constraint}
    if best is not None:
        report["best_feasible"] = all(c.is_satisfied(best.result.metrics) for c in constraints)
    return report


def format_constraints(report: dict[str, Any]) -> str:
    """One line for the terminal from :func:`constraint_report` (``""`` when empty)."""
    if not report:
        return ""
    each = ", ".join(f"{name}: {count}" for name, count in report["by_constraint"].items())
    line = f"Constraints: {report['violating']} of {report['evaluated']} candidates violate ({each})"
    if "best_feasible" in report:
        line += "; the best " + ("meets them all" if report["best_feasible"] else "violates them (none meets all)")
    return line
