"""Case-study plots as pure functions: records in, a PNG out (its path returned).

``robustness_plot`` (accuracy under noise, corruptions and attacks), ``efficiency_plot``
(accuracy against parameters, coloured by activation memory) and ``transfer_reference_plot``
(a warm-started run against the best score of its source run). Drawn like
:mod:`lightning_nas.results.plots`: matplotlib's object API on the Agg canvas, no ``pyplot``.

Example:
    >>> robustness_plot(history.successful(), tmp_path / "robustness.png")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from numpy.typing import ArrayLike, NDArray

from lightning_nas.objectives.score import ScoreFn, best_so_far, default_score
from lightning_nas.results.history import Record

__all__ = ["CLEAN", "efficiency_plot", "robust_accuracy_keys", "robust_keys", "robustness_plot",
           "transfer_reference_plot"]

CLEAN = "robust/clean_acc"
_NOISE = re.compile(r"^robust/noise_acc@(.+)$")
_TAIL = ("robust/corrupt_acc", "robust/adv_acc_fgsm", "robust/adv_acc_pgd")
_RATIOS = ("robust/corrupt_ratio", "robust/adv_ratio")
_WITHIN_BUDGET, _OVER_BUDGET = "#1f77b4", "#d62728"


def _figure(width: float = 6.4, height: float = 4.8) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def _metric(record: Record, key: str) -> float:
    value = record.result.metrics.get(key, math.nan)
    return float(value) if value is not None else math.nan


def _noise_level(key: str) -> float:
    match = _NOISE.match(key)
    try:
        return float(match.group(1)) if match else math.inf
    except ValueError:
        return math.inf


def robust_accuracy_keys(records: Sequence[Record]) -> list[str]:
    """The accuracy metrics present in ``records``: clean, noise levels (ascending), corrupt, FGSM, PGD."""
    present = {k for r in records for k in r.result.metrics if k.startswith("robust/")}
    noise = sorted((k for k in present if _NOISE.match(k)), key=lambda k: (_noise_level(k), k))
    return [k for k in (CLEAN, *noise, *_TAIL) if k in present]


def robust_keys(records: Sequence[Record]) -> list[str]:
    """Every ``robust/*`` metric present in ``records``: the accuracies, the ratios, then any other."""
    present = {k for r in records for k in r.result.metrics if k.startswith("robust/")}
    ordered = [*robust_accuracy_keys(records), *(k for k in _RATIOS if k in present)]
    return ordered + sorted(present - set(ordered))


def _top_by_clean(records: Sequence[Record], top_k: int) -> list[Record]:
    scored = [r for r in records if r.result.ok and math.isfinite(_metric(r, CLEAN))]
    return sorted(scored, key=lambda r: (-_metric(r, CLEAN), r.index))[:top_k]


def robustness_plot(records: Sequence[Record], path: str | Path, top_k: int = 8) -> Path:
    """Grouped bars of every robust accuracy for the ``top_k`` successful candidates by clean accuracy,
    and a scatter of ``robust/adv_ratio`` against clean accuracy over all successful candidates.

    Raises:
        ValueError: when ``top_k < 1`` or no successful record has ``robust/clean_acc``.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k!r}")
    top = _top_by_clean(records, top_k)
    if not top:
        raise ValueError("no successful candidate has robust/clean_acc")
    keys = robust_accuracy_keys(top)
    figure = _figure(12.0, 4.8)
    bars, scatter = figure.subplots(1, 2, width_ratios=(2, 1))
    width = 0.8 / len(keys)
    positions = np.arange(len(top))
    for j, key in enumerate(keys):
        values = [_metric(r, key) for r in top]
        bars.bar(positions + (j - (len(keys) - 1) / 2) * width, values, width, label=key.removeprefix("robust/"))
    bars.set_xticks(positions, [f"#{r.index}" for r in top])
    columns = min(len(keys), 4)
    headroom = 0.08 * -(-len(keys) // columns)  # one legend row per `columns` keys, above the tallest bar
    bars.set(xlabel="candidate (by clean accuracy)", ylabel="accuracy", ylim=(0.0, 1.05 + headroom),
             title=f"Robust accuracy, top {len(top)}")
    bars.set_yticks(np.linspace(0.0, 1.0, 6))
    bars.grid(axis="y", alpha=0.3)
    bars.legend(fontsize="x-small", ncols=columns, loc="upper center")
    ok = [r for r in records if r.result.ok]
    xs = np.array([_metric(r, CLEAN) for r in ok], dtype=np.float64)
    ys = np.array([_metric(r, "robust/adv_ratio") for r in ok], dtype=np.float64)
    shown = np.isfinite(xs) & np.isfinite(ys)
    scatter.scatter(xs[shown], ys[shown], s=20, c="#1f77b4", alpha=0.8)
    scatter.set(xlabel="clean accuracy", ylabel="adversarial ratio (PGD / clean)", title="Robustness vs accuracy")
    scatter.grid(alpha=0.3)
    return _save(figure, path)


def _efficiency_scatter(figure: Figure, ax: Axes, acc: NDArray[np.float64], n_params: NDArray[np.float64],
                        mem: NDArray[np.float64], bad: NDArray[np.bool_], chosen: int | None = None,
                        chosen_label: str = "") -> None:
    shown = np.isfinite(acc) & np.isfinite(n_params) & (n_params > 0)
    coloured, grey = shown & np.isfinite(mem), shown & ~np.isfinite(mem)
    if grey.any():
        ax.scatter(n_params[grey], acc[grey], s=22, c="#9e9e9e", label="memory unknown")
    if coloured.any():
        points = ax.scatter(n_params[coloured], acc[coloured], s=22, c=mem[coloured], cmap="viridis")
        figure.colorbar(points, ax=ax, label="activation memory (MB)")
    if (shown & bad).any():
        ax.scatter(n_params[shown & bad], acc[shown & bad], s=90, facecolors="none", edgecolors=_OVER_BUDGET,
                   linewidths=1.5, label="violates a constraint")
    if chosen is not None and shown[chosen]:
        ax.scatter([n_params[chosen]], [acc[chosen]], s=220, marker="*", c="#ffd700", edgecolors="black",
                   linewidths=0.8, zorder=5, label=f"chosen model {chosen_label}".rstrip())
    if grey.any() or (shown & bad).any() or chosen is not None:
        ax.legend(loc="best", fontsize="small")
    ax.set_xscale("log")
    ax.set(xlabel="parameters", ylabel="validation accuracy", title="Accuracy vs parameters")
    ax.grid(alpha=0.3)


def efficiency_plot(
    accuracy: ArrayLike,
    params: ArrayLike,
    memory_mb: ArrayLike,
    efficiency: ArrayLike,
    path: str | Path,
    *,
    violates: ArrayLike | None = None,
    labels: Sequence[str] | None = None,
    top_n: int = 15,
    chosen: int | None = None,
) -> Path:
    """Accuracy against parameters coloured by activation memory (violators circled red, the chosen
    model a gold star), and the ``top_n`` candidates by parameter efficiency (accuracy per 100K
    parameters) as bars (the chosen model's bar edged black).

    ``chosen`` is a position in the arrays (the run's best), or ``None``.

    Points with a non-finite accuracy or parameter count are left out; a missing memory is grey.
    """
    acc, n_params, mem, eff = (np.asarray(a, dtype=np.float64).reshape(-1)
                               for a in (accuracy, params, memory_mb, efficiency))
    bad = np.zeros(len(acc), dtype=bool) if violates is None else np.asarray(violates, dtype=bool).reshape(-1)
    names = list(labels) if labels is not None else [f"#{i}" for i in range(len(acc))]
    if not len(acc) == len(n_params) == len(mem) == len(eff) == len(bad) == len(names):
        raise ValueError("efficiency_plot: every array needs one entry per candidate")
    figure = _figure(12.0, 4.8)
    scatter, bars = figure.subplots(1, 2)
    _efficiency_scatter(figure, scatter, acc, n_params, mem, bad, chosen, names[chosen] if chosen is not None else "")
    order = [i for i in np.argsort(-np.nan_to_num(eff, nan=-np.inf), kind="stable") if np.isfinite(eff[i])][:top_n]
    bars.barh(np.arange(len(order)), eff[order], color=[_OVER_BUDGET if bad[i] else _WITHIN_BUDGET for i in order],
              edgecolor=["black" if i == chosen else "none" for i in order], linewidth=2)
    if any(bad[i] for i in order):
        bars.legend(handles=[Patch(color=_WITHIN_BUDGET, label="meets every constraint"),
                             Patch(color=_OVER_BUDGET, label="violates a constraint")],
                    loc="lower right", fontsize="small")
    bars.set_yticks(np.arange(len(order)), [names[i] + (" (chosen)" if i == chosen else "") for i in order])
    bars.invert_yaxis()
    bars.set(xlabel="accuracy per 100K parameters", title=f"Parameter efficiency, top {len(order)}")
    bars.grid(axis="x", alpha=0.3)
    return _save(figure, path)


def transfer_reference_plot(
    records: Sequence[Record],
    path: str | Path,
    reference: float | None,
    score: ScoreFn = default_score,
    ylabel: str = "best validation accuracy",
    title: str = "Warm start vs source run's best (no from-scratch baseline)",
) -> Path:
    """Best-so-far ``score`` of this run against evaluations, with ``reference`` (the source run's
    best score) as a dashed line when finite."""
    figure = _figure()
    ax = figure.add_subplot()
    curve: NDArray[np.float64] = np.asarray(best_so_far(records, score), dtype=np.float64)
    steps = np.arange(1, curve.size + 1)
    finite = np.isfinite(curve)
    ax.step(steps[finite], curve[finite], where="post", label="warm start", color="tab:orange")
    if reference is not None and math.isfinite(reference):
        ax.axhline(reference, linestyle="--", color="tab:gray", label=f"source best ({reference:.4g})")
    ax.set(xlabel="evaluations", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(figure, path)
