"""The Hydra application behind ``python -m lightning_nas`` and ``lightning-nas``.

:func:`main` composes the config and runs every check of :func:`lightning_nas.run.check` before
handing over to Hydra, so a bad command line ends with one line on stderr, exit status 2 and
nothing written (Hydra would otherwise create the run folder first).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import hydra
from omegaconf import DictConfig

from lightning_nas.cli_errors import compose_or_fail, fail, hydra_overrides
from lightning_nas.config import ConfigError, register_configs
from lightning_nas.evaluators.base import EvaluatorConfigError
from lightning_nas.run import check, run
from lightning_nas.search import ResumeError

__all__ = ["main", "precheck"]

register_configs()


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def _app(cfg: DictConfig) -> float | None:
    try:
        summary = run(cfg)
    except (ConfigError, EvaluatorConfigError, FileNotFoundError) as error:  # one line, no traceback
        fail(error)
    except ResumeError as error:
        fail(f"resume: {error} (resume with the run's own settings, or choose another output_dir)")
    score = summary["best"]["score"]
    return float(score) if score is not None else None


def precheck(overrides: Sequence[str]) -> None:
    """Compose ``overrides`` and run the pre-search checks without writing anything; ConfigError if one fails."""
    import logging
    import warnings

    cfg = compose_or_fail("lightning_nas.conf", "config", overrides)
    output_dir = Path(str(cfg.output_dir)) if cfg.get("output_dir") else None  # None: a new dated folder
    root = logging.getLogger()
    quiet = logging.StreamHandler(sys.stdout) if not root.handlers else None  # keep stderr for the error alone
    if quiet is not None:
        root.addHandler(quiet)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check(cfg, output_dir)
    finally:
        if quiet is not None:
            root.removeHandler(quiet)


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: ``argv`` (default ``sys.argv[1:]``) are Hydra overrides and flags."""
    args = list(sys.argv[1:] if argv is None else argv)
    parsed = hydra_overrides(args)
    if parsed is not None and not parsed[1]:  # a single run: check it all first (a sweep checks each job)
        try:
            precheck(parsed[0])
        except (ConfigError, FileNotFoundError) as error:
            fail(error)
    sys.argv = [sys.argv[0], *args]
    _app()
