"""The run's final model on disk: ``best/model.pt`` (a state_dict) beside ``best/arch.json``.

A run retrains its chosen architecture once (the final training) and saves the result here;
every export of that architecture (the run's ``export.top_k``, ``python -m lightning_nas.export
run=<folder>``) loads these weights, so no export ships an untrained network by accident.

Example:
    >>> save_final_model(model, arch, run_dir / "best", {"test/acc": 0.97})  # doctest: +SKIP
    >>> state = load_final_weights(run_dir / "best", arch)  # doctest: +SKIP
    >>> space.build(arch).load_state_dict(state)  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from lightning_nas.arch import Architecture
from lightning_nas.safe_load import load_state_dict_file

__all__ = ["ARCH_FILE", "METRICS_FILE", "MODEL_FILE", "final_model_path", "load_final_weights", "save_final_model"]

MODEL_FILE = "model.pt"
ARCH_FILE = "arch.json"
METRICS_FILE = "metrics.json"


def save_final_model(model: nn.Module, arch: Architecture, folder: str | Path,
                     metrics: Mapping[str, float] | None = None) -> Path:
    """Write ``model``'s weights (CPU tensors), ``arch`` and the final ``metrics`` under ``folder``.

    Args:
        model: the trained network (a plain module that ``space.build(arch)`` rebuilds).
        arch: its architecture.
        folder: destination, usually ``<run>/best``.
        metrics: e.g. ``test/acc`` of this very model (written to ``metrics.json``).

    Returns:
        The path of ``model.pt``.
    """
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    arch.save(target / ARCH_FILE)
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    torch.save(state, target / MODEL_FILE)
    if metrics is not None:
        text = json.dumps({"arch_id": arch.digest(), **dict(metrics)}, indent=2, sort_keys=True) + "\n"
        (target / METRICS_FILE).write_text(text)
    return target / MODEL_FILE


def final_model_path(folder: str | Path, arch: Architecture) -> Path | None:
    """``folder/model.pt`` when it exists and ``folder/arch.json`` is ``arch``, else ``None``."""
    target = Path(folder)
    weights, saved = target / MODEL_FILE, target / ARCH_FILE
    if not (weights.is_file() and saved.is_file()):
        return None
    return weights if Architecture.load(saved) == arch else None


def load_final_weights(folder: str | Path, arch: Architecture) -> dict[str, torch.Tensor] | None:
    """The saved state_dict of ``arch`` (tensors only: ``weights_only=True``), or ``None`` when absent."""
    path = final_model_path(folder, arch)
    if path is None:
        return None
    return load_state_dict_file(path, "resume", f"delete {path} to train the final model again")
