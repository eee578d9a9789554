"""The deploy package: model, manifest, guide and Android snippet."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import torch

from lightning_nas.arch import Architecture
from lightning_nas.export import write_deploy_package

ARCH = Architecture({"width": 4, "kernel": 3, "depth": 1, "block0/op": "conv", "block1/op": "skip",
                     "block2/op": "skip"})
LABELS = [f"digit {i}" for i in range(9)] + ["$nine"]


def test_deploy_package_has_every_file_and_a_valid_manifest(toy_space: Any, tmp_path: Path) -> None:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = toy_space.build(ARCH)
    out = write_deploy_package(model, ARCH.to_dict(), tmp_path, (1, 8, 8), mean=0.5, std=[0.25], labels=LABELS,
                               repeats=10)
    assert out == tmp_path / "deploy"
    for name in ("model.pte", "manifest.json", "README.md", "android/MainActivity.kt"):
        assert (out / name).is_file(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"] == "model.pte" and manifest["architecture"] == ARCH.to_dict()
    assert manifest["input"]["shape"] == [1, 1, 8, 8]
    assert manifest["input"]["mean"] == [0.5] and manifest["input"]["std"] == [0.25]
    assert manifest["labels"] == LABELS and manifest["quantized"] is False
    assert 0 < manifest["latency_ms"]["median"] <= manifest["latency_ms"]["p90"]
    assert manifest["planned_memory_bytes"] > 0
    assert manifest["file_bytes"] == (out / "model.pte").stat().st_size
    assert 0 < manifest["delegated_fraction"] <= 1
    assert manifest["executorch_version"] == version("executorch")
    assert manifest["export_check"]["top1_agreement"] == 1.0
    kotlin = (out / "android" / "MainActivity.kt").read_text()
    for api in ("Module.load(", "EValue.from(", "Tensor.fromBlob(", "module.forward(", "dataAsFloatArray"):
        assert api in kotlin, api
    assert '"\\$nine"' in kotlin and "longArrayOf(1L, 1L, 8L, 8L)" in kotlin
    assert "[1, 1, 8, 8]" in (out / "README.md").read_text()


def test_label_count_must_match_the_outputs(toy_space: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="3 labels given for 10 model outputs"):
        write_deploy_package(toy_space.build(ARCH), ARCH.to_dict(), tmp_path, (1, 8, 8), 0.5, 0.25, ["a", "b", "c"])
    assert not (tmp_path / "deploy").exists()
