"""``python -m lightning_nas.export arch=path/to/arch.json`` or ``run=<run folder>``: package one architecture.

When the architecture comes from a search run (``run=<folder>``, or an ``arch.json`` inside a run
folder), the run's ``config.yaml`` supplies the ``data`` and ``search_space`` settings and the run's
exported trained weights are loaded when it has them; explicit ``data...``/``search_space...``
overrides and ``weights=`` still win.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lightning_nas.arch import Architecture
from lightning_nas.cli_errors import compose_or_fail, fail, hydra_overrides
from lightning_nas.config import GROUP_SCHEMAS, ConfigError, build_node, register_configs
from lightning_nas.export.package import DataInfo, package_architecture
from lightning_nas.safe_load import load_state_dict_file

__all__ = ["ExportAppConfig", "export_from_config", "find_run", "main", "run_weights"]

log = logging.getLogger(__name__)

_GROUPS = ("data", "search_space")
_RUN_DEPTH = 3  # parents of the arch's folder searched for a run's config.yaml (covers export/<pkg>/code/)


@dataclass
class ExportAppConfig:
    """Settings of the export app (data and search_space are the usual groups).

    ``arch``: architecture JSON; ``run``: a search run's folder (its ``best/arch.json`` when ``arch``
    is not given); ``weights``: a state_dict file (default: the run's trained weights: its final model
    ``best/model.pt``, else an exported package's). Without weights the export stops unless ``untrained=true``
    (every file written then says the network is untrained).
    """

    data: Any = None
    search_space: Any = None
    arch: str | None = None
    run: str | None = None
    weights: str | None = None
    untrained: bool = False
    output_dir: str = "exported/${now:%Y-%m-%d_%H-%M-%S}"
    quantize: bool = False
    deploy: bool = True
    codegen: bool = True
    seed: int = 0


def _is_run(folder: Path) -> bool:
    """Whether ``folder/config.yaml`` is a search run's config (it has data and search_space)."""
    path = folder / "config.yaml"
    if not path.is_file():
        return False
    try:
        loaded = OmegaConf.load(path)
    except (OSError, OmegaConfBaseException, ValueError):
        return False
    return isinstance(loaded, DictConfig) and all(loaded.get(group) is not None for group in _GROUPS)


def find_run(arch: Path) -> Path | None:
    """The run folder holding ``arch`` (its folder or one of its first parents has the run's config.yaml)."""
    folder = arch.resolve().parent
    for candidate in [folder, *folder.parents][: _RUN_DEPTH + 1]:
        if _is_run(candidate):
            return candidate
    return None


def run_weights(run: Path, arch: Architecture) -> Path | None:
    """Trained weights of ``arch`` in the run: its final model (``best/model.pt``), else an exported package's."""
    from lightning_nas.results.final_model import final_model_path  # here: results <-> strategies import cycle

    final = final_model_path(run / "best", arch)
    if final is not None:
        return final
    for package in sorted((run / "export").glob(f"rank*_{arch.digest()}/package.json")):
        weights = package.parent / "code" / "weights.pt"
        try:
            trained = json.loads(package.read_text()).get("trained_weights")
        except (ValueError, AttributeError):  # not a package.json this library wrote: its weights are not used
            continue
        if trained and weights.is_file():
            return weights
    return None


def _locate(cfg: DictConfig) -> tuple[Path, Path | None]:
    """``(arch file, run folder or None)`` from ``cfg.arch`` and ``cfg.run``; ConfigError naming the key."""
    run = None
    if cfg.get("run"):
        run = Path(str(cfg.run))
        if not run.is_dir():
            raise ConfigError(f"run: no run folder at {run}")
        if not _is_run(run):
            raise ConfigError(f"run: {run} has no config.yaml with data and search_space (not a search run folder)")
    if cfg.get("arch"):
        path = Path(str(cfg.arch))
    elif run is not None:
        path = run / "best" / "arch.json"
    else:
        raise ConfigError("arch: give arch=path/to/arch.json or run=<search run folder>")
    if not path.is_file():
        key = "arch" if cfg.get("arch") else "run"
        raise ConfigError(f"{key}: no architecture file at {path}")
    return path, run if run is not None else find_run(path)


def _override_keys(overrides: Sequence[str]) -> list[str]:
    return [item.split("=", 1)[0].lstrip("+~") for item in overrides]


def _effective(cfg: DictConfig, run: Path | None, overrides: Sequence[str]) -> DictConfig:
    """``data`` and ``search_space`` to build: the run's, with the explicit ``overrides`` applied on top.

    Choosing another group option (``search_space=vit`` for a macro_convnet run) replaces the run's node;
    choosing the run's own option keeps its settings, so ``search_space=X search_space.key=v`` edits one key.
    """
    groups = {group: cfg[group] for group in _GROUPS}
    if run is not None:
        saved = OmegaConf.load(run / "config.yaml")
        assert isinstance(saved, DictConfig)  # _is_run checked it
        keys = _override_keys(overrides)
        for group in _GROUPS:
            if group in keys and cfg[group].get("_target_") != saved[group].get("_target_"):
                continue  # another data set / space chosen on the command line replaces the run's node
            node = OmegaConf.create(OmegaConf.to_container(saved[group], resolve=True))
            for key in (k for k in keys if k.startswith(f"{group}.")):
                value = OmegaConf.select(cfg, key)
                OmegaConf.update(node, key[len(group) + 1:],
                                 OmegaConf.to_container(value) if OmegaConf.is_config(value) else value, merge=False)
            groups[group] = node
    for group, node in groups.items():
        if node is None:
            raise ConfigError(f"{group}: not set; pass {group}=... or run=<search run folder>")
        _check_target(group, node, run)
    return OmegaConf.create({group: OmegaConf.to_container(node, resolve=True) for group, node in groups.items()})


def _allowed_targets(group: str) -> set[str]:
    """The classes export may build for ``group``: lightning_nas's registered data modules or search spaces."""
    from lightning_nas.data.base import DATAMODULES
    from lightning_nas.spaces.base import SPACES

    registry: Any = DATAMODULES if group == "data" else SPACES
    allowed = {f"{entry.__module__}.{entry.__qualname__}" for entry in map(registry.get, registry.names())}
    return allowed | {str(schema._target_) for schema in GROUP_SCHEMAS[group].values()}  # type: ignore[attr-defined]


def _check_target(group: str, node: Any, run: Path | None) -> None:
    """Refuse a ``_target_`` outside lightning_nas's registries before anything is imported or built."""
    target = node.get("_target_") if isinstance(node, DictConfig | dict) else None
    if target not in _allowed_targets(group):
        where = f" in {run / 'config.yaml'}" if run is not None else ""
        raise ConfigError(f"{group}._target_: {target!r}{where} is not a lightning_nas {group.replace('_', ' ')} "
                          f"(export builds only registered classes; pass {group}=<option> to choose one)")


def _prepare(cfg: DictConfig, overrides: Sequence[str]) -> tuple[Path, Path | None, Any, Architecture, Any,
                                                                 Path | None]:
    """``(arch file, run, datamodule, arch, model, weights file)``: everything but the packages; writes nothing."""
    path, run = _locate(cfg)
    groups = _effective(cfg, run, overrides)
    datamodule = build_node(groups, "data")
    space = build_node(groups, "search_space", input_shape=list(datamodule.input_shape),
                       num_classes=datamodule.num_classes)
    where = f" (from {run / 'config.yaml'})" if run is not None else ""
    try:
        arch = space.validate(Architecture.load(path))
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"arch: {path} does not fit search_space{where}: {error}") from error
    weights = Path(str(cfg.weights)) if cfg.get("weights") else (run_weights(run, arch) if run else None)
    if weights is not None and not weights.is_file():
        raise ConfigError(f"weights: no weights file at {weights}")
    if weights is None and not cfg.get("untrained", False):
        raise ConfigError(f"weights: no trained weights for {arch.digest()} (the run saves best/model.pt after its "
                          "final training); pass weights=<state_dict file>, or untrained=true to export an "
                          "untrained network")
    with torch.random.fork_rng():
        torch.manual_seed(int(cfg.seed))
        model = space.build(arch)
    if weights is not None:
        log.info("loading weights from %s", weights)
        _load_weights(model, weights)
    return path, run, datamodule, arch, model, weights


def _load_weights(model: torch.nn.Module, weights: Path) -> None:
    fix = "pass weights= a file saved with torch.save(model.state_dict()) for this architecture"
    state = load_state_dict_file(weights, "weights", fix)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ConfigError(f"weights: {weights} does not fit the architecture ({len(missing)} tensors missing, e.g. "
                          f"{missing[:1]}; {len(unexpected)} unexpected, e.g. {unexpected[:1]}) ({fix})")
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        raise ConfigError(f"weights: {weights} does not fit the architecture ({lines[-1][:200]}) ({fix})") from error


def export_from_config(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Build the architecture ``cfg`` names and write its packages; return the outcome as a dict.

    Args:
        cfg: the composed export config (:class:`ExportAppConfig`).
        overrides: the command-line overrides; those of ``data``/``search_space`` win over a run's config.
    """
    path, run, datamodule, arch, model, weights = _prepare(cfg, overrides)
    outcome = package_architecture(model, arch, Path(str(cfg.output_dir)), DataInfo.from_datamodule(datamodule),
                                   trained=weights is not None, quantize=bool(cfg.quantize), deploy=bool(cfg.deploy),
                                   codegen=bool(cfg.codegen))
    return {"arch": str(path), "run": str(run) if run else None, "weights": str(weights) if weights else None,
            **outcome.to_dict()}


ConfigStore.instance().store(name="lightning_nas_export_schema", node=ExportAppConfig)
register_configs()


@hydra.main(config_path="../conf", config_name="export", version_base="1.3")
def _app(cfg: DictConfig) -> None:
    try:
        result = export_from_config(cfg, list(HydraConfig.get().overrides.task))
    except (ConfigError, FileNotFoundError) as error:
        fail(error)
    print(json.dumps(result, indent=2), flush=True)  # the command's result
    if result["errors"]:
        sys.exit(1)


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: ``argv`` (default ``sys.argv[1:]``) are Hydra overrides and flags.

    The command line is composed and checked (files found, targets allowed, weights loadable) before
    Hydra creates the export folder, so a bad one ends with one line on stderr, exit 2, nothing written.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    parsed = hydra_overrides(args)
    if parsed is not None and not parsed[1]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _prepare(compose_or_fail("lightning_nas.conf", "export", parsed[0]), parsed[0])
        except (ConfigError, FileNotFoundError) as error:
            fail(error)
    sys.argv = [sys.argv[0], *args]
    _app()
