"""One DARTS search epoch of lightning_nas and of NNI 3.0's DARTS strategy, side by side.

Both sides search the same relaxed DARTS cell space (``DartsCellSpace``: same stem, cells,
reduction positions, channels and the eight ops of ``DARTS_OPS`` including ``none``, built from the
same op modules), on the same digits data (train half for weight steps, val half for architecture
steps), with the same batch size and number of steps, first-order, SGD weight steps (lr 0.025, weight
decay 3e-4, grad-norm clip 5) and Adam architecture steps (lr 3e-4). NNI's side is the model space
written with ``nni.nas.nn.pytorch.ModelSpace`` / ``LayerChoice`` (one shared label per edge and cell
kind, so alphas are shared by all cells of a kind as in ours), turned into a supernet by
``nni.nas.strategy.DARTS`` and trained by its ``DartsLightningModule`` through NNI's
``Classification`` evaluator (no ``NasExperiment``, so no NNI manager process). Differences left in:
NNI's ``Classification`` evaluator has no SGD momentum and no cosine schedule (ours: momentum 0.9,
cosine), and NNI evaluates the ``none`` op where ours skips it.

Measured per framework, in one process, with ``torch.set_num_threads(1)``:

* time per step: a Lightning callback times ``on_train_batch_start`` -> ``on_train_batch_end``
  (arch step + weight step); the first ``--warmup`` steps are skipped; the median is printed.
* peak memory: during the last ``--memory-steps`` steps (not timed), a ``TorchDispatchMode``
  tracker (``lightning_nas.hardware.profile._ActivationTracker``) counts the bytes of every tensor
  storage created by an op from its creation until it is freed: activations saved for backward,
  gradients, optimizer temporaries. Parameters and buffers are excluded, so the figure is the peak
  *extra* memory of one training step, not the process RSS. The maximum over those steps is printed.

Usage::

    python benchmarks/darts_vs_nni.py
    python benchmarks/darts_vs_nni.py --cells 5 --channels 8 --batch-size 32 --steps 12

If NNI is missing or fails to import/run, only our side runs, the failure is printed, and the
script exits 0.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lightning_nas.hardware.profile import _ActivationTracker

log = logging.getLogger("darts_vs_nni")

WEIGHT_LR = 0.025
WEIGHT_DECAY = 3e-4
ARCH_LR = 3e-4
GRAD_CLIP = 5.0


@dataclass
class Result:
    framework: str
    step_times: list[float]
    peak_bytes: int

    @property
    def median_s(self) -> float:
        return statistics.median(self.step_times) if self.step_times else float("nan")

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 2**20


class _StepProbe:
    """Times steps ``[warmup, steps - memory_steps)`` and tracks memory in the last ``memory_steps``."""

    def __init__(self, steps: int, warmup: int, memory_steps: int) -> None:
        self.steps, self.warmup, self.memory_steps = steps, warmup, memory_steps
        self.times: list[float] = []
        self.peak = 0
        self._start = 0.0
        self._tracker: _ActivationTracker | None = None

    def _is_memory_step(self, batch_idx: int) -> bool:
        return batch_idx >= self.steps - self.memory_steps

    def on_train_batch_start(self, trainer: Any, pl_module: nn.Module, batch: Any, batch_idx: int) -> None:
        if self._is_memory_step(batch_idx):
            ignored = {t.untyped_storage().data_ptr() for t in (*pl_module.parameters(), *pl_module.buffers())}
            self._tracker = _ActivationTracker(ignored, baseline=0)
            self._tracker.__enter__()
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: Any, pl_module: nn.Module, outputs: Any, batch: Any, batch_idx: int) -> None:
        elapsed = time.perf_counter() - self._start
        if self._tracker is not None:
            self._tracker.__exit__(None, None, None)
            self.peak = max(self.peak, self._tracker.peak)
            self._tracker = None
        elif batch_idx >= self.warmup:
            self.times.append(elapsed)


def _probe_callback(base: type, steps: int, warmup: int, memory_steps: int) -> Any:
    """A ``base`` (``lightning.Callback`` or ``pytorch_lightning.Callback``) with :class:`_StepProbe` hooks."""
    cls = type("StepProbe", (_StepProbe, base), {})
    return cls(steps, warmup, memory_steps)


def _trainer_kwargs(steps: int, root: str) -> dict[str, Any]:
    return {
        "max_epochs": 1,
        "limit_train_batches": steps,
        "limit_val_batches": 0,
        "num_sanity_val_steps": 0,
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": root,
    }


def _datamodule(batch_size: int) -> Any:
    from lightning_nas.data import DigitsDataModule

    return DigitsDataModule(batch_size=batch_size, val_fraction=0.5)


def run_ours(args: argparse.Namespace) -> Result:
    import lightning as L

    from lightning_nas.spaces import DartsCellSpace
    from lightning_nas.strategies.darts import BilevelDataModule, DartsModule

    torch.manual_seed(0)
    space = DartsCellSpace(input_shape=(1, 8, 8), num_classes=10, num_cells=args.cells, channels=args.channels)
    with tempfile.TemporaryDirectory() as root:
        module = DartsModule(
            space,
            epochs=1,
            order="first",
            weight_lr=WEIGHT_LR,
            weight_decay=WEIGHT_DECAY,
            arch_lr=ARCH_LR,
            grad_clip=GRAD_CLIP,
            output_dir=root,
        )
        probe = _probe_callback(L.Callback, args.steps, args.warmup, args.memory_steps)
        trainer = L.Trainer(callbacks=[probe], **_trainer_kwargs(args.steps, root))
        trainer.fit(module, datamodule=BilevelDataModule(_datamodule(args.batch_size)))
    return Result("lightning_nas", probe.times, probe.peak)


def _nni_space(args: argparse.Namespace) -> nn.Module:
    """The same relaxed DARTS cell network, written as an NNI 3.0 model space with shared LayerChoices."""
    from nni.nas.nn.pytorch import LayerChoice, ModelSpace

    from lightning_nas.spaces import DartsCellSpace
    from lightning_nas.spaces.cell_ops import CELL_OPS, DARTS_OPS

    space = DartsCellSpace(input_shape=(1, 8, 8), num_classes=10, num_cells=args.cells, channels=args.channels)

    class NNINode(nn.Module):
        """Node ``index``: the sum over predecessors of a LayerChoice over all DARTS ops (``none`` included)."""

        def __init__(self, index: int, channels: int, reduction: bool) -> None:
            super().__init__()
            kind = "reduce" if reduction else "normal"
            self.edges = nn.ModuleList(
                LayerChoice(
                    {name: CELL_OPS[name](channels, 2 if reduction and j < 2 else 1, False) for name in DARTS_OPS},
                    label=f"{kind}_node{index}_edge{j}",
                )
                for j in range(index + 2)
            )

        def forward(self, states: list[torch.Tensor], weights: Any = None) -> torch.Tensor:
            total = self.edges[0](states[0])
            for j in range(1, len(self.edges)):
                total = total + self.edges[j](states[j])
            return total

    class NNIDartsCellSpace(ModelSpace):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.network = space._network(lambda i, c, r: NNINode(i, c, r))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.network(x)

    return NNIDartsCellSpace()


def run_nni(args: argparse.Namespace) -> Result:
    import pytorch_lightning as pl
    from nni.nas.evaluator.pytorch import Classification, DataLoader
    from nni.nas.strategy import DARTS

    _quiet()
    torch.manual_seed(0)
    data = _datamodule(args.batch_size)
    data.prepare_data()
    data.setup("fit")
    train = DataLoader(
        data.train_dataset,
        batch_size=args.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    val = DataLoader(data.val_dataset, batch_size=args.batch_size, shuffle=False)

    model = _nni_space(args)
    strategy = DARTS(arc_learning_rate=ARCH_LR, gradient_clip_val=GRAD_CLIP)
    model = strategy.mutate_model(model)
    with tempfile.TemporaryDirectory() as root:
        probe = _probe_callback(pl.Callback, args.steps, args.warmup, args.memory_steps)
        evaluator = Classification(
            learning_rate=WEIGHT_LR,
            weight_decay=WEIGHT_DECAY,
            optimizer=torch.optim.SGD,
            train_dataloaders=train,
            val_dataloaders=val,
            num_classes=10,
            callbacks=[probe],
            **_trainer_kwargs(args.steps, root),
        )
        evaluator = strategy.mutate_evaluator(evaluator)
        evaluator.evaluate(model)
    return Result("nni 3.0", probe.times, probe.peak)


def _try_import_nni() -> str | None:
    """None when NNI 3.0's DARTS pieces import, else a message naming the failure."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import nni
            from nni.nas.evaluator.pytorch import Classification  # noqa: F401
            from nni.nas.nn.pytorch import LayerChoice, ModelSpace  # noqa: F401
            from nni.nas.strategy import DARTS  # noqa: F401
    except Exception as error:
        return f"NNI import failed: {type(error).__name__}: {error} (install with `pip install nni==3.0`)"
    if not str(getattr(nni, "__version__", "")).startswith("3."):
        return f"NNI {nni.__version__} found; this benchmark targets NNI 3.0"
    return None


def _table(results: list[Result], steps: int) -> str:
    rows = [f"{'framework':<14} {'steps':>5} {'timed':>5} {'median s/step':>14} {'peak MB':>9}"]
    for r in results:
        rows.append(f"{r.framework:<14} {steps:>5} {len(r.step_times):>5} {r.median_s:>14.4f} {r.peak_mb:>9.2f}")
    if len(results) == 2:
        ours, nni_ = results
        time_ratio = ours.median_s / nni_.median_s
        mem_ratio = ours.peak_bytes / nni_.peak_bytes if nni_.peak_bytes else float("nan")
        rows.append(f"{'ours / NNI':<14} {'':>5} {'':>5} {time_ratio:>14.3f} {mem_ratio:>9.3f}")
    return "\n".join(rows)


def _quiet() -> None:
    """Silence Lightning's and NNI's info logs and warnings (NNI resets logging when imported)."""
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning", "nni"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cells", type=int, default=5, help="cells in the stack (>= 3)")
    parser.add_argument("--channels", type=int, default=8, help="channels of the first cell")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=12, help="training steps of the (truncated) epoch")
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the timing")
    parser.add_argument("--memory-steps", type=int, default=2, help="last steps run under the memory tracker")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--skip-nni", action="store_true", help="run our side only")
    args = parser.parse_args(argv)
    if args.steps < args.warmup + args.memory_steps + 1:
        parser.error("--steps must exceed --warmup + --memory-steps")

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    _quiet()

    print(
        f"DARTS search, 1 epoch truncated to {args.steps} steps: cells={args.cells} channels={args.channels} "
        f"batch={args.batch_size} threads={args.threads}; first {args.warmup} steps untimed, "
        f"last {args.memory_steps} under the memory tracker (untimed)"
    )
    results = [run_ours(args)]
    failure = "skipped (--skip-nni)" if args.skip_nni else _try_import_nni()
    if failure is None:
        try:
            results.append(run_nni(args))
        except Exception:
            failure = "NNI DARTS run failed:\n" + traceback.format_exc()
    print(_table(results, args.steps))
    if failure is not None:
        print(f"NNI side not measured: {failure}")
    print(
        "peak MB: max bytes of tensor storages live at once during one training step "
        "(activations, gradients, temporaries; parameters and buffers excluded)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
