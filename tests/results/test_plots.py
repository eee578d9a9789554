"""Plot functions write PNG files and reject mismatched inputs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from lightning_nas.results.plots import correlation_plot, pareto3d_plot, pareto_plot, progress_plot

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    data = path.read_bytes()
    return data.startswith(PNG) and len(data) > 5000


def test_pareto_plot_marks_front_infeasible_and_knee(tmp_path: Path) -> None:
    x = [1.0, 2.0, 4.0, 8.0, math.nan, 3.0]
    y = [0.6, 0.8, 0.9, 0.95, 0.5, 0.7]
    path = pareto_plot(x, y, tmp_path / "sub" / "front.png", front=[1, 1, 1, 0, 0, 0],
                       feasible=[1, 1, 1, 0, 1, 1], knee=1, log_x=True, x_label="MACs")
    assert path == tmp_path / "sub" / "front.png" and _is_png(path)


def test_pareto3d_progress_and_correlation_plots(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x, y, z = rng.random(12), rng.random(12), rng.random(12)
    assert _is_png(pareto3d_plot(x, y, z, tmp_path / "p3.png", front=z > 0.7, feasible=x < 0.9))
    steps = np.arange(1, 6)
    best = [math.nan, 0.5, 0.6, 0.6, 0.8]
    assert _is_png(progress_plot(steps, best, [0.0, 0.1, 0.2, 0.2, 0.35], tmp_path / "progress.png"))
    matrix = np.array([[1.0, -0.4, math.nan], [-0.4, 1.0, 0.9], [math.nan, 0.9, 1.0]])
    assert _is_png(correlation_plot(["accuracy", "latency", "memory"], matrix, tmp_path / "corr.png"))


def test_mismatched_inputs_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="x has 2 values"):
        pareto_plot([1, 2], [1, 2, 3], tmp_path / "a.png")
    with pytest.raises(ValueError, match="mask"):
        pareto_plot([1, 2], [1, 2], tmp_path / "a.png", front=[True])
    with pytest.raises(ValueError, match="same number"):
        pareto3d_plot([1], [1, 2], [1], tmp_path / "b.png")
    with pytest.raises(ValueError, match="same length"):
        progress_plot([1, 2], [1], [1, 2], tmp_path / "c.png")
    with pytest.raises(ValueError, match="does not match"):
        correlation_plot(["a"], np.eye(2), tmp_path / "d.png")
    assert not list(tmp_path.glob("*.png"))
