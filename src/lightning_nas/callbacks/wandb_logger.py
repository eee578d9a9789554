"""W&B search logging (offline by default): the one place that calls ``wandb``."""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning_nas.results.history import History, Record
from lightning_nas.spaces.base import SearchSpace

__all__ = ["RUN_ID_FILE", "WandbSearchLogger", "arch_columns", "candidate_rows", "run_names"]

log = logging.getLogger(__name__)

RUN_ID_FILE = "wandb_run_id"

_MODES = ("offline", "online", "disabled")


class WandbSearchLogger:
    """Logs every candidate's metrics and, at the end, a table of all candidates to W&B.

    Offline unless configured ``mode="online"``; never prompts for a login. Side effects
    happen on rank zero only.

    Args:
        project: W&B project name.
        mode: ``offline`` (default, files under ``<output_dir>/wandb``), ``online`` or ``disabled``.
        entity: W&B entity (team or user), online mode only.
        tags: run tags.
        run_name: display name; the app sets ``<experiment>/<strategy>/seed<k>`` (:func:`run_names`),
            else the output folder's name.
        run_group: W&B group (the app sets ``<experiment>/<strategy>``, so seeds of one setting group together).
        output_dir: where the offline run folder is written (set by the app). The run's id is kept
            there in ``wandb_run_id``, so a resumed search continues the same W&B run.
        run_config: the composed run configuration, stored with the run.

    Example:
        >>> logger = WandbSearchLogger(project="demo", mode="disabled")
    """

    def __init__(self, project: str = "lightning_nas", mode: str = "offline", entity: str | None = None,
                 tags: Sequence[str] = (), run_name: str | None = None, run_group: str | None = None,
                 output_dir: str | None = None, run_config: dict[str, Any] | None = None) -> None:
        if mode not in _MODES:
            raise ValueError(f"logger.mode must be one of {list(_MODES)}, got {mode!r}")
        if not project:
            raise ValueError("logger.project must be a non-empty name")
        self.project, self.mode, self.entity, self.tags = project, mode, entity, list(tags)
        self.run_name, self.output_dir, self.run_config = run_name, output_dir, dict(run_config or {})
        self.run_group = run_group
        self.run: Any = None

    @property
    def enabled(self) -> bool:
        return self.mode != "disabled" and _is_rank_zero()

    def on_search_start(self, space: SearchSpace, history: History) -> None:
        if not self.enabled:
            return
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        if self.mode == "offline":
            os.environ["WANDB_MODE"] = "offline"
        directory = Path(self.output_dir or ".")
        directory.mkdir(parents=True, exist_ok=True)
        id_file = directory / RUN_ID_FILE
        run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:12]
        self.run = wandb.init(
            project=self.project, entity=self.entity, mode=self.mode,  # type: ignore[arg-type]
            dir=str(directory), tags=self.tags, group=self.run_group, id=run_id, resume="allow",
            name=self.run_name or directory.name, config={**self.run_config, "space": repr(space)},
            reinit="finish_previous",
        )
        id_file.write_text(run_id + "\n")
        for record in history:
            self._log_record(record)

    def _log_record(self, record: Record) -> None:
        metrics = {k: v for k, v in record.result.metrics.items()}
        self.run.log({**metrics, "search/failed": float(not record.result.ok)}, step=record.index)

    def on_candidate_end(self, record: Record, history: History) -> None:
        if self.run is not None:
            self._log_record(record)

    def on_search_end(self, history: History) -> None:
        if self.run is None:
            return
        self.log_table("search/candidates", candidate_rows(history))

    def log_table(self, key: str, rows: list[dict[str, Any]]) -> None:
        """Log ``rows`` (dicts with the same keys) as a W&B table."""
        if self.run is None or not rows:
            return
        import wandb

        names = list(rows[0])
        columns: list[str | int] = list(names)
        self.run.log({key: wandb.Table(columns=columns, data=[[row.get(c) for c in names] for row in rows])})

    def log_images(self, key: str, paths: Sequence[Path]) -> None:
        """Log image files (e.g. per-epoch heatmaps) under ``key``."""
        if self.run is None or not paths:
            return
        import wandb

        self.run.log({key: [wandb.Image(str(p), caption=Path(p).stem) for p in paths]})

    def log_summary(self, summary: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update({k: v for k, v in summary.items() if isinstance(v, int | float | str)})

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            log.info("W&B run written to %s", self.run.dir if self.mode == "offline" else self.run.url)
            self.run = None


def run_names(experiment: str, strategy: str, seed: int) -> dict[str, str]:
    """``run_name`` ``<experiment>/<strategy>/seed<k>`` and ``run_group`` ``<experiment>/<strategy>``."""
    return {"run_name": f"{experiment}/{strategy}/seed{seed}", "run_group": f"{experiment}/{strategy}"}


def arch_columns(arch: Mapping[str, Any]) -> dict[str, Any]:
    """The architecture as one ``arch/<label>`` column per decision (lists as text), for W&B tables."""
    return {f"arch/{label}": value if isinstance(value, int | float | str | bool) else json.dumps(value)
            for label, value in arch.items()}


def candidate_rows(history: History) -> list[dict[str, Any]]:
    """One flat row per candidate: index, id, status, one column per architecture decision and metrics."""
    metric_names = sorted({name for record in history for name in record.result.metrics})
    labels = list(dict.fromkeys(label for record in history for label in record.arch))
    return [
        {
            "index": r.index,
            "arch_id": r.arch.digest(),
            "status": r.result.status,
            **{f"arch/{label}": None for label in labels},
            **arch_columns(r.arch),
            **{name: r.result.metrics.get(name) for name in metric_names},
            "error": r.result.error or "",
        }
        for r in history
    ]


def _is_rank_zero() -> bool:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0
