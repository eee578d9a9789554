"""Search plots as pure functions: arrays in, a PNG out (its path returned).

Figures are drawn with matplotlib's object API on the Agg canvas (no ``pyplot``, no global
backend switch, no display needed), so they are safe in headless runs and threads.

Example:
    >>> path = progress_plot([1, 2, 3], [0.5, 0.7, 0.7], [0.1, 0.3, 0.3], tmp_path / "progress.png")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from numpy.typing import ArrayLike, NDArray

__all__ = ["correlation_plot", "pareto3d_plot", "pareto_plot", "progress_plot"]

_GREY, _FRONT, _INFEASIBLE, _KNEE, _CHOSEN = "#9e9e9e", "#d62728", "#ff7f0e", "#1f77b4", "#ffd700"


def _figure(width: float = 6.4, height: float = 4.8) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def _masks(n: int, *masks: ArrayLike | None) -> list[NDArray[np.bool_]]:
    result = []
    for mask in masks:
        array = np.zeros(n, dtype=bool) if mask is None else np.asarray(mask, dtype=bool).reshape(-1)
        if array.shape[0] != n:
            raise ValueError(f"a mask has {array.shape[0]} entries for {n} points")
        result.append(array)
    return result


def _column(values: ArrayLike) -> NDArray[np.float64]:
    return np.asarray(values, dtype=np.float64).reshape(-1)


def pareto_plot(
    x: ArrayLike,
    y: ArrayLike,
    path: str | Path,
    *,
    front: ArrayLike | None = None,
    feasible: ArrayLike | None = None,
    knee: int | None = None,
    x_label: str = "latency (ms)",
    y_label: str = "accuracy",
    title: str = "Pareto front",
    log_x: bool = False,
    chosen: int | None = None,
    staircase: bool = True,
) -> Path:
    """Accuracy (``y``, higher is better) against a cost (``x``, lower is better).

    Feasible candidates are grey dots, infeasible ones orange crosses; the front is highlighted
    and, with ``staircase`` (a front over exactly these two objectives), joined by its attainment
    staircase; a front over more objectives is drawn as points only, since members that look
    dominated here win in another objective. The chosen model and the knee (indices into ``x``)
    are annotated. Points with a non-finite coordinate are left out.

    Args:
        x: cost per candidate.
        y: accuracy per candidate.
        path: the PNG to write.
        front: mask of the front members.
        feasible: mask of the feasible candidates (default: all).
        knee: index of the knee point, or ``None``.
        x_label: x axis label.
        y_label: y axis label.
        title: figure title.
        log_x: logarithmic x axis.
        chosen: index of the run's chosen model, or ``None``.
        staircase: join the front by its 2-D attainment staircase.
    """
    xs, ys = _column(x), _column(y)
    if xs.shape != ys.shape:
        raise ValueError(f"x has {xs.shape[0]} values but y has {ys.shape[0]}")
    on_front, ok = _masks(len(xs), front, np.ones(len(xs)) if feasible is None else feasible)
    shown = np.isfinite(xs) & np.isfinite(ys)
    figure = _figure()
    ax = figure.add_subplot()
    rest, bad, best = shown & ok & ~on_front, shown & ~ok, shown & on_front
    ax.scatter(xs[rest], ys[rest], s=18, c=_GREY, alpha=0.7, label="candidates")
    ax.scatter(xs[bad], ys[bad], s=24, c=_INFEASIBLE, marker="x", label="infeasible")
    if staircase:
        order = np.argsort(xs[best], kind="stable")
        ax.step(xs[best][order], ys[best][order], where="post", color=_FRONT, linewidth=1.2)
    ax.scatter(xs[best], ys[best], s=36, c=_FRONT, edgecolors="black", linewidths=0.5, zorder=3,
               label="Pareto front" if staircase else "Pareto front (all objectives)")
    _mark_chosen(ax, xs, ys, chosen, shown)
    if knee is not None and shown[knee]:
        ax.scatter([xs[knee]], [ys[knee]], s=160, facecolors="none", edgecolors=_KNEE, linewidths=2, zorder=4)
        ax.annotate(f"knee #{knee}", (xs[knee], ys[knee]), xytext=(10, -14), textcoords="offset points",
                    color=_KNEE)
    if log_x:
        ax.set_xscale("log")
    ax.set(xlabel=x_label, ylabel=y_label)
    ax.set_title(title, fontsize="medium" if len(title) < 60 else "small")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return _save(figure, path)


def _mark_chosen(ax: Axes, xs: NDArray[np.float64], ys: NDArray[np.float64], chosen: int | None,
                 shown: NDArray[np.bool_]) -> None:
    """A gold star on the chosen model, labelled with its index."""
    if chosen is None or not shown[chosen]:
        return
    ax.scatter([xs[chosen]], [ys[chosen]], s=260, marker="*", c=_CHOSEN, edgecolors="black", linewidths=0.8,
               zorder=5, label=f"chosen #{chosen}")


def pareto3d_plot(
    x: ArrayLike,
    y: ArrayLike,
    z: ArrayLike,
    path: str | Path,
    *,
    front: ArrayLike | None = None,
    feasible: ArrayLike | None = None,
    labels: Sequence[str] = ("latency (ms)", "memory (MB)", "accuracy"),
    title: str = "Pareto front (3 objectives)",
    chosen: int | None = None,
) -> Path:
    """A 3-D scatter of all candidates with the front highlighted.

    Args:
        x: first axis values (e.g. latency).
        y: second axis values (e.g. memory).
        z: third axis values (e.g. accuracy).
        path: the PNG to write.
        front: mask of the front members.
        feasible: mask of the feasible candidates (default: all).
        labels: the three axis labels.
        title: figure title.
        chosen: index of the run's chosen model (a gold star), or ``None``.
    """
    xs, ys, zs = _column(x), _column(y), _column(z)
    if not xs.shape == ys.shape == zs.shape:
        raise ValueError("x, y and z need the same number of values")
    on_front, ok = _masks(len(xs), front, np.ones(len(xs)) if feasible is None else feasible)
    shown = np.isfinite(xs) & np.isfinite(ys) & np.isfinite(zs)
    figure = _figure(7.0, 5.6)
    ax = figure.add_subplot(projection="3d")
    for mask, style in (
        (shown & ok & ~on_front, {"c": _GREY, "s": 14, "alpha": 0.6, "label": "candidates"}),
        (shown & ~ok, {"c": _INFEASIBLE, "s": 20, "marker": "x", "label": "infeasible"}),
        (shown & on_front, {"c": _FRONT, "s": 40, "edgecolors": "black", "label": "Pareto front"}),
    ):
        ax.scatter(xs[mask], ys[mask], zs[mask], **style)
    if chosen is not None and shown[chosen]:
        ax.scatter([xs[chosen]], [ys[chosen]], [zs[chosen]], s=260, marker="*", c=_CHOSEN, edgecolors="black",
                   label=f"chosen #{chosen}")
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_zlabel(labels[2])
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize="small")
    return _save(figure, path)


def _series(ax: Axes, steps: NDArray[np.float64], values: NDArray[np.float64], label: str, color: str) -> None:
    ax.plot(steps, values, color=color, drawstyle="steps-post", linewidth=1.5)
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)


def progress_plot(
    evaluations: ArrayLike,
    best_score: ArrayLike,
    hypervolume: ArrayLike,
    path: str | Path,
    *,
    title: str = "Search progress",
    score_label: str = "best score so far",
    chosen: int | None = None,
) -> Path:
    """Best-so-far score (top) and hypervolume (bottom) against the number of evaluations.

    The evaluation axis has integer ticks; ``chosen`` (an evaluation number on that axis) is
    marked by a dotted line on both panels.

    Args:
        evaluations: evaluation counts (x axis).
        best_score: best feasible score so far (NaN before the first feasible candidate).
        hypervolume: hypervolume of the front so far.
        path: the PNG to write.
        title: figure title.
        score_label: what the score is (e.g. ``"accuracy"`` or the weighted sum).
        chosen: the evaluation number (1-based) of the chosen model, or ``None``.
    """
    steps, best, volume = _column(evaluations), _column(best_score), _column(hypervolume)
    if not steps.shape == best.shape == volume.shape:
        raise ValueError("evaluations, best_score and hypervolume need the same length")
    figure = _figure(6.4, 5.6)
    top, bottom = figure.subplots(2, 1, sharex=True)
    _series(top, steps, best, "best score so far", _KNEE)
    top.set_title(score_label, fontsize="small")
    _series(bottom, steps, volume, "hypervolume", _FRONT)
    if chosen is not None:
        for ax in (top, bottom):
            ax.axvline(chosen, color=_CHOSEN, linestyle=":", linewidth=2,
                       label=f"chosen #{chosen - 1} (evaluation {chosen})")
        top.legend(loc="lower right", fontsize="small")
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.set_xlabel("evaluations")
    figure.suptitle(title)
    return _save(figure, path)


def correlation_plot(
    names: Sequence[str], matrix: ArrayLike, path: str | Path, *, title: str = "Spearman correlation"
) -> Path:
    """A heatmap of a correlation matrix, each cell annotated (blank for NaN).

    Args:
        names: row and column labels.
        matrix: ``(k, k)`` correlations in [-1, 1].
        path: the PNG to write.
        title: figure title.
    """
    values = np.asarray(matrix, dtype=np.float64)
    k = len(names)
    if values.shape != (k, k):
        raise ValueError(f"matrix shape {values.shape} does not match {k} names")
    figure = _figure(1.2 * k + 2.4, 1.0 * k + 1.8)
    ax = figure.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(values), cmap="coolwarm", vmin=-1.0, vmax=1.0)
    ax.set_xticks(range(k), labels=list(names), rotation=30, ha="right")
    ax.set_yticks(range(k), labels=list(names))
    for i in range(k):
        for j in range(k):
            if np.isfinite(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize="small",
                        color="white" if abs(values[i, j]) > 0.6 else "black")
    figure.colorbar(image, ax=ax, shrink=0.8)
    ax.set_title(title)
    return _save(figure, path)
