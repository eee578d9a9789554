"""Checks that take seconds and run before a search writes anything; each problem is one ConfigError line.

* the output folder can be created and written (and is not a file);
* the trainer's accelerator exists and is available here;
* the data module builds and yields one training batch;
* the space's smallest architecture fits the ``max_params`` / ``max_macs`` constraints
  (:func:`minimum_cost` finds it from the space's decisions).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from lightning_nas.arch import Architecture
from lightning_nas.config import ConfigError
from lightning_nas.hardware.profile import count_macs, count_params
from lightning_nas.objectives.constraints import CONSTRAINT_KEYS, Constraint
from lightning_nas.results.fingerprint import differences, flatten
from lightning_nas.results.history import Record, is_header
from lightning_nas.spaces.base import SearchSpace

__all__ = ["check_accelerator", "check_budget", "check_counts", "check_one_batch", "check_output_dir",
           "check_resume", "minimum_cost"]

log = logging.getLogger(__name__)

_COSTS = {"params": "model/params", "macs": "model/macs"}  # constraint alias -> metric the space alone decides
_UNITS = {"params": "parameters", "macs": "MACs"}


def check_output_dir(path: Path) -> None:
    """``output_dir`` is a folder (or can become one) that this process can write to."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output_dir: {path} is a file, not a folder (choose another output_dir)")
    existing = next(p for p in [path, *path.parents] if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"output_dir: {existing} is a file, so {path} cannot be created (choose another output_dir)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"output_dir: {existing} is not writable (choose a folder you can write to)")


def check_accelerator(name: str) -> None:
    """``trainer.accelerator`` is ``auto`` or a Lightning accelerator available on this machine."""
    from lightning.pytorch.accelerators import AcceleratorRegistry

    if name == "auto":
        return
    if name not in AcceleratorRegistry:
        known = ", ".join(["auto", *sorted(AcceleratorRegistry)])
        raise ConfigError(f"trainer.accelerator: unknown accelerator {name!r} (use one of: {known})")
    if not AcceleratorRegistry[name]["accelerator"].is_available():
        raise ConfigError(f"trainer.accelerator: {name!r} is not available on this machine "
                          "(use trainer.accelerator=cpu or auto)")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def check_one_batch(datamodule: Any) -> None:
    """Build the training split and load one batch; ``data: <reason>`` when that fails."""
    try:
        datamodule.prepare_data()
        datamodule.setup("fit")
        next(iter(datamodule.train_dataloader()))
    except StopIteration:
        raise ConfigError("data: the training split is empty (check data.max_train_samples and the files)") from None
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as error:
        reason = " ".join(str(error).split())[:400] or type(error).__name__
        raise ConfigError(reason if reason.startswith("data.") else f"data: {reason}") from error


def check_counts(cfg: Any) -> None:
    """``top_k`` and ``export.top_k`` are not negative."""
    for key in ("top_k", "export.top_k"):
        value = int(_select(cfg, key))
        if value < 0:
            raise ConfigError(f"{key}: must be 0 or more, got {value} (0 {'prints' if key == 'top_k' else 'exports'} "
                              "nothing)")


def _select(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


def _cost(space: SearchSpace, arch: Architecture, metrics: Iterable[str]) -> dict[str, float]:
    with torch.random.fork_rng(devices=[]):
        model = space.build(arch)
    found = {}
    for metric in metrics:
        found[metric] = float(count_params(model) if metric == "model/params" else count_macs(model, space.input_shape))
    return found


def minimum_cost(space: SearchSpace, metric: str, passes: int = 2,
                 stop_at: float | None = None) -> tuple[float, Architecture]:
    """The smallest ``metric`` (``model/params`` or ``model/macs``) over ``space`` and an architecture reaching it.

    Coordinate descent over the decisions: starting from each decision's first option, every decision in
    turn takes the option that lowers the cost most with the others fixed, for ``passes`` rounds (exact
    for costs that grow with each decision on its own, as widths, depths, kernels and expansions do).
    With ``stop_at``, it returns as soon as an architecture costs no more than that (a budget is reachable).
    """
    decisions = space.decisions
    arch = dict(space.validate({label: choice.candidates[0] for label, choice in decisions.items()}))
    best = _cost(space, Architecture(arch), [metric])[metric]
    for _ in range(passes):
        improved = False
        for label, choice in decisions.items():
            if stop_at is not None and best <= stop_at:
                return best, Architecture(arch)
            for option in choice.candidates:
                trial = Architecture({**arch, label: option})
                value = _cost(space, trial, [metric])[metric]
                if value < best:
                    arch, best, improved = dict(trial), value, True
        if not improved:
            break
    return best, Architecture(arch)


def check_budget(space: SearchSpace, constraints: Iterable[Constraint]) -> None:
    """Refuse a ``max_params`` / ``max_macs`` bound below the smallest architecture of ``space``."""
    for constraint in constraints:
        alias = next((a for a, (metric, kind, _) in CONSTRAINT_KEYS.items()
                      if kind == constraint.kind == "max" and metric == constraint.metric), None)
        if alias is None or constraint.metric not in _COSTS:
            continue
        smallest, _ = minimum_cost(space, _COSTS[constraint.metric], stop_at=constraint.bound)
        if smallest > constraint.bound:
            raise ConfigError(
                f"objective.constraints.{alias}: {constraint.bound:,.0f} cannot be met; the smallest architecture "
                f"of this search space has {smallest:,.0f} {_UNITS[constraint.metric]} (raise it to at least "
                f"{smallest:,.0f} or choose a smaller search_space)")


def check_resume(history: Path, resume: bool, fingerprint: dict[str, Any]) -> None:
    """An existing ``history`` is resumed only when asked, is readable, and was written by the same settings.

    Reads the file without changing it (a torn last line is ignored here; the search truncates it).
    """
    if not history.is_file() or history.stat().st_size == 0:
        return
    if not resume:
        raise ConfigError(f"resume: {history.parent} already holds a search (pass resume=true to continue it "
                          "or choose another output_dir)")
    lines = history.read_bytes().splitlines(keepends=True)
    saved: dict[str, Any] | None = None
    for number, line in enumerate(lines, 1):
        if not line.endswith(b"\n"):
            break
        try:
            data = json.loads(line)
            if number == 1 and is_header(data):
                saved = dict(data.get("fingerprint") or {})
            else:
                Record.from_json(line.decode())
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigError(f"resume: {history} line {number} is not a history record ({_first_line(error)}) "
                              "(restore the file, or start a new output_dir)") from error
    if saved is None:
        log.warning("%s has no fingerprint header (written before lightning_nas checked resumes): "
                    "its settings cannot be compared", history)
        return
    old, new = flatten(saved), flatten(fingerprint)
    changed = _typed_keys(differences(saved, fingerprint), old, new)
    if changed:
        shown = "; ".join(f"{key}={_show(new, key)}, the run has {_show(old, key)}" for key in changed[:4])
        more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
        raise ConfigError(f"{', '.join(changed[:4])}{more}: differ from the run being resumed ({shown}) "
                          "(resume with the run's own settings, or choose another output_dir)")


def _typed_keys(changed: list[str], old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``changed`` without the group copies of a changed top-level key (``data.seed`` when ``seed`` changed)."""
    top = {key for key in changed if "." not in key}
    return [key for key in changed if not (key.rsplit(".", 1)[-1] in top and "." in key
                                           and (old.get(key), new.get(key)) == (old.get(key.rsplit(".", 1)[-1]),
                                                                                new.get(key.rsplit(".", 1)[-1])))]


def _show(flat: dict[str, Any], key: str) -> str:
    return json.dumps(flat[key]) if key in flat else "unset"


def blame_budget(cfg: Any, message: str) -> str:
    """``message`` about a strategy setting that reads ``budget.*`` restated against the ``budget`` key set.

    ``budget.evaluations=-1`` fails in the strategy as ``strategy.num_samples``; the user typed
    ``budget.evaluations``, so that is the key the message names.
    """
    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(cfg.strategy, resolve=False)
    budget = cfg.get("budget") or {}
    for item, value in (raw.items() if isinstance(raw, dict) else ()):
        name = str(item)
        for key in ("evaluations", "population_size"):
            if budget.get(key) is None or f"budget.{key}" not in str(value) or name not in message:
                continue
            if message.startswith(f"strategy.{name}"):
                return f"budget.{key}{message[len(f'strategy.{name}'):]} (read as strategy.{name})"
            return f"budget.{key}: {message} (strategy.{name} reads budget.{key}={budget.get(key)})"
    return message
