"""``python -m lightning_nas.export arch=path/to/arch.json``: package one architecture for phones and as code."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from lightning_nas.arch import Architecture
from lightning_nas.config import register_configs
from lightning_nas.export.package import DataInfo, package_architecture
from lightning_nas.run import ConfigError, build_node

__all__ = ["ExportAppConfig", "export_from_config", "main"]

log = logging.getLogger(__name__)


@dataclass
class ExportAppConfig:
    """Settings of the export app (data and search_space are the usual groups)."""

    data: Any = MISSING
    search_space: Any = MISSING
    arch: str = MISSING
    weights: str | None = None
    output_dir: str = "exported/${now:%Y-%m-%d_%H-%M-%S}"
    quantize: bool = False
    deploy: bool = True
    codegen: bool = True
    seed: int = 0


def export_from_config(cfg: DictConfig) -> dict[str, Any]:
    """Build the architecture in ``cfg.arch`` (with ``cfg.weights`` if given) and write its packages."""
    path = Path(str(cfg.arch))
    if not path.is_file():
        raise ConfigError(f"arch: no architecture file at {path}")
    datamodule = build_node(cfg, "data")
    space = build_node(cfg, "search_space", input_shape=list(datamodule.input_shape),
                       num_classes=datamodule.num_classes)
    try:
        arch = space.validate(Architecture.load(path))
    except ValueError as error:
        raise ConfigError(f"arch: {path} does not fit search_space: {error}") from error
    with torch.random.fork_rng():
        torch.manual_seed(int(cfg.seed))
        model = space.build(arch)
    if cfg.weights:
        model.load_state_dict(torch.load(str(cfg.weights), weights_only=True))
    outcome = package_architecture(model, arch, Path(str(cfg.output_dir)), DataInfo.from_datamodule(datamodule),
                                   trained=bool(cfg.weights), quantize=bool(cfg.quantize), deploy=bool(cfg.deploy),
                                   codegen=bool(cfg.codegen))
    return outcome.to_dict()


ConfigStore.instance().store(name="lightning_nas_export_schema", node=ExportAppConfig)
register_configs()


@hydra.main(config_path="../conf", config_name="export", version_base="1.3")
def _app(cfg: DictConfig) -> None:
    try:
        result = export_from_config(cfg)
    except (ConfigError, FileNotFoundError) as error:
        sys.stderr.write(f"lightning_nas.export: error: {error}\n")
        sys.exit(2)
    print(json.dumps(result, indent=2), flush=True)  # the command's result
    if result["errors"]:
        sys.exit(1)


def main() -> None:
    """Console entry point."""
    _app()
