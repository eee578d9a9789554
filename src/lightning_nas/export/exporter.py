"""Export a plain ``nn.Module`` to an ExecuTorch ``.pte`` lowered to XNNPACK, and check it.

The pipeline is ``torch.export.export`` -> ``to_edge_transform_and_lower`` with
:class:`XnnpackPartitioner` -> ``to_executorch`` -> ``.pte``; the written file is then loaded
by :class:`executorch.runtime.Runtime` and compared with eager PyTorch on a check batch.
Optional int8 post-training quantization uses the PT2E flow (``prepare_pt2e`` / calibration /
``convert_pt2e`` from ``torchao.quantization.pt2e``) with the XNNPACK quantizer (symmetric
per-channel weights, static per-tensor activations).

Every failure is raised as :class:`ExportError` naming the stage that failed.
"""

from __future__ import annotations

import copy
import functools
import logging
import operator
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

__all__ = ["STAGES", "ExportError", "ExportReport", "export_model"]

log = logging.getLogger(__name__)

#: Pipeline stages, in order; :attr:`ExportError.stage` is one of them.
STAGES = ("quantize", "export", "lower", "serialise", "runtime check")

_DEFAULT_CHECK_SAMPLES = 16
_REASON_CHARS = 400


class ExportError(RuntimeError):
    """Export of a model failed; ``stage`` names where (one of :data:`STAGES`).

    Args:
        stage: the pipeline stage that failed.
        reason: a one-line human-readable cause.
    """

    def __init__(self, stage: str, reason: str) -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown export stage {stage!r}; expected one of {STAGES}")
        self.stage = stage
        self.reason = reason
        super().__init__(f"{stage} failed: {reason}")


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_model` produced and how faithful the ``.pte`` is.

    ``delegated_fraction`` is ``delegated_ops / total_ops``, counted on the lowered edge
    program: every ``call_function`` node inside an XNNPACK-delegated subgraph counts as
    delegated, every ``call_function`` node left in the top-level graph (run by ExecuTorch's
    portable kernels) counts as not delegated; ``operator.getitem`` and the
    ``executorch_call_delegate`` calls themselves are bookkeeping and not counted, while
    quantize/dequantize nodes are. ``max_abs_diff`` and ``top1_agreement`` compare the
    ExecuTorch runtime with the eager float model, one batch-1 sample at a time.
    ``seconds`` covers quantize + export + lower + serialise (not the runtime check).
    """

    path: Path
    file_bytes: int
    seconds: float
    delegated_fraction: float
    delegated_ops: int
    total_ops: int
    non_delegated_ops: tuple[str, ...]
    max_abs_diff: float
    top1_agreement: float
    check_samples: int
    quantized: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the path as a string, tuples as lists)."""
        data = asdict(self)
        data["path"] = str(self.path)
        data["non_delegated_ops"] = list(self.non_delegated_ops)
        return data


@contextmanager
def _stage(name: str) -> Iterator[None]:
    """Re-raise any exception inside as :class:`ExportError` for stage ``name``."""
    try:
        yield
    except ExportError:
        raise
    except Exception as exc:
        message = " ".join(str(exc).split())[:_REASON_CHARS] or "(no message)"
        raise ExportError(name, f"{type(exc).__name__}: {message}") from exc


@contextmanager
def _frozen(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode under ``no_grad``; every submodule's training flag is restored."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        for module, training in flags:
            module.training = training


def _on_cpu(model: nn.Module) -> nn.Module:
    """``model`` itself when it lives on the CPU, else a CPU copy (the original is untouched)."""
    tensors = [*model.parameters(), *model.buffers()]
    if all(t.device.type == "cpu" for t in tensors):
        return model
    return copy.deepcopy(model).cpu()


def _samples(batches: Iterable[Tensor], limit: int | None = None) -> list[Tensor]:
    """Split batches into batch-1 float CPU samples (at most ``limit``)."""
    out: list[Tensor] = []
    for batch in batches:
        for sample in batch.detach().float().cpu().split(1):
            if limit is not None and len(out) >= limit:
                return out
            out.append(sample.contiguous())
    return out


_BATCH_NORM = torch.ops.aten.batch_norm.default
_CONVS = {torch.ops.aten.conv1d.default, torch.ops.aten.conv2d.default, torch.ops.aten.conv3d.default,
          torch.ops.aten.convolution.default}


def _attr(gm: torch.fx.GraphModule, node: Any) -> Tensor | None:
    if node is None:
        return None
    return cast(Tensor, functools.reduce(getattr, str(node.target).split("."), gm))


def _affine_batch_norms(gm: torch.fx.GraphModule) -> int:
    """Rewrite eval batch norms that do not follow a convolution as ``x * scale + shift``.

    ``prepare_pt2e`` folds conv -> batch norm pairs itself; any batch norm left over makes
    ``convert_pt2e`` trace ~100 QAT fold patterns (about a minute on two cores) although
    nothing is folded for post-training quantization. Returns the number rewritten.
    """
    rewritten = 0
    for node in list(gm.graph.nodes):
        if node.target is not _BATCH_NORM or getattr(node.args[0], "target", None) in _CONVS:
            continue
        x, weight, bias, mean, var = (node.args[0], *(_attr(gm, a) for a in node.args[1:5]))
        assert mean is not None and var is not None, "batch norm without running statistics"
        scale = (weight if weight is not None else 1.0) / torch.sqrt(var + float(node.args[7]))
        shift = (bias if bias is not None else 0.0) - mean * scale
        view = (1, -1, *[1] * (x.meta["val"].dim() - 2))
        gm.register_buffer(f"_bn_scale_{rewritten}", scale.reshape(view).detach().clone())
        gm.register_buffer(f"_bn_shift_{rewritten}", shift.reshape(view).detach().clone())
        with gm.graph.inserting_before(node):
            scale_node = gm.graph.get_attr(f"_bn_scale_{rewritten}")
            shift_node = gm.graph.get_attr(f"_bn_shift_{rewritten}")
            scaled = gm.graph.call_function(torch.ops.aten.mul.Tensor, (x, scale_node))
            moved = gm.graph.call_function(torch.ops.aten.add.Tensor, (scaled, shift_node))
        node.replace_all_uses_with(moved)
        gm.graph.erase_node(node)
        rewritten += 1
    gm.recompile()
    return rewritten


def _quantize(model: nn.Module, example: Tensor, calibration: Sequence[Tensor]) -> nn.Module:
    """Int8 PT2E post-training quantization for XNNPACK, calibrated on ``calibration``."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    with _stage("export"):
        graph = torch.export.export(model, (example,)).module()
    if _affine_batch_norms(graph):  # re-export so the new nodes carry shape metadata
        graph = torch.export.export(graph, (example,)).module()
    class _PtqQuantizer(XNNPACKQuantizer):
        # The QAT conv-bn patterns cannot match here (prepare_pt2e folds conv -> bn first and
        # _affine_batch_norms removed the rest) but cost ~12 pattern traces to look for.
        SUPPORTED_PATTERNS = [p for p in XNNPACKQuantizer.SUPPORTED_PATTERNS if not p.is_qat]

    quantizer = _PtqQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(graph, quantizer)
    for sample in calibration:
        prepared(sample)
    return convert_pt2e(prepared)


def _pools_xnnpack_runs(model: nn.Module, example: Tensor) -> nn.Module:
    """``model``, or a copy in which each adaptive average pool XNNPACK does not take (any output but 1x1) is
    replaced by the same computation it does take: nothing where the map already has the output size (a
    4x4 map "pooled" to 4x4 before a flattening classifier), a fixed average pool where the size divides
    evenly. Left outside the delegate, such a pool runs as a portable op and splits the graph in two."""
    pools: dict[str, tuple[int, int]] = {}  # the pools to look at: name -> output size
    for name, module in model.named_modules():
        if name and type(module) is nn.AdaptiveAvgPool2d:
            out = module.output_size
            out_h, out_w = (out, out) if isinstance(out, int) or out is None else out
            if out_h is not None and out_w is not None and (out_h, out_w) != (1, 1):
                pools[name] = (out_h, out_w)
    if not pools:  # no such pool: no forward pass
        return model
    seen: dict[str, set[tuple[int, ...]]] = {}

    def record(name: str) -> Any:
        return lambda _module, inputs, _output: seen.setdefault(name, set()).add(tuple(inputs[0].shape[-2:]))

    hooks = [model.get_submodule(name).register_forward_hook(record(name)) for name in pools]
    try:
        with torch.no_grad():
            model(example)
    except Exception:  # the export stage reports a model that does not run
        return model
    finally:
        for hook in hooks:
            hook.remove()
    swaps: dict[str, nn.Module] = {}
    for name, sizes in seen.items():
        if len(sizes) != 1:  # a pool used on maps of several sizes stays as it is
            continue
        (h, w), = sizes
        out_h, out_w = pools[name]
        if (h, w) == (out_h, out_w):
            swaps[name] = nn.Identity()
        elif h % out_h == 0 and w % out_w == 0:
            swaps[name] = nn.AvgPool2d((h // out_h, w // out_w))
    if not swaps:
        return model
    copied = copy.deepcopy(model)
    for name, replacement in swaps.items():
        copied.set_submodule(name, replacement)
    return copied


def _is_counted(node: torch.fx.Node) -> bool:
    from executorch.exir.delegate import executorch_call_delegate

    return node.op == "call_function" and node.target not in (operator.getitem, executorch_call_delegate)


def _op_name(node: torch.fx.Node) -> str:
    return str(getattr(node.target, "__name__", node.target))


def _delegation(graph_module: torch.fx.GraphModule) -> tuple[int, list[str]]:
    """``(ops inside delegated subgraphs, names of ops left outside)`` of a lowered graph."""
    from executorch.exir.lowered_backend_module import LoweredBackendModule

    delegated, outside = 0, []
    for node in graph_module.graph.nodes:
        target = getattr(graph_module, str(node.target), None) if node.op == "get_attr" else None
        if isinstance(target, LoweredBackendModule):
            delegated += sum(_is_counted(n) for n in target.original_module.graph.nodes)
        elif _is_counted(node):
            outside.append(_op_name(node))
    return delegated, outside


def _lower(model: nn.Module, example: Tensor) -> tuple[Any, int, list[str]]:
    """Export and lower to XNNPACK: ``(EdgeProgramManager, delegated op count, ops left outside)``."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    with _stage("export"):
        program = torch.export.export(model, (example,))
    with _stage("lower"):
        edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        delegated, outside = _delegation(edge.exported_program().graph_module)
    return edge, delegated, outside


def _serialise(edge: Any, path: Path) -> None:
    with _stage("serialise"):
        executorch_program = edge.to_executorch()
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as file:
            executorch_program.write_to_file(file)


def _runtime_check(path: Path, model: nn.Module, samples: Sequence[Tensor]) -> tuple[float, float]:
    """``(max |pte - eager|, top-1 agreement)`` over ``samples`` run through the ExecuTorch runtime."""
    from executorch.runtime import Runtime

    with _stage("runtime check"):
        method = Runtime.get().load_program(path).load_method("forward")
        if method is None:
            raise RuntimeError("the program has no 'forward' method")
        max_diff, agree = 0.0, 0
        for sample in samples:
            expected = model(sample)
            actual = method.execute([sample])[0]
            if tuple(actual.shape) != tuple(expected.shape):
                raise RuntimeError(f"output shape {tuple(actual.shape)} != eager {tuple(expected.shape)}")
            if not torch.isfinite(actual).all():
                raise RuntimeError("the runtime produced non-finite outputs")
            max_diff = max(max_diff, float((actual - expected).abs().max()))
            agree += int(torch.equal(actual.flatten(1).argmax(1), expected.flatten(1).argmax(1)))
    return max_diff, agree / len(samples)


def _check_samples(example: Tensor, calibration: list[Tensor], check_inputs: Tensor | None) -> list[Tensor]:
    if check_inputs is not None:
        return _samples([check_inputs])
    if calibration:
        return calibration[:_DEFAULT_CHECK_SAMPLES]
    generator = torch.Generator().manual_seed(0)  # never touches the global RNG
    noise = torch.randn((_DEFAULT_CHECK_SAMPLES - 1, *example.shape[1:]), generator=generator)
    return [example, *_samples([noise])]


def export_model(
    model: nn.Module,
    example_input: Tensor,
    path: str | Path,
    quantize: bool = False,
    calibration: Iterable[Tensor] | None = None,
    *,
    check_inputs: Tensor | None = None,
) -> ExportReport:
    """Export ``model`` to an XNNPACK-delegated ExecuTorch ``.pte`` at ``path`` and verify it.

    The model is exported frozen (eval mode, no grad; training flags restored afterwards)
    with static batch-1 shapes; a CPU copy is used when it lives elsewhere.

    Args:
        model: a plain module (no ``lightning_nas`` choice modules inside).
        example_input: one input with its batch dimension; only its first sample is used.
        path: where the ``.pte`` is written (parent folders are created).
        quantize: int8 PT2E quantization with the XNNPACK quantizer before lowering.
        calibration: batches for quantization calibration (every sample is run); without them
            the check batch calibrates, which a warning points out. Also the default check batch.
        check_inputs: batch compared between runtime and eager; default the first 16
            calibration samples, else ``example_input`` plus 15 seeded Gaussian samples.

    Raises:
        ExportError: naming the stage (``quantize``, ``export``, ``lower``, ``serialise``,
            ``runtime check``) and the reason.
    """
    if example_input.dim() < 1 or example_input.shape[0] < 1:
        raise ValueError(f"example_input needs a non-empty batch dimension, got {tuple(example_input.shape)}")
    path = Path(path)
    example = _samples([example_input], limit=1)[0]
    calib = _samples(calibration) if calibration is not None else []
    samples = _check_samples(example, calib, check_inputs)
    eager = _on_cpu(model)
    start = time.perf_counter()
    with _frozen(eager):
        to_lower = _pools_xnnpack_runs(eager, example)
        if quantize:
            if not calib:
                log.warning("quantizing without calibration data: calibrating on the check batch")
            with _stage("quantize"):
                to_lower = _quantize(to_lower, example, calib or samples)
        edge, delegated, outside = _lower(to_lower, example)
        _serialise(edge, path)
        seconds = time.perf_counter() - start
        max_diff, top1 = _runtime_check(path, eager, samples)
    total = delegated + len(outside)
    report = ExportReport(
        path=path, file_bytes=path.stat().st_size, seconds=seconds,
        delegated_fraction=delegated / total if total else 0.0, delegated_ops=delegated, total_ops=total,
        non_delegated_ops=tuple(outside), max_abs_diff=max_diff, top1_agreement=top1,
        check_samples=len(samples), quantized=quantize,
    )
    log.info("exported %s: %d bytes in %.2fs, %.0f%% delegated, max diff %.2e, top-1 %.2f",
             path, report.file_bytes, seconds, 100 * report.delegated_fraction, max_diff, top1)
    return report
