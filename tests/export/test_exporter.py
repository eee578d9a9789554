"""ExecuTorch export of toy-space models: runtime agreement, report fields, quantization, failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from lightning_nas.export import STAGES, ExportError, ExportReport, export_many, export_model

ARCH = {"width": 8, "kernel": 3, "depth": 2, "block0/op": "conv", "block1/op": "skip", "block2/op": "conv"}
SHAPE = (1, 1, 8, 8)


def _model(space: Any) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return space.build(ARCH)


def _inputs(n: int, seed: int) -> torch.Tensor:
    return torch.randn((n, *SHAPE[1:]), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def cache() -> dict[str, Any]:
    return {}


@pytest.fixture
def float_export(toy_space: Any, tmp_path_factory: pytest.TempPathFactory, cache: dict[str, Any]) -> Any:
    if "float" not in cache:
        model = _model(toy_space).train()
        report = export_model(model, _inputs(1, 0), tmp_path_factory.mktemp("float") / "toy.pte")
        cache["float"] = (model, report, model.training)
    return cache["float"]


def test_pte_runs_in_executorch_runtime_like_eager(float_export: tuple[nn.Module, ExportReport, bool]) -> None:
    from executorch.runtime import Runtime

    model, report, _ = float_export
    method = Runtime.get().load_program(report.path).load_method("forward")
    model.eval()
    with torch.no_grad():
        for x in _inputs(4, 1).split(1):
            torch.testing.assert_close(method.execute([x])[0], model(x), atol=1e-4, rtol=1e-4)
    assert report.max_abs_diff < 1e-4


def test_report_fields_are_sane(float_export: tuple[nn.Module, ExportReport, bool]) -> None:
    _, report, still_training = float_export
    assert still_training, "the caller's training flag must be restored"
    assert report.path.is_file() and report.file_bytes == report.path.stat().st_size > 0
    assert 0.0 < report.delegated_fraction <= 1.0
    assert 0 < report.delegated_ops <= report.total_ops
    assert report.total_ops - report.delegated_ops == len(report.non_delegated_ops)
    assert report.top1_agreement == 1.0 and report.check_samples == 16
    assert report.seconds > 0 and not report.quantized
    assert report.to_dict()["path"] == str(report.path)


@pytest.mark.parametrize(("pool", "replaced_by"), [(4, nn.Identity), (2, nn.AvgPool2d)])
def test_adaptive_pools_xnnpack_cannot_take_are_delegated_in_an_equivalent_form(
        tmp_path: Path, pool: int, replaced_by: type[nn.Module]) -> None:
    torch.manual_seed(0)  # a 4x4 map pooled to 4x4 (nothing to do) or to 2x2 (2x2 windows), then flattened
    model = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(pool),
                          nn.Flatten(), nn.Linear(4 * pool * pool, 3))
    from lightning_nas.export.exporter import _pools_xnnpack_runs

    swapped = _pools_xnnpack_runs(model.eval(), _inputs(1, 0))
    assert isinstance(swapped[2], replaced_by) and isinstance(model[2], nn.AdaptiveAvgPool2d)  # the caller's kept
    report = export_model(model, _inputs(1, 0), tmp_path / "pooled.pte")
    assert report.non_delegated_ops == () and report.max_abs_diff < 1e-5 and report.top1_agreement == 1.0
    global_pool = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert _pools_xnnpack_runs(global_pool, _inputs(1, 0)) is global_pool  # 1x1: XNNPACK takes it as it is


def test_quantized_export_agrees_on_top1(toy_space: Any, tmp_path: Path) -> None:
    calibration = [_inputs(8, 2), _inputs(8, 3)]
    report = export_model(_model(toy_space), _inputs(1, 0), tmp_path / "q.pte", quantize=True,
                          calibration=calibration, check_inputs=_inputs(16, 4))
    assert report.quantized and report.path.is_file()
    assert report.check_samples == 16
    assert report.top1_agreement >= 0.75
    assert 0.0 < report.max_abs_diff < 1.0  # int8 differs from float, but not wildly
    assert 0.0 < report.delegated_fraction <= 1.0


class _DataDependent(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) if x.sum() > 0 else -x.flatten(1)


@pytest.mark.parametrize("quantize", [False, True])
def test_untraceable_model_names_the_export_stage(tmp_path: Path, quantize: bool) -> None:
    with pytest.raises(ExportError) as info:
        export_model(_DataDependent(), _inputs(1, 0), tmp_path / "bad.pte", quantize=quantize)
    assert info.value.stage == "export"
    assert str(info.value).startswith("export failed:") and info.value.reason
    assert not (tmp_path / "bad.pte").exists()


@torch.library.custom_op("lightning_nas_test::double", mutates_args=())
def _double(x: torch.Tensor) -> torch.Tensor:
    return x * 2


@_double.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


class _CustomOp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _double(x).flatten(1)


def test_op_without_executorch_kernel_names_the_serialise_stage(tmp_path: Path) -> None:
    with pytest.raises(ExportError) as info:
        export_model(_CustomOp(), _inputs(1, 0), tmp_path / "custom.pte")
    assert info.value.stage == "serialise"
    assert "lightning_nas_test::double" in info.value.reason


def test_export_error_rejects_unknown_stage() -> None:
    assert STAGES == ("quantize", "export", "lower", "serialise", "runtime check")
    with pytest.raises(ValueError, match="unknown export stage"):
        ExportError("compile", "nope")


def test_export_many_records_failure_and_continues(toy_space: Any, tmp_path: Path) -> None:
    bad = {**ARCH, "width": 7}
    outcomes = export_many(toy_space, [bad, ARCH], tmp_path)
    assert [o.ok for o in outcomes] == [False, True]
    failed, done = outcomes
    assert failed.stage == "build" and "width" in (failed.reason or "") and failed.report is None
    assert failed.arch_id and failed.arch["width"] == 7
    assert done.report is not None and done.report.path == tmp_path / f"{done.arch_id}.pte"
    assert done.report.path.is_file() and done.stage is None
