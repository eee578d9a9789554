"""Compare strategies across a Hydra multirun: ``python -m lightning_nas.report <multirun folder>``.

Every run folder under the multirun folder (one holding ``summary.json``, beside ``config.yaml``
and ``history.jsonl``, as :func:`lightning_nas.run.run` writes them) is grouped by strategy: the
Hydra choice (``.hydra/hydra.yaml``) when present, else the class name of ``strategy._target_``.
Per strategy: mean and std over runs of best validation accuracy, test accuracy, evaluations and
wall time, printed as a table and written to ``report.csv``; ``report.png`` plots best-so-far
validation accuracy against evaluations and against wall time: every run as a thin line, and the
mean +- std per strategy only where every run of it has a value (before the shortest run ends),
so runs of different lengths never average into a falling curve. Jobs of the sweep that failed
(a job folder without ``summary.json``) or never ran (from ``multirun.yaml``'s sweep) are listed.

Example:
    >>> runs = load_runs("multirun/default/2026-01-01_00-00-00")  # doctest: +SKIP
    >>> rows = summarize(runs)  # doctest: +SKIP
    >>> print(format_table(rows))  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from numpy.typing import NDArray
from omegaconf import ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

__all__ = ["COLUMNS", "JobStatus", "RunResult", "format_jobs", "format_table", "job_statuses", "load_runs",
           "plot_report", "summarize", "write_report"]

log = logging.getLogger(__name__)

#: report column -> description
COLUMNS: dict[str, str] = {
    "best_val_acc": "best search/val_acc",
    "test_acc": "test/acc of the retrained best",
    "evaluations": "candidates evaluated",
    "wall_s": "total wall time (s)",
}


@dataclass(frozen=True)
class RunResult:
    """One run of the multirun: its strategy, summary values and best-so-far curve."""

    folder: Path
    strategy: str
    values: dict[str, float]
    best_so_far: NDArray[np.float64]  # per evaluation, NaN until the first success
    elapsed_s: NDArray[np.float64]  # seconds from the search start to each evaluation's end


def _strategy_name(folder: Path, config: dict[str, Any]) -> str:
    hydra_file = folder / ".hydra" / "hydra.yaml"
    if hydra_file.exists():
        choice = OmegaConf.select(OmegaConf.load(hydra_file), "hydra.runtime.choices.strategy")
        if choice:
            return str(choice)
    target = str((config.get("strategy") or {}).get("_target_", "unknown"))
    return target.rsplit(".", 1)[-1]


def _read_history(path: Path) -> list[dict[str, Any]]:
    """The history's records, read-only (a torn last line is skipped, never truncated)."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if line.endswith("\n"):
            records.append(json.loads(line))
    return records[1:] if records and _is_header(records[0]) else records


def _is_header(line: Any) -> bool:
    """The history's first line when it is the fingerprint header (as ``results.history.is_header``, not imported
    here: ``results.history`` pulls in the evaluators, which this report module does without)."""
    return isinstance(line, dict) and str(line.get("format", "")).startswith("lightning_nas.history/") \
        and "index" not in line


def _curves(records: list[dict[str, Any]]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    values = np.array([
        (r.get("metrics") or {}).get("search/val_acc") if r.get("status") == "ok" else None for r in records
    ], dtype=np.float64)
    values = np.where(np.isfinite(values), values, -np.inf)
    best = np.maximum.accumulate(values) if len(values) else values
    best = np.where(np.isfinite(best), best, np.nan)
    if not records:
        return best, np.zeros(0)
    stamps = np.array([float(r.get("timestamp", 0.0)) for r in records])
    start = stamps[0] - float(records[0].get("duration_s", 0.0))
    return best, stamps - start


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan


def _load_run(folder: Path) -> RunResult:
    summary = json.loads((folder / "summary.json").read_text())
    if not isinstance(summary, dict):
        raise ValueError(f"{folder / 'summary.json'} is not a run summary (a JSON object)")
    config_file = folder / "config.yaml"
    try:
        loaded = OmegaConf.to_container(OmegaConf.load(config_file)) if config_file.exists() else {}
    except (OmegaConfBaseException, yaml.YAMLError) as error:
        raise ValueError(f"{config_file} is not a readable config ({type(error).__name__})") from error
    config = {str(k): v for k, v in loaded.items()} if isinstance(loaded, dict) else {}
    best_so_far, elapsed = _curves(_read_history(folder / "history.jsonl"))
    values = {
        "best_val_acc": _number(((summary.get("best") or {}).get("metrics") or {}).get("search/val_acc")),
        "test_acc": _number((summary.get("test") or {}).get("test/acc")),
        "evaluations": _number(summary.get("evaluations")),
        "wall_s": _number(summary.get("total_seconds")),
    }
    return RunResult(folder, _strategy_name(folder, config), values, best_so_far, elapsed)


_UNREADABLE = (ValueError, KeyError, OSError, AttributeError, TypeError, yaml.YAMLError, OmegaConfBaseException)


def load_runs(root: str | Path) -> list[RunResult]:
    """Every run folder (holding ``summary.json``) under ``root``, in path order.

    Args:
        root: a multirun folder (or a single run folder).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    runs, skipped = [], []
    for summary in sorted(root.rglob("summary.json")):
        try:
            runs.append(_load_run(summary.parent))
        except _UNREADABLE as error:
            log.warning("skipping %s: %s", summary.parent, error)
            skipped.append(str(error))
    if not runs:
        why = f"; {len(skipped)} skipped, e.g. {skipped[0]}" if skipped else ""
        raise FileNotFoundError(f"no readable run folder (with summary.json) under {root}{why}")
    return runs


def _group(runs: Sequence[RunResult]) -> dict[str, list[RunResult]]:
    groups: dict[str, list[RunResult]] = defaultdict(list)
    for run in runs:
        groups[run.strategy].append(run)
    return dict(sorted(groups.items()))


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    finite = np.array([v for v in values if math.isfinite(v)], dtype=np.float64)
    if not len(finite):
        return math.nan, math.nan
    return float(finite.mean()), float(finite.std(ddof=1)) if len(finite) > 1 else 0.0


def summarize(runs: Sequence[RunResult]) -> list[dict[str, Any]]:
    """One row per strategy: ``strategy``, ``runs`` and ``<column>_mean`` / ``<column>_std`` per column."""
    rows = []
    for strategy, group in _group(runs).items():
        row: dict[str, Any] = {"strategy": strategy, "runs": len(group)}
        for column in COLUMNS:
            row[f"{column}_mean"], row[f"{column}_std"] = _mean_std([r.values[column] for r in group])
        rows.append(row)
    return rows


def _cell(mean: float, std: float, column: str) -> str:
    if not math.isfinite(mean):
        return "-"
    digits = 4 if column.endswith("acc") else 1
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as an aligned text table (mean ± std per column)."""
    header = ["strategy", "runs", *COLUMNS]
    body = [[str(r["strategy"]), str(r["runs"]), *(_cell(r[f"{c}_mean"], r[f"{c}_std"], c) for c in COLUMNS)]
            for r in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
             for line in [header, *body]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def _common(curves: Sequence[NDArray[np.float64]]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Mean and std over ``curves`` (equal length) where every curve has a value; NaN elsewhere."""
    stack = np.array(curves, dtype=np.float64)
    everywhere = np.isfinite(stack).all(axis=0)
    mean = np.where(everywhere, stack.mean(axis=0), np.nan)
    std = np.where(everywhere, stack.std(axis=0, ddof=1) if len(curves) > 1 else 0.0, np.nan)
    return mean, std


def _on_grid(run: RunResult, grid: NDArray[np.float64]) -> NDArray[np.float64]:
    """Best-so-far at each time of ``grid`` (NaN before the first evaluation ends)."""
    positions = np.searchsorted(run.elapsed_s, grid, side="right") - 1
    return np.where(positions >= 0, run.best_so_far[np.clip(positions, 0, None)], np.nan)


_STYLES = ("-", "--", "-.", ":")


def _draw(ax: Axes, runs: Sequence[tuple[NDArray[np.float64], NDArray[np.float64]]],
          common: NDArray[np.float64], curves: Sequence[NDArray[np.float64]], label: str, number: int) -> None:
    """Each run thin, then the mean +- std over the common range in the strategy's colour and dash style."""
    color, style = f"C{number % 10}", _STYLES[number % len(_STYLES)]
    for run_x, run_y in runs:
        ax.plot(run_x, run_y, color=color, linestyle=style, linewidth=0.8, alpha=0.35, drawstyle="steps-post")
    mean, std = _common(curves) if curves else (np.zeros(0), np.zeros(0))
    ax.plot(common, mean, color=color, linestyle=style, linewidth=2.2 - 0.4 * (number % 3),
            drawstyle="steps-post", label=f"{label} (n={len(runs)})", zorder=3 + number)
    ax.fill_between(common, mean - std, mean + std, color=color, alpha=0.15, linewidth=0, step="post")


def plot_report(runs: Sequence[RunResult], path: str | Path) -> Path:
    """Best-so-far validation accuracy vs evaluations and vs wall time: each run thin, the per-strategy
    mean +- std (thick, its own dash style, so identical strategies stay visible) where all its runs have one."""
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    by_count, by_time = figure.subplots(1, 2)
    for number, (strategy, group) in enumerate(_group(runs).items()):
        done = [r for r in group if len(r.best_so_far)]
        if not done:
            continue
        shortest = min(len(r.best_so_far) for r in done)
        steps = np.arange(1, shortest + 1, dtype=np.float64)
        _draw(by_count, [(np.arange(1, len(r.best_so_far) + 1.0), r.best_so_far) for r in done],
              steps, [r.best_so_far[:shortest] for r in done], strategy, number)
        grid = np.linspace(0.0, max(min(float(r.elapsed_s[-1]) for r in done), 1e-6), 200)
        _draw(by_time, [(r.elapsed_s, r.best_so_far) for r in done], grid,
              [_on_grid(r, grid) for r in done], strategy, number)
    by_count.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax, xlabel in ((by_count, "evaluations"), (by_time, "wall time (s)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("best search/val_acc so far")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize="small")
    by_count.set_title("thin: each run; thick: mean ± std while every run is going", fontsize="small")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


@dataclass(frozen=True)
class JobStatus:
    """One job of a Hydra sweep: ``ok`` (it wrote ``summary.json``), ``failed`` (its folder has none) or
    ``missing`` (the sweep never ran it)."""

    number: int | None
    overrides: tuple[str, ...]
    status: str
    reason: str = ""


def _sweep(root: Path) -> list[tuple[str, ...]] | None:
    """Every job's overrides, in Hydra's basic-sweeper order, from ``multirun.yaml`` (``None`` if unknown)."""
    path = root / "multirun.yaml"
    if not path.is_file():
        return None
    task = OmegaConf.select(OmegaConf.load(path), "hydra.overrides.task")
    if task is None:
        return None
    choices = []
    for item in (str(x) for x in task):
        key, _, value = item.partition("=")
        if any(mark in value for mark in "([{") or "," not in value:
            choices.append([item])
        else:
            choices.append([f"{key}={v}" for v in value.split(",")])
    return list(itertools.product(*choices))


def _failure(folder: Path) -> str:
    """The last error line of a job's Hydra log, else a plain reason."""
    for log_file in sorted(folder.glob("*.log")):
        lines = [line for line in log_file.read_text(errors="replace").splitlines()
                 if "Error" in line or "error:" in line]
        if lines:
            return lines[-1].strip()[-200:]
    return "no summary.json (the job stopped before the end)"


def job_statuses(root: str | Path) -> list[JobStatus]:
    """The status of every job of the sweep under ``root`` (job folders hold ``.hydra/overrides.yaml``)."""
    root = Path(root)
    statuses, seen = [], set()
    for overrides_file in sorted(root.glob("*/.hydra/overrides.yaml")):
        folder = overrides_file.parent.parent
        number = int(folder.name) if folder.name.isdigit() else None
        seen.add(number)
        loaded = OmegaConf.load(overrides_file)
        overrides = tuple(str(x) for x in loaded) if isinstance(loaded, ListConfig) else ()
        ok = (folder / "summary.json").is_file()
        statuses.append(JobStatus(number, overrides, "ok" if ok else "failed", "" if ok else _failure(folder)))
    for number, overrides in enumerate(_sweep(root) or []):
        if number not in seen:
            statuses.append(JobStatus(number, overrides, "missing", "never ran (an earlier job stopped the sweep?)"))
    return sorted(statuses, key=lambda j: (j.number is None, j.number or 0))


def format_jobs(statuses: Sequence[JobStatus]) -> str:
    """``Jobs: 2 of 4 finished`` plus one line per failed or missing job (``""`` without jobs)."""
    if not statuses:
        return ""
    finished = sum(j.status == "ok" for j in statuses)
    lines = [f"Jobs: {finished} of {len(statuses)} finished"]
    for job in statuses:
        if job.status != "ok":
            lines.append(f"  job {job.number} ({' '.join(job.overrides)}): {job.status}: {job.reason}")
    return "\n".join(lines)


def write_report(root: str | Path, output_dir: str | Path | None = None) -> tuple[str, Path, Path]:
    """Load the runs under ``root``; write ``report.csv`` and ``report.png``; return (table, csv, png).

    The table ends with the sweep's failed and missing jobs (:func:`format_jobs`), when there are any.

    Args:
        root: the multirun folder.
        output_dir: where the files go (default: ``root``).
    """
    runs = load_runs(root)
    rows = summarize(runs)
    target = Path(output_dir) if output_dir is not None else Path(root)
    target.mkdir(parents=True, exist_ok=True)
    csv_path = target / "report.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    jobs = format_jobs(job_statuses(root))
    for line in jobs.splitlines()[1:]:
        log.warning("%s", line.strip())
    table = format_table(rows) + ("\n\n" + jobs if jobs else "")
    return table, csv_path, plot_report(runs, target / "report.png")
