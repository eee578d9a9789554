"""A deploy package for ARM phones: ``.pte``, manifest, guide and an Android Kotlin snippet."""

from __future__ import annotations

import json
import logging
import platform
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lightning_nas.export.exporter import ExportReport, export_model
from lightning_nas.export.profiler import PteProfile, profile_pte

__all__ = ["MANIFEST_VERSION", "write_deploy_package"]

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1

_README = """# {title}

`model.pte` is an ExecuTorch program (XNNPACK delegate{quant}) for ARM phones.
Exported with ExecuTorch {et_version}; use the same runtime release on the phone.

## Input and output
- Input: one float32 tensor of shape `{shape}` (NCHW, batch 1, static shape).
- Normalise every pixel in [0, 1] per channel: `x = (pixel - mean[c]) / std[c]` with
  `mean = {mean}` and `std = {std}`.
- Output: `{num_labels}` logits; the predicted class is `labels[argmax(logits)]` (see `manifest.json`).

## Measured here (host CPU `{machine}`, {threads} thread(s); phones differ)
- latency: median {median:.3f} ms, p90 {p90:.3f} ms
- memory-planned buffers: {memory} bytes; file: {file_bytes} bytes
- {delegated:.0f}% of operators delegated to XNNPACK

## Android
1. Add the AAR: `implementation("org.pytorch:executorch-android:<version matching {et_version}>")`
   in `app/build.gradle.kts`.
2. Copy `model.pte` to `app/src/main/assets/`.
3. Use `android/MainActivity.kt`: it copies the asset to a file (`Module.load` needs a path),
   normalises the input, runs `forward` and maps the argmax to a label.

To try the model from a shell instead: `adb push model.pte /data/local/tmp/` and run ExecuTorch's
`executor_runner --model_path /data/local/tmp/model.pte` built for `arm64-v8a`.

Threads: on phones with big.LITTLE cores, one thread per performance core is usually fastest;
recent releases take a thread count in `Module.load(path, loadMode, numThreads)`.
"""

_KOTLIN = """package com.example.nasdeploy

import android.app.Activity
import android.os.Bundle
import android.util.Log
import java.io.File
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor

/** Minimal ExecuTorch classifier for the exported architecture (see README.md). */
class MainActivity : Activity() {{
  private val shape = longArrayOf({shape})
  private val mean = floatArrayOf({mean})
  private val std = floatArrayOf({std})
  private val labels = arrayOf({labels})
  private lateinit var module: Module

  override fun onCreate(savedInstanceState: Bundle?) {{
    super.onCreate(savedInstanceState)
    module = Module.load(assetFilePath("model.pte"))
    val pixels = FloatArray(shape.fold(1L) {{ acc, s -> acc * s }}.toInt())  // your image, CHW, in [0, 1]
    Log.i("NAS", "prediction: " + classify(pixels))
  }}

  /** Normalises CHW [0, 1] pixels, runs forward and returns the arg-max label. */
  fun classify(pixels: FloatArray): String {{
    val plane = (shape[2] * shape[3]).toInt()
    val input = FloatArray(pixels.size) {{ i -> (pixels[i] - mean[i / plane]) / std[i / plane] }}
    val outputs = module.forward(EValue.from(Tensor.fromBlob(input, shape)))
    val logits = outputs[0].toTensor().dataAsFloatArray
    return labels[logits.indices.maxByOrNull {{ logits[it] }} ?: 0]
  }}

  /** Module.load needs a file path: copy the asset to internal storage once. */
  private fun assetFilePath(name: String): String {{
    val file = File(filesDir, name)
    if (!file.exists()) {{
      assets.open(name).use {{ input -> file.outputStream().use {{ input.copyTo(it) }} }}
    }}
    return file.absolutePath
  }}
}}
"""


def _executorch_version() -> str:
    try:
        return version("executorch")
    except PackageNotFoundError:
        return "unknown"


def _per_channel(values: float | Sequence[float], channels: int, name: str) -> list[float]:
    listed = [float(values)] * channels if isinstance(values, int | float) else [float(v) for v in values]
    if len(listed) == 1:
        listed *= channels
    if len(listed) != channels:
        raise ValueError(f"{name} needs 1 or {channels} values, got {len(listed)}")
    if name == "std" and min(listed) <= 0:
        raise ValueError(f"std must be positive, got {listed}")
    return listed


def _kotlin_string(text: str) -> str:
    """A Kotlin string literal (JSON escapes, plus ``$`` so no template is expanded)."""
    return json.dumps(text).replace("$", "\\$")


def _num_outputs(model: nn.Module, example: Tensor) -> int:
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            return int(model(example).flatten(1).shape[1])
    finally:
        for module, training in flags:
            module.training = training


def _manifest(
    arch_json: Mapping[str, Any], shape: list[int], norm: tuple[list[float], list[float]],
    labels: list[str], report: ExportReport, profile: PteProfile,
) -> dict[str, Any]:
    return {
        "manifest_version": MANIFEST_VERSION,
        "model": "model.pte",
        "architecture": dict(arch_json),
        "input": {"shape": shape, "dtype": "float32", "layout": "NCHW", "range": [0.0, 1.0],
                  "mean": norm[0], "std": norm[1], "normalisation": "(x - mean[c]) / std[c]"},
        "labels": labels,
        "quantized": report.quantized,
        "file_bytes": report.file_bytes,
        "delegated_fraction": report.delegated_fraction,
        "non_delegated_ops": list(report.non_delegated_ops),
        "latency_ms": {"median": profile.median_ms, "p90": profile.p90_ms, "threads": profile.threads,
                       "repeats": profile.repeats, "measured_on": f"{platform.machine()} host CPU"},
        "planned_memory_bytes": profile.planned_memory_bytes,
        "export_check": {"max_abs_diff": report.max_abs_diff, "top1_agreement": report.top1_agreement,
                         "samples": report.check_samples},
        "executorch_version": _executorch_version(),
        "torch_version": torch.__version__,
    }


def _write_texts(out: Path, manifest: dict[str, Any], report: ExportReport, profile: PteProfile) -> None:
    shape, norm = manifest["input"]["shape"], manifest["input"]
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (out / "README.md").write_text(_README.format(
        title="lightning_nas model for ARM phones", quant=", int8" if report.quantized else "",
        et_version=manifest["executorch_version"], shape=shape, mean=norm["mean"], std=norm["std"],
        num_labels=len(manifest["labels"]), machine=platform.machine(), threads=profile.threads,
        median=profile.median_ms, p90=profile.p90_ms, memory=profile.planned_memory_bytes,
        file_bytes=report.file_bytes, delegated=100 * report.delegated_fraction,
    ))
    (out / "android").mkdir(exist_ok=True)
    (out / "android" / "MainActivity.kt").write_text(_KOTLIN.format(
        shape=", ".join(f"{s}L" for s in shape), mean=", ".join(f"{m}f" for m in norm["mean"]),
        std=", ".join(f"{s}f" for s in norm["std"]), labels=", ".join(_kotlin_string(x) for x in manifest["labels"]),
    ))


def write_deploy_package(
    model: nn.Module,
    arch_json: Mapping[str, Any],
    out_dir: str | Path,
    input_shape: Sequence[int],
    mean: float | Sequence[float],
    std: float | Sequence[float],
    labels: Sequence[str],
    quantize: bool = False,
    *,
    calibration: Iterable[Tensor] | None = None,
    repeats: int = 50,
) -> Path:
    """Write ``out_dir/deploy/`` with ``model.pte``, ``manifest.json``, ``README.md`` and ``android/MainActivity.kt``.

    Latency and planned memory in the manifest are measured here with :func:`profile_pte`
    (host CPU, one thread); they rank candidates but are not phone figures.

    Args:
        model: the plain network (e.g. ``space.build(arch)`` after training).
        arch_json: the architecture as a JSON-ready dict, stored in the manifest.
        out_dir: folder that receives ``deploy/``.
        input_shape: ``(channels, height, width)`` of one sample.
        mean: per-channel (or one shared) normalisation mean for inputs in [0, 1].
        std: per-channel (or one shared) normalisation std.
        labels: class names, one per model output.
        quantize: int8 PT2E quantization (pass ``calibration`` with real, normalised inputs).
        calibration: batches for quantization calibration.
        repeats: timed runs for the latency figures.

    Returns:
        The ``deploy`` folder.
    """
    shape = [1, *(int(s) for s in input_shape)]
    norm = (_per_channel(mean, shape[1], "mean"), _per_channel(std, shape[1], "std"))
    example = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    outputs = _num_outputs(model, example)
    if outputs != len(labels):
        raise ValueError(f"{len(labels)} labels given for {outputs} model outputs")
    out = Path(out_dir) / "deploy"
    out.mkdir(parents=True, exist_ok=True)
    report = export_model(model, example, out / "model.pte", quantize=quantize, calibration=calibration)
    profile = profile_pte(out / "model.pte", shape[1:], repeats=repeats, threads=1)
    manifest = _manifest(arch_json, shape, norm, [str(x) for x in labels], report, profile)
    _write_texts(out, manifest, report, profile)
    log.info("deploy package written to %s", out)
    return out
