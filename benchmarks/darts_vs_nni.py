"""DARTS on the NAS-Bench-201 space: lightning_nas against NNI 3.0, time per step and peak RSS, in one run.

Setting (both sides): the NB-201 space with C=16 and 5 cells per stage, Fashion-MNIST 28x28
(``FashionMNISTDataModule(max_train_samples=512, max_val_samples=512)``), batch 64, first order,
SGD weight steps (lr 0.025, weight decay 3e-4, grad-norm clip 5) and Adam architecture steps
(lr 3e-4). Ours: ``DartsModule`` + ``BilevelDataModule`` over ``NB201Space.relaxed()``. NNI's:
``nni.nas.hub.pytorch.NasBench201`` (its own space; its stem takes 3 channels, so the gray images
are broadcast to 3) turned into a supernet by ``nni.nas.strategy.DARTS`` and trained by its
``DartsLightningModule`` through its ``Classification`` evaluator (no ``NasExperiment``).
Our side also runs PC-DARTS (K=4, with and without activation checkpointing) and second-order DARTS
(central-difference Hessian-vector product as in DARTS, and ``hessian_difference="forward"``).

Every run is a separate child process, so its peak RSS (``ru_maxrss``: the whole process, imports
included; about 1 GiB of it is importing torch and Lightning) is its own, and "training MiB" is that
peak minus the RSS when training started (what the search itself adds). Runs are interleaved round
by round (ours, NNI, ours, NNI, ...) so that load on a shared machine hits both sides alike. Time
per step: a callback times ``on_train_batch_start`` -> ``on_train_batch_end`` (architecture step +
weight step) after ``--warmup`` steps; per run the median, over rounds the minimum, both in wall
time and in process CPU time (with one torch thread the CPU time is the work done, whatever else
loads a shared machine: the ratios to trust there). Memory: the minimum over rounds.

Usage::

    python benchmarks/darts_vs_nni.py                  # NNI side needs `pip install nni==3.0`
    python benchmarks/darts_vs_nni.py --rounds 1 --steps 5

Where NNI is missing or fails, its side is reported as not measured and the script exits 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

WEIGHT_LR, WEIGHT_DECAY, ARCH_LR, GRAD_CLIP = 0.025, 3e-4, 3e-4, 5.0
RUNS = ("ours", "nni", "ours_pc4", "ours_pc4_ckpt", "ours_second", "ours_second_fwd")
LABELS = {"ours": "lightning_nas DARTS", "nni": "NNI 3.0 DARTS", "ours_pc4": "lightning_nas PC-DARTS K=4",
          "ours_pc4_ckpt": "  + activation checkpointing", "ours_second": "lightning_nas DARTS 2nd order",
          "ours_second_fwd": "  forward-difference HVP"}


@dataclass
class Result:
    run: str
    step_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    step_mib: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def time(self) -> float:
        return min(self.step_s) if self.step_s else float("nan")

    @property
    def cpu(self) -> float:
        return min(self.cpu_s) if self.cpu_s else float("nan")

    @property
    def rss(self) -> float:
        return min(self.rss_mib) if self.rss_mib else float("nan")

    @property
    def step_memory(self) -> float:
        return min(self.step_mib) if self.step_mib else float("nan")


def _current_rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


class _StepTimer:
    """Times training steps from ``warmup`` on (mixed into a Lightning ``Callback`` class)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.times, self.cpu_times, self.rss_before = warmup, [], [], 0.0
        self._start = self._cpu_start = 0.0

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.rss_before = _current_rss_mib()

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self._start, self._cpu_start = time.perf_counter(), time.process_time()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx >= self.warmup:
            self.times.append(time.perf_counter() - self._start)
            self.cpu_times.append(time.process_time() - self._cpu_start)


def _timer(base: type, warmup: int) -> Any:
    return type("StepTimer", (_StepTimer, base), {})(warmup)


def _trainer_kwargs(steps: int, root: str) -> dict[str, Any]:
    return {"max_epochs": 1, "limit_train_batches": steps, "limit_val_batches": 0, "num_sanity_val_steps": 0,
            "accelerator": "cpu", "devices": 1, "logger": False, "enable_checkpointing": False,
            "enable_progress_bar": False, "enable_model_summary": False, "default_root_dir": root}


def _datamodule(batch_size: int) -> Any:
    from lightning_nas.data import FashionMNISTDataModule

    return FashionMNISTDataModule(batch_size=batch_size, max_train_samples=512, max_val_samples=512)


def run_ours(args: argparse.Namespace, partial: int, order: str, checkpointing: bool,
             hessian_difference: str = "central") -> Any:
    import lightning as L

    from lightning_nas.spaces.nb201 import NB201Space
    from lightning_nas.strategies.darts import BilevelDataModule, DartsModule

    torch.manual_seed(0)
    data = _datamodule(args.batch_size)
    space = NB201Space(data.input_shape, data.num_classes, cells_per_stage=args.cells, channels=args.channels)
    with tempfile.TemporaryDirectory() as root:
        module = DartsModule(space, epochs=1, order=order, partial_channels=partial,  # type: ignore[arg-type]
                             weight_lr=WEIGHT_LR, weight_decay=WEIGHT_DECAY, arch_lr=ARCH_LR, grad_clip=GRAD_CLIP,
                             output_dir=root, activation_checkpointing=checkpointing,
                             hessian_difference=hessian_difference)  # type: ignore[arg-type]
        timer = _timer(L.Callback, args.warmup)
        trainer = L.Trainer(callbacks=[timer], **_trainer_kwargs(args.steps, root))
        trainer.fit(module, datamodule=BilevelDataModule(data))
    return timer


class _ThreeChannels(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Gray images broadcast to 3 channels (NNI's NB-201 stem takes RGB)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        x, y = self.dataset[index]
        return x.expand(3, *x.shape[1:]), y


def run_nni(args: argparse.Namespace) -> Any:
    import pytorch_lightning as pl
    from nni.nas.evaluator.pytorch import Classification, DataLoader
    from nni.nas.hub.pytorch import NasBench201
    from nni.nas.strategy import DARTS

    _quiet()
    torch.manual_seed(0)
    data = _datamodule(args.batch_size)
    data.prepare_data()
    data.setup("fit")
    train = DataLoader(_ThreeChannels(data.train_dataset), batch_size=args.batch_size, shuffle=True,
                       generator=torch.Generator().manual_seed(0))
    val = DataLoader(_ThreeChannels(data.val_dataset), batch_size=args.batch_size, shuffle=False)
    strategy = DARTS(arc_learning_rate=ARCH_LR, gradient_clip_val=GRAD_CLIP)
    model = strategy.mutate_model(NasBench201(args.channels, args.cells, data.num_classes))
    with tempfile.TemporaryDirectory() as root:
        timer = _timer(pl.Callback, args.warmup)
        evaluator = Classification(learning_rate=WEIGHT_LR, weight_decay=WEIGHT_DECAY, optimizer=torch.optim.SGD,
                                   train_dataloaders=train, val_dataloaders=val, num_classes=data.num_classes,
                                   callbacks=[timer], **_trainer_kwargs(args.steps, root))
        strategy.mutate_evaluator(evaluator).evaluate(model)
    return timer


def nni_missing() -> str | None:
    """None when NNI 3.0's DARTS pieces import, else why not."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import nni
            from nni.nas.hub.pytorch import NasBench201  # noqa: F401
            from nni.nas.strategy import DARTS  # noqa: F401
    except Exception as error:
        return f"NNI import failed: {type(error).__name__}: {error} (install with `pip install nni==3.0`)"
    if not str(getattr(nni, "__version__", "")).startswith("3."):
        return f"NNI {nni.__version__} found; this benchmark targets NNI 3.0"
    return None


def child(run: str, args: argparse.Namespace) -> None:
    """Run one side in this process and print its step times and peak RSS as one JSON line."""
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    _quiet()
    if run == "nni":
        timer = run_nni(args)
    else:
        partial = 4 if run.startswith("ours_pc4") else 1
        order = "second" if run.startswith("ours_second") else "first"
        timer = run_ours(args, partial, order, run.endswith("_ckpt"), "forward" if run.endswith("_fwd") else "central")
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    payload = {"median_s": statistics.median(timer.times), "cpu_s": statistics.median(timer.cpu_times),
               "rss_mib": rss_mib, "step_mib": rss_mib - timer.rss_before}
    print("RESULT " + json.dumps(payload))


def _spawn(run: str, argv: list[str], result: Result) -> None:
    proc = subprocess.run([sys.executable, __file__, "--child", run, *argv], capture_output=True, text=True,
                          check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        result.error = f"{run} failed: {tail[-1] if tail else f'exit {proc.returncode}'}"
        return
    payload = json.loads(lines[-1][len("RESULT "):])
    result.step_s.append(payload["median_s"])
    result.cpu_s.append(payload["cpu_s"])
    result.rss_mib.append(payload["rss_mib"])
    result.step_mib.append(payload["step_mib"])


def _table(results: dict[str, Result]) -> str:
    rows = [f"{'run':<32} {'s/step':>8} {'CPU s/step':>10} {'peak RSS MiB':>13} {'training MiB':>13}"]
    for run, r in results.items():
        rows.append(f"{LABELS[run]:<32} {r.time:>8.3f} {r.cpu:>10.3f} {r.rss:>13.0f} {r.step_memory:>13.0f}"
                    + (f"   {r.error}" if r.error else ""))
    ours, nni_ = results["ours"], results.get("nni")
    if nni_ is not None and nni_.step_s and ours.step_s:
        rows.append(f"{'DARTS ours / NNI':<32} {ours.time / nni_.time:>8.3f} {ours.cpu / nni_.cpu:>10.3f} "
                    f"{ours.rss / nni_.rss:>13.3f} {ours.step_memory / nni_.step_memory:>13.3f}")
        pcs = (("ours_pc4", "PC-DARTS K=4 ours / NNI DARTS"), ("ours_pc4_ckpt", "  checkpointed / NNI DARTS"))
        for run, label in pcs:
            pc = results.get(run)
            if pc is not None and pc.rss_mib:
                rows.append(f"{label:<32} {pc.time / nni_.time:>8.3f} {pc.cpu / nni_.cpu:>10.3f} "
                            f"{pc.rss / nni_.rss:>13.3f} {pc.step_memory / nni_.step_memory:>13.3f}")
    seconds = (("ours_second", "2nd order / 1st order (ours)"), ("ours_second_fwd", "  forward HVP / 1st order"))
    for run, label in seconds:
        second = results.get(run)
        if second is not None and second.step_s and ours.step_s:
            rows.append(f"{label:<32} {second.time / ours.time:>8.3f} {second.cpu / ours.cpu:>10.3f}")
    return "\n".join(rows)


def _quiet() -> None:
    """Silence Lightning's and NNI's info logs and warnings (NNI resets logging when imported)."""
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning", "nni"):
        logging.getLogger(name).setLevel(logging.ERROR)


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cells", type=int, default=5, help="cells per stage")
    parser.add_argument("--channels", type=int, default=16, help="channels of the first stage")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=6, help="training steps per run (512 images: 8 per epoch)")
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the timing")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of every run")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--runs", nargs="+", choices=RUNS, default=list(RUNS))
    parser.add_argument("--child", choices=RUNS, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps <= args.warmup:
        parser.error("--steps must exceed --warmup")
    shared = [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in
              ("cells", "channels", "batch_size", "steps", "warmup", "threads")]
    return args, shared


def main(argv: list[str] | None = None) -> int:
    args, shared = parse(argv)
    if args.child is not None:
        child(args.child, args)
        return 0
    runs = list(args.runs) if "ours" in args.runs else ["ours", *args.runs]
    results = {run: Result(run) for run in runs}
    missing = nni_missing() if "nni" in runs else None
    if missing is not None:
        results["nni"].error = missing
    print(f"NB-201 DARTS: C={args.channels}, {args.cells} cells/stage, Fashion-MNIST 28x28 (512 train, 512 val), "
          f"batch {args.batch_size}, {args.steps} steps per run ({args.warmup} untimed), {args.rounds} interleaved "
          f"rounds, {args.threads} thread(s)")
    for _ in range(args.rounds):
        for run in runs:
            if results[run].error is None:
                _spawn(run, shared, results[run])
    print(_table(results))
    print("s/step (wall) and CPU s/step (process time: robust to other load on the machine): min over rounds of "
          "each run's median; peak RSS: ru_maxrss of the run's own process (imports "
          "included), min over rounds; training MiB: peak RSS minus the RSS when training started")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
