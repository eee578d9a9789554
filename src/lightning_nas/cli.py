"""The Hydra application behind ``python -m lightning_nas`` and ``lightning-nas``."""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from lightning_nas.config import register_configs
from lightning_nas.evaluators.base import EvaluatorConfigError
from lightning_nas.run import ConfigError, run

__all__ = ["main"]

register_configs()


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def _app(cfg: DictConfig) -> float | None:
    try:
        summary = run(cfg)
    except (ConfigError, EvaluatorConfigError, FileNotFoundError) as error:  # one line, no traceback
        logging.getLogger("lightning_nas").error("%s", error)
        sys.stderr.write(f"lightning_nas: error: {error}\n")
        sys.exit(2)
    score = summary["best"]["score"]
    return float(score) if score is not None else None


def main() -> None:
    """Console entry point."""
    _app()
