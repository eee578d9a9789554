"""Package one chosen architecture: the ExecuTorch deploy folder and the standalone code package."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from lightning_nas.data import DATAMODULES
from lightning_nas.export.codegen import generate_package
from lightning_nas.export.deploy import write_deploy_package

__all__ = ["UNTRAINED_NOTE", "DataInfo", "PackageOutcome", "package_architecture"]

log = logging.getLogger(__name__)

UNTRAINED_NOTE = ("UNTRAINED: these weights are a random initialisation (exported with untrained=true); "
                  "its predictions are meaningless until it is trained")


@dataclass(frozen=True)
class DataInfo:
    """What a package needs to know about the data: shapes, normalisation, labels, data module name."""

    name: str
    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]

    @classmethod
    def from_datamodule(cls, datamodule: Any) -> DataInfo:
        """The data module's facts; its name is its registry name (``digits`` for unregistered ones)."""
        name = next((n for n in DATAMODULES.names() if DATAMODULES.get(n) is type(datamodule)), "digits")
        return cls(name, tuple(datamodule.input_shape), tuple(datamodule.mean), tuple(datamodule.std),
                   tuple(str(c) for c in datamodule.class_names))


@dataclass
class PackageOutcome:
    """Where the packages went, and why a part failed (a failure never raises)."""

    out_dir: Path
    deploy_dir: Path | None = None
    code_dir: Path | None = None
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {"out_dir": str(self.out_dir), "deploy": str(self.deploy_dir or ""), "code": str(self.code_dir or ""),
                "errors": self.errors}


def package_architecture(model: nn.Module, arch: Mapping[str, Any], out_dir: str | Path, data: DataInfo,
                         trained: bool, quantize: bool = False, deploy: bool = True, codegen: bool = True,
                         repeats: int = 30) -> PackageOutcome:
    """Write ``out_dir/deploy`` (``.pte`` + manifest + Android snippet) and ``out_dir/code`` (standalone package).

    Args:
        model: the plain network; its weights go into both packages.
        arch: the architecture (label -> choice), stored with the packages.
        out_dir: destination folder.
        data: shapes, normalisation and labels of the data it was searched on.
        trained: whether ``model`` holds trained weights (recorded in ``package.json``).
        quantize: int8 PT2E quantization of the ``.pte``.
        deploy: write the ExecuTorch deploy folder.
        codegen: write the standalone code package.
        repeats: timed runs for the deploy manifest's latency figures.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    outcome = PackageOutcome(out)
    model = model.eval()
    arch_json = dict(arch)
    if deploy:
        try:
            outcome.deploy_dir = write_deploy_package(model, arch_json, out, data.input_shape, data.mean, data.std,
                                                      data.class_names, quantize=quantize, repeats=repeats)
        except Exception as error:  # reported per architecture, never a crash of the search
            outcome.errors["deploy"] = f"{type(error).__name__}: {error}"
            log.warning("deploy package for %s failed: %s", out.name, outcome.errors["deploy"])
    if codegen:
        try:
            outcome.code_dir = generate_package(model, arch_json, out / "code", data.input_shape,
                                                len(data.class_names), data=data.name, class_names=data.class_names,
                                                mean=data.mean, std=data.std, state_dict=model.state_dict(),
                                                trained=trained)
        except Exception as error:
            outcome.errors["code"] = f"{type(error).__name__}: {error}"
            log.warning("code package for %s failed: %s", out.name, outcome.errors["code"])
    info: dict[str, Any] = {"arch": arch_json, "trained_weights": trained, **outcome.to_dict()}
    if not trained:
        info["warning"] = UNTRAINED_NOTE
        _mark_untrained(outcome)
    (out / "package.json").write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
    return outcome


def _mark_untrained(outcome: PackageOutcome) -> None:
    """Say in the deploy manifest that the network is untrained (``code/README.md`` says so itself)."""
    manifest = (outcome.deploy_dir / "manifest.json") if outcome.deploy_dir is not None else None
    if manifest is not None and manifest.is_file():
        loaded = json.loads(manifest.read_text())
        if isinstance(loaded, dict):
            loaded.update({"trained_weights": False, "warning": UNTRAINED_NOTE})
            manifest.write_text(json.dumps(loaded, indent=2, sort_keys=True) + "\n")
