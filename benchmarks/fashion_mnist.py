"""Flagship benchmark: search, train and deploy a Fashion-MNIST classifier on a laptop CPU.

Runs ``experiment=fashion_mnist`` (search, final training, ExecuTorch export of the best model)
and trains the hand-designed baselines (``lightning_nas.baselines``: a 2-conv CNN and
MobileNetV3-Small adapted to 1x28x28) with the same recipe and epoch budget as the final model.
Each baseline trains in its own single-threaded worker process alongside the search (one-thread
jobs use this machine's cores better than one two-thread job; ``--sequential-baselines`` trains
them afterwards instead). The slowest baseline bounds every network's epochs, so it keeps a core:
the search's workers and the other baselines run at a lower priority (``--search-nice``), and once
the experiment and the other baselines are done (the plan gives the experiment a deadline for
this), the slowest baseline trains on every core. When all training is done, every model is
exported to ExecuTorch and the ``.pte`` files are timed in turn on a quiet machine (rounds of calls, so a
drift of the machine hits every network alike), and the script prints test accuracy,
parameters, MACs, ExecuTorch latency, training time (wall and CPU) and the wall time of every
stage, next to published Fashion-MNIST results. Results go to ``<output>/results.json`` and ``<output>/results.md``.

    python benchmarks/fashion_mnist.py                          # the full run (~51 min on 2 cores)
    python benchmarks/fashion_mnist.py --preset fashion_mnist_small   # search under max_params 25K
    python benchmarks/fashion_mnist.py --quick --data-dir DIR   # CI-sized: same code path, tiny budget

Extra Hydra overrides go after ``--``: ``python benchmarks/fashion_mnist.py -- seed=1``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from lightning_nas.baselines import BASELINES, build_baseline
from lightning_nas.cli_errors import compose_or_fail
from lightning_nas.config import ConfigError, build_node
from lightning_nas.evaluators.precision import (
    cpu_has_native_bf16,
    faster_precision,
    recorded_precision,
    validate_precision,
)
from lightning_nas.evaluators.train import TrainEvaluator, derive_seed, seeded
from lightning_nas.export.exporter import export_model
from lightning_nas.export.profiler import profile_pte, time_in_turn
from lightning_nas.hardware.profile import count_macs, count_params
from lightning_nas.planner import cpu_seconds, format_seconds, measure_throughput, parse_duration, torch_threads
from lightning_nas.results import strict_json
from lightning_nas.run import run

log = logging.getLogger("fashion_mnist")

PUBLISHED = [  # test accuracy reported for Fashion-MNIST, with what it cost
    ("Google AutoML Vision", 0.939, "24 compute hours"),
    ("DENSER (evolutionary NAS)", 0.953, "GPU days"),
    ("2-conv CNN, <100K params", 0.925, "benchmark table"),
    ("MobileNet", 0.950, "benchmark table"),
]

BASELINE_EPOCH_EXTRA_S = 5.0
"""CPU seconds a baseline's real training epoch spends beyond its training steps as
:func:`measure_throughput` times them (one thread, best of two rounds on random data): validation,
batched augmentation, Lightning and sharing the cores. Fitted to the 2026-12-03 flagship run (24 epochs):
MobileNetV3-Small 112 CPU s an epoch against 108 s of steps, the 2-conv CNN 34 against 29, the ResNet 24
against 19. MobileNetV3-Small, the slowest, bounds every network's epochs."""

QUICK_OVERRIDES = [  # a few hundred images, one epoch, three candidates: the CI-sized run
    "data.max_train_samples=256", "data.max_val_samples=64", "data.max_test_samples=64", "data.batch_size=64",
    "budget.evaluations=3", "budget.population_size=3", "evaluator.max_epochs=1", "evaluator.final_max_epochs=1",
    "evaluator.limit_train_batches=1.0", "evaluator.final_limit_train_batches=1.0", "evaluator.latency_repeats=2",
    "budget.time=null",
]


@dataclass
class ModelFigures:
    """One row of the results table."""

    name: str
    test_acc: float
    params: int
    macs: int
    executorch_ms: float | None
    train_seconds: float
    train_cpu_seconds: float = math.nan
    export_error: str = ""
    epochs: int | None = None
    """Final epochs trained."""
    planned_epochs: int | None = None
    """Final epochs planned, where the deadline stopped the training before it trained them all."""
    images_share: float = 1.0
    """Share of the training images each final epoch used (below 1 where the plan shortened the epochs to fit)."""
    precision: str = "32"
    """The precision the final training ran in: ``"32"`` or ``"bf16-mixed"`` (``evaluator.precision``)."""


def compose_config(preset: str, output_dir: Path, quick: bool, data_dir: str | None,
                   overrides: list[str]) -> DictConfig:
    """The experiment's config with the benchmark's output folder and any overrides, composed as the app
    composes it; a bad override or preset ends the script with the app's one-line error naming it."""
    extra = [f"experiment={preset}", f"output_dir={output_dir}"]
    if quick:
        extra += QUICK_OVERRIDES
    if data_dir:
        extra.append(f"data.data_dir={data_dir}")
    try:
        return compose_or_fail("lightning_nas.conf", "config", [*extra, *overrides])
    except ConfigError as error:
        raise SystemExit(f"fashion_mnist: {error}") from error


def export_pte(model: torch.nn.Module, input_shape: tuple[int, ...], folder: Path) -> tuple[Path | None, str]:
    """The model exported to ExecuTorch (XNNPACK) as ``folder/model.pte``, or the export error."""
    try:
        return export_model(model, torch.zeros(1, *input_shape), folder / "model.pte").path, ""
    except Exception as error:  # a failed export is reported, not fatal
        return None, f"{type(error).__name__}: {error}"


def time_ptes(paths: list[Path], input_shape: tuple[int, ...], repeats: int) -> list[float | None]:
    """Each ``.pte``'s median latency (ms) at batch 1 on one thread, all timed in turn (``time_in_turn``: a
    drift of the machine hits every network alike, which decides between two equally fast ones); a program
    that cannot be timed with the others is timed alone, and ``None`` when that fails too."""
    rounds = min(5, repeats)
    try:
        timed = time_in_turn(paths, input_shape, rounds=rounds, repeats=math.ceil(repeats / rounds), warmup=3,
                             threads=1)
        return [statistics.median(times) for times in timed]
    except Exception as error:
        log.warning("timing the .pte files in turn failed (%s); timing each alone", error)
    medians: list[float | None] = []
    for path in paths:
        try:
            medians.append(profile_pte(path, input_shape, repeats=repeats, warmup=3, threads=1).median_ms)
        except Exception as error:
            log.warning("profiling %s failed: %s", path, error)
            medians.append(None)
    return medians


def train_baseline(name: str, evaluator: TrainEvaluator, input_shape: tuple[int, ...], num_classes: int,
                   folder: Path) -> ModelFigures:
    """Train baseline ``name`` with the final-training recipe of ``evaluator`` and test it.

    The trained network goes to ``folder/<name>/model.pt`` (exported and profiled later, see
    :func:`profile_models`); its figures to ``folder/<name>/figures.json``.
    """
    seed = derive_seed(evaluator.seed, "baseline", name)
    with seeded(seed):
        model = build_baseline(name, input_shape, num_classes)
    params, macs = count_params(model), count_macs(model, input_shape)
    log.info("baseline %s: %d params, %.2fM MACs; training %d epochs on %d thread(s)", name, params, macs / 1e6,
             evaluator.final_max_epochs, torch.get_num_threads())
    started, cpu_started = time.perf_counter(), time.process_time()
    module = evaluator.fit_model(model, evaluator.final_max_epochs, num_classes=num_classes, seed=seed,
                                 limit_train_batches=evaluator.final_limit_train_batches, final=True)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    test = evaluator.test_model(module)
    out = folder / name
    out.mkdir(parents=True, exist_ok=True)
    torch.save(module.model.eval(), out / "model.pt")
    figures = ModelFigures(name, float(test["test/acc"]), params, macs, None, seconds, cpu_seconds,
                           epochs=int(evaluator.final_max_epochs),
                           precision=recorded_precision(module.fit_metrics))
    (out / "figures.json").write_text(json.dumps(asdict(figures), indent=2) + "\n")
    log.info("baseline %s: test acc %.4f after %.0f s", name, figures.test_acc, seconds)
    return figures


def baseline_worker(name: str, config_file: Path, folder: Path, nice: int = 0, precision: str | None = None) -> None:
    """Entry point of one baseline's worker process: train ``name`` on one thread, as ``config_file`` says
    (in ``precision`` when given: the choice the benchmark's planning made), ``nice`` steps below the normal
    priority; on every core once the benchmark asks (:class:`TakeCores`)."""
    if nice:
        os.nice(nice)
    torch.set_num_threads(1)
    cfg = OmegaConf.load(config_file)
    assert isinstance(cfg, DictConfig)
    if precision is not None:
        cfg.evaluator.precision = precision
    datamodule = build_node(cfg, "data")
    evaluator = build_node(cfg, "evaluator", datamodule=datamodule)
    evaluator.final_callbacks = [*evaluator.final_callbacks, TakeCores(folder / name / TakeCores.REQUEST_FILE)]
    train_baseline(name, evaluator, tuple(datamodule.input_shape), int(datamodule.num_classes), folder)


class SwitchThreads(L.Callback):
    """Final-training callback: train on more threads from the first batch at which :meth:`threads_now`
    says how many. Checked before every batch, in the training thread (torch's thread count is per thread)."""

    reason = "switched"

    def __init__(self) -> None:
        self.switched_at_epoch: int | None = None

    def threads_now(self) -> int | None:
        """The threads to train on from now on, or None to keep the current ones."""
        raise NotImplementedError

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self.switched_at_epoch is None and (threads := self.threads_now()):
            torch.set_num_threads(threads)
            self.switched_at_epoch = trainer.current_epoch + 1
            log.info("%s: %d threads from epoch %d on", self.reason, threads, self.switched_at_epoch)


class TakeCores(SwitchThreads):
    """A baseline worker's callback: once ``request`` exists (written by :meth:`BaselineJob.take_cores` when
    nothing else is left to run), train on the number of threads it holds."""

    REQUEST_FILE = "take_cores"
    reason = "alone on the machine"

    def __init__(self, request: Path) -> None:
        super().__init__()
        self.request = request

    def threads_now(self) -> int | None:
        # written whole (take_cores renames it into place)
        return int(self.request.read_text()) if self.request.is_file() else None


def worker_command(name: str, config_file: Path, folder: Path, nice: int, precision: str | None) -> list[str]:
    """The command line of baseline ``name``'s worker process (see :func:`baseline_worker`)."""
    return [sys.executable, str(Path(__file__).resolve()), "--baseline-worker", name,
            "--worker-config", str(config_file), "--output", str(folder), "--worker-nice", str(nice),
            *(["--worker-precision", precision] if precision else [])]


class BaselineJob:
    """A baseline training in a worker process (``python fashion_mnist.py --baseline-worker NAME``), started
    by the constructor.

    A watcher thread notes when the worker exits, so its wall time is its own, not the time until
    someone asked for its result.
    """

    def __init__(self, name: str, config_file: Path, folder: Path, nice: int = 0,
                 precision: str | None = None) -> None:
        self.name, self.folder, self.nice, self.precision = name, folder, nice, precision
        out = folder / name
        out.mkdir(parents=True, exist_ok=True)
        (out / "figures.json").unlink(missing_ok=True)
        (out / TakeCores.REQUEST_FILE).unlink(missing_ok=True)
        self.cores_taken_at: float | None = None
        """Seconds after its start when the worker was asked to train on every core (None: never)."""
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        command = worker_command(name, config_file, folder, nice, precision)
        self.started = time.perf_counter()
        self.ended: float | None = None
        self.cpu_seconds: float | None = None
        """The worker process's CPU seconds (user + system, set when it exits; None where the OS has no wait4)."""
        with open(out / "train.log", "wb") as log_file:
            self.process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
        self._watcher = threading.Thread(target=self._watch, name=f"baseline-{name}", daemon=True)
        self._watcher.start()
        log.info("baseline %s: training in worker process %d at nice +%d (log: %s)", name, self.process.pid, nice,
                 out / "train.log")

    def _watch(self) -> None:
        wait4 = getattr(os, "wait4", None)  # reap the worker here, keeping its CPU seconds (Popen.wait drops them)
        try:
            if wait4 is None:
                raise ChildProcessError("no os.wait4 on this platform")
            _, status, usage = wait4(self.process.pid, 0)
            self.process.returncode = os.waitstatus_to_exitcode(status)
            self.cpu_seconds = usage.ru_utime + usage.ru_stime
        except ChildProcessError:  # no wait4, or stop()'s poll reaped the worker first
            self.process.wait()
        self.ended = time.perf_counter()
        log.info("baseline %s: worker finished after %.0f s", self.name, self.ended - self.started)

    def running(self) -> bool:
        return self.ended is None

    def take_cores(self, threads: int) -> None:
        """Ask the worker to train on ``threads`` threads from its next batch on."""
        request = self.folder / self.name / TakeCores.REQUEST_FILE
        partial = request.with_suffix(".partial")
        partial.write_text(str(threads))
        partial.replace(request)  # whole or absent for the worker
        self.cores_taken_at = time.perf_counter() - self.started
        log.info("baseline %s: the only work left; %d threads from its next batch on", self.name, threads)

    def result(self) -> tuple[ModelFigures, float]:
        """Wait for the worker; its figures (or the failure, as the row's error) and its wall seconds."""
        self._watcher.join()  # the watcher waits for the process and sets `ended`
        assert self.ended is not None
        code, seconds = self.process.returncode, self.ended - self.started
        figures_file = self.folder / self.name / "figures.json"
        if code == 0 and figures_file.is_file():
            return ModelFigures(**json.loads(figures_file.read_text())), seconds
        log_file = self.folder / self.name / "train.log"
        lines = [line for line in log_file.read_text(errors="replace").splitlines() if line.strip()]
        reason = f"training failed (exit {code}): {lines[-1] if lines else 'no output'}; see {log_file}"
        log.error("baseline %s: %s", self.name, reason)
        return ModelFigures(self.name, math.nan, 0, 0, None, seconds, export_error=reason), seconds

    def stop(self) -> None:
        if self.running():
            self.process.terminate()
            self._watcher.join()


class UseFreeCores(SwitchThreads):
    """Final-training callback: once no baseline worker runs, train on all cores (``threads``).

    The experiment trains on one thread while the baselines' workers share the cores; the searched
    network's final training often outlives them and would leave the other cores idle.
    """

    reason = "final training: no baseline worker left"

    def __init__(self, jobs: list[BaselineJob], threads: int) -> None:
        super().__init__()
        self.jobs, self.threads = jobs, threads

    def threads_now(self) -> int | None:
        return None if any(job.running() for job in self.jobs) else self.threads


def wait_for_baselines(jobs: list[Any], cores: int, poll_s: float = 1.0) -> None:
    """Wait until no baseline worker runs; the last one running trains on all ``cores`` (called once the
    experiment is done, so that nothing else needs them)."""
    handed = cores <= 1
    while running := [job for job in jobs if job.running()]:
        if len(running) == 1 and not handed:
            running[0].take_cores(cores)
            handed = True
        time.sleep(poll_s)


def cpu_reaped_during(jobs: list[BaselineJob], start: float, end: float) -> float:
    """CPU seconds of the baseline workers that exited between ``start`` and ``end`` (``time.perf_counter()``).

    A finished worker's CPU joins this process's children's (``RUSAGE_CHILDREN``), which the run's search
    CPU seconds read: one that exits during the search would otherwise count as the search's.
    """
    return sum(job.cpu_seconds or 0.0 for job in jobs if job.ended is not None and start <= job.ended <= end)


def profile_models(rows: list[ModelFigures], summary: dict[str, Any], folder: Path, input_shape: tuple[int, ...],
                   repeats: int) -> None:
    """Export the baselines and time every model's ``.pte`` in turn (1 thread, batch 1), filling ``executorch_ms``.

    Runs after all training so that no latency is taken while other work shares the cores; the
    searched model's ``.pte`` is the one in its deploy package (the manifest's figure is the fallback).
    """
    searched, *baselines = rows
    timed: list[tuple[ModelFigures, Path]] = []
    pte = next((Path(item["deploy"]) / "model.pte" for item in summary.get("exported", []) if item.get("deploy")),
               None)
    if pte is not None and pte.is_file():
        timed.append((searched, pte))
    for row in baselines:
        model_file = folder / row.name / "model.pt"
        if row.export_error or not model_file.is_file():
            continue
        path, row.export_error = export_pte(torch.load(model_file, weights_only=False), input_shape, folder / row.name)
        if path is not None:
            timed.append((row, path))
    for (row, path), median in zip(timed, time_ptes([path for _, path in timed], input_shape, repeats), strict=True):
        if median is not None:
            row.executorch_ms = median
        elif row is not searched:  # the searched model keeps its deploy manifest's figure
            row.export_error = f"profiling {path} failed"


def searched_figures(summary: dict[str, Any], configured_limit: object = 1.0) -> ModelFigures:
    """The searched model's row, from the run's summary and its deploy manifest (``configured_limit``: the
    preset's ``evaluator.final_limit_train_batches``)."""
    metrics = {**summary["best"]["metrics"], **summary["test"]}
    latency, error = None, "not exported (export.top_k=0)"
    for item in summary.get("exported", []):
        manifest = Path(item["deploy"]) / "manifest.json" if item.get("deploy") else None
        if manifest is not None and manifest.is_file():
            latency, error = float(json.loads(manifest.read_text())["latency_ms"]["median"]), ""
        else:
            error = "; ".join(f"{k}: {v}" for k, v in item.get("errors", {}).items()) or "no deploy package"
        break
    planned = summary.get("final_epochs")
    trained = summary.get("final_epochs_trained", planned)
    return ModelFigures(f"searched ({summary['best']['arch_id']})", float(metrics.get("test/acc", float("nan"))),
                        int(metrics["model/params"]), int(metrics["model/macs"]), latency,
                        float(summary.get("final_training_seconds", float("nan"))),
                        float(summary.get("final_training_cpu_seconds", float("nan"))), error,
                        epochs=None if trained is None else int(trained),
                        planned_epochs=int(planned) if summary.get("final_stopped_by_deadline") and planned else None,
                        images_share=images_share(summary.get("final_limit_train_batches"), configured_limit),
                        precision=recorded_precision(metrics))


@dataclass
class BaselineSpeeds:
    """What :func:`measure_baselines` measured."""

    epoch_cpu: dict[str, float]
    """CPU seconds of one final epoch of each baseline on one thread."""
    speedup: float
    """How many times faster the slowest baseline trains on every core than on one (at least 1)."""
    precisions: dict[str, str]
    """The precision each baseline trains in (``evaluator.precision``; with ``auto``, the faster one as timed
    here, once, so that its worker does not decide again beside other work)."""


def measure_baselines(cfg: DictConfig, names: list[str], cores: int, extra_s: float = BASELINE_EPOCH_EXTRA_S,
                      rounds: int = 2) -> BaselineSpeeds:
    """Time one final epoch of each baseline on one thread, and how many times faster the slowest trains on
    ``cores`` threads than on one.

    An epoch: the training images over the measured throughput (a few steps on random data, the best of
    ``rounds`` rounds over all baselines, so that the first model measured does not carry the process's
    one-time costs) plus ``extra_s``. With ``evaluator.precision=auto`` each baseline is timed in both
    precisions (on a CPU with native bfloat16) and keeps the faster, as
    :func:`~lightning_nas.evaluators.precision.faster_precision` decides.
    """
    datamodule = build_node(cfg, "data")
    datamodule.setup("fit")
    shape, classes = tuple(datamodule.input_shape), int(datamodule.num_classes)
    images = len(datamodule.train_dataset) * float(cfg.evaluator.final_limit_train_batches or 1.0)
    models = {name: build_baseline(name, shape, classes) for name in names}
    configured = validate_precision(cfg.evaluator.get("precision", "32"))
    timed = (["32", "bf16-mixed"] if configured == "auto" and cpu_has_native_bf16()
             else ["32" if configured == "auto" else configured])

    def img_s(model: torch.nn.Module, threads: int, precision: str) -> float:
        with torch_threads(threads):
            return measure_throughput(model, shape, classes, datamodule.batch_size, steps=8,
                                      channels_last=bool(cfg.evaluator.get("channels_last")), precision=precision)

    speeds: dict[tuple[str, str], float] = {}
    for _ in range(rounds):
        for name, model in models.items():
            for precision in timed:
                speeds[name, precision] = max(speeds.get((name, precision), 0.0), img_s(model, 1, precision))
    precisions = {name: faster_precision(speeds[name, "32"], speeds.get((name, "bf16-mixed")))
                  if configured == "auto" else timed[0] for name in names}
    epoch_cpu = {name: images / speeds[name, precisions[name]] + extra_s for name in names}
    for name in names:
        log.info("time plan: %s trains ~%.0f img/s on one thread in %s: ~%.0f CPU s per epoch", name,
                 speeds[name, precisions[name]], PRECISION_NAMES.get(precisions[name], precisions[name]),
                 epoch_cpu[name])
    slowest = max(epoch_cpu, key=epoch_cpu.__getitem__)
    speedup = 1.0
    if cores > 1:
        one = img_s(models[slowest], 1, precisions[slowest])
        speedup = max(1.0, img_s(models[slowest], cores, precisions[slowest]) / one)
        log.info("time plan: %s trains %.2fx as fast on %d threads", slowest, speedup, cores)
    return BaselineSpeeds(epoch_cpu, speedup, precisions)


@dataclass
class EpochPlan:
    """The benchmark's plan: every network's final epochs, and when the experiment must be done (seconds from
    the plan), so that the slowest baseline then has every core."""

    epochs: int
    handover_s: float


def plan_final_epochs(epoch_cpu: dict[str, float], seconds: float, cores: int, competing: int,
                      speedup: float = 1.0, search_fraction: float = 0.1, max_epochs: int = 100) -> EpochPlan:
    """The most final epochs for the searched model and every baseline with which the baselines fit in
    ``seconds``.

    The slowest baseline (the critical path) trains on one thread beside ``competing`` threads of its
    priority, with ``min(1, cores / (1 + competing))`` of a core, until the rest is done: the other
    baselines, the searched model's final training (counted as their average epoch) and the search
    (``search_fraction`` of ``seconds`` in CPU seconds), all on the remaining cores. From then on (the
    hand-over) it trains alone on every core, ``speedup`` times as fast. Both it and the rest must end
    within 90% of ``seconds`` (what follows is export and profiling).
    """
    end = 0.9 * seconds
    if not epoch_cpu:
        return EpochPlan(max_epochs, end)
    share = min(1.0, cores / (1 + competing))
    lead = max(epoch_cpu.values())
    others = sum(epoch_cpu.values()) - lead
    final = others / (len(epoch_cpu) - 1) if len(epoch_cpu) > 1 else lead
    rest_cores = cores - share
    for epochs in range(max_epochs, 0, -1):
        handover = (epochs * (others + final) + search_fraction * seconds) / rest_cores if rest_cores > 0 else end
        if (handover <= end and epochs * lead <= share * handover + speedup * (end - handover)) or epochs == 1:
            break
    log.info("time plan: the slowest baseline gets ~%.2f of a core beside %d thread(s) of its priority on %d "
             "core(s) for ~%.0f s, then all cores (%.2fx as fast): %d epochs", share, competing, cores, handover,
             speedup, epochs)
    return EpochPlan(epochs, handover)


def final_core_share(cores: int, baseline_nices: list[int]) -> float:
    """The share of a core the searched model's final training (one thread at nice 0) gets beside one thread per
    baseline worker at its nice, all still running (the scheduler's weights: 1.25x less per nice step)."""
    weights = sum(1.25 ** -nice for nice in baseline_nices)
    return min(1.0, cores / (1.0 + weights))


def search_yields(cfg: DictConfig, nice: int) -> bool:
    """Lower the search workers' priority by ``nice`` (``executor.nice``; a process executor only), so that the
    baselines, work of a fixed size, get the cores first and the search, which ends at its deadline, takes
    what is left. Whether the search yields."""
    executor = cfg.get("executor") or {}
    if not (nice and "max_workers" in executor and hasattr(os, "nice")):
        return False
    cfg.executor.nice = nice
    log.info("time plan: the search's %d worker(s) run at nice %d", int(executor.max_workers), nice)
    return True


def competing_threads(cfg: DictConfig, names: list[str], search_yielding: bool, baselines_yielding: bool) -> int:
    """Threads that run at the slowest baseline's priority beside it: the experiment's own process (the final
    training), the search's workers unless they yield, the other baselines unless they yield."""
    workers = 0 if search_yielding else int((cfg.get("executor") or {}).get("max_workers", 0) or 0)
    return 1 + workers + (0 if baselines_yielding else max(0, len(names) - 1))


def plan_benchmark_time(cfg: DictConfig, names: list[str], started: float, parallel: bool,
                        competing: int = 1) -> BaselineSpeeds:
    """Fit the whole benchmark in ``budget.time``: one final-epoch count for every network, so that the
    slowest baseline fits beside ``competing`` threads of its priority and then on every core
    (:func:`plan_final_epochs`), and the time until that hand-over to the experiment, which plans its
    search. Returns what :func:`measure_baselines` measured (also when ``budget.final_epochs`` fixes the
    epochs, the experiment then having all the time left, so that the slowest baseline keeps its priority and
    every baseline trains in the precision chosen here); nothing measured without baselines."""
    total = parse_duration(cfg.budget.time)
    assert total is not None
    if names and not parallel:
        raise SystemExit("budget.time needs the baselines in parallel workers (drop --sequential-baselines)")
    measured = BaselineSpeeds({}, 1.0, {})
    left = total - (time.perf_counter() - started)
    if names:
        epochs = cfg.budget.get("final_epochs")
        cores = os.cpu_count() or 1
        measured = measure_baselines(cfg, names, cores if not epochs else 1)
        left = total - (time.perf_counter() - started)
        if not epochs:
            plan = plan_final_epochs(measured.epoch_cpu, left, cores, competing, measured.speedup)
            epochs, left = plan.epochs, plan.handover_s
        cfg.budget.final_epochs, cfg.evaluator.final_max_epochs = epochs, epochs
        log.info("time plan: every network trains %d final epochs", epochs)
    cfg.budget.time = f"{left:.0f}s"
    log.info("time plan: %s of budget.time for the experiment", format_seconds(left))
    return measured


def images_share(limit: object, configured: object) -> float:
    """The share of the configured images per epoch that ``limit`` (``final_limit_train_batches``) kept: 1.0
    unless both are fractions and the plan lowered it."""
    if isinstance(limit, float) and isinstance(configured, float) and 0 < limit < configured:
        return limit / configured
    return 1.0


PRECISION_NAMES = {"32": "float32", "bf16-mixed": "bfloat16 autocast"}
"""How the table names each training precision."""


def format_epochs(row: ModelFigures, default: int) -> str:
    """The epochs a row trained: "29 of 33 (deadline)" where the deadline stopped it early, "31 (82% of the
    images each)" where the plan shortened every epoch to fit."""
    epochs = default if row.epochs is None else row.epochs
    text = f"{epochs} of {row.planned_epochs} (deadline)" if row.planned_epochs else str(epochs)
    return text + (f" ({row.images_share:.0%} of the images each)" if row.images_share < 0.995 else "")


def format_results(rows: list[ModelFigures], stages: dict[str, float], epochs: int,
                   stages_cpu: dict[str, float] | None = None) -> str:
    """Markdown tables: the models, the published figures and the wall (and CPU) seconds per stage.
    ``epochs``: the final epochs of a row that does not say its own."""
    lines = ["| model | test acc | params | MACs | ExecuTorch ms | epochs | precision | train wall s | train CPU s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        latency = f"{row.executorch_ms:.3f}" if row.executorch_ms is not None else f"failed: {row.export_error}"
        precision = PRECISION_NAMES.get(row.precision, row.precision)
        lines.append(f"| {row.name} | {row.test_acc:.4f} | {row.params / 1e3:.1f}K | {row.macs / 1e6:.2f}M "
                     f"| {latency} | {format_epochs(row, epochs)} | {precision} "
                     f"| {row.train_seconds:.0f} | {row.train_cpu_seconds:.0f} |")
    trained = {format_epochs(row, epochs) for row in rows if math.isfinite(row.test_acc)}
    if len(trained) > 1:
        lines += ["", f"Not every network trained the same epochs ({', '.join(sorted(trained))}): their accuracies "
                  "are not a like-for-like comparison."]
    lines += ["", "| published | test acc | cost |", "|---|---|---|"]
    lines += [f"| {name} | {acc:.3f} | {cost} |" for name, acc, cost in PUBLISHED]
    cpu = stages_cpu or {}
    lines += ["", "| stage | wall s | CPU s |", "|---|---|---|"]
    lines += [f"| {stage} | {seconds:.0f} | {cpu.get(stage, math.nan):.0f} |" for stage, seconds in stages.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fashion_mnist", help="experiment preset (fashion_mnist, "
                        "fashion_mnist_small)")
    parser.add_argument("--output", type=Path, default=None, help="output folder (default outputs/benchmarks/...)")
    parser.add_argument("--baselines", default=",".join(BASELINES), help="comma-separated baselines, or ''")
    parser.add_argument("--sequential-baselines", action="store_true",
                        help="train the baselines after the experiment, in this process, instead of in parallel "
                        "single-threaded workers")
    parser.add_argument("--quick", action="store_true", help="CI-sized run: a few hundred images, one epoch")
    parser.add_argument("--data-dir", default=None, help="folder with the Fashion-MNIST IDX files")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of this process (default: 1 "
                        "while baseline workers run beside it, all cores once they are done; else all cores)")
    parser.add_argument("--time", default=None, help="the whole benchmark's time budget (e.g. 55min; '' for "
                        "none): final epochs from measured throughput, the search fills the rest (default: the "
                        "preset's budget.time)")
    parser.add_argument("--search-nice", type=int, default=10, help="niceness of the search's worker processes "
                        "while the baselines train beside them; the baselines but the slowest get half of it. The "
                        "slowest baseline, which bounds every network's epochs, keeps a core, and the search takes "
                        "what is left (0: everything at one priority; default: 10)")
    parser.add_argument("--worker-nice", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--latency-repeats", type=int, default=50, help="timed ExecuTorch runs per model")
    parser.add_argument("--baseline-worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-config", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-precision", default=None, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides after --")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if args.baseline_worker:  # one baseline's worker process, started by BaselineJob
        baseline_worker(args.baseline_worker, args.worker_config, args.output, args.worker_nice,
                        args.worker_precision)
        return {}
    if not 0 <= args.search_nice <= 19:
        parser.error(f"--search-nice must be from 0 to 19, got {args.search_nice}")
    names = [n for n in args.baselines.split(",") if n]
    unknown = sorted(set(names) - set(BASELINES))
    if unknown:
        parser.error(f"--baselines: unknown baseline(s) {unknown}; known: {sorted(BASELINES)}")
    parallel = bool(names) and not args.sequential_baselines
    threads = args.threads or (1 if parallel else None)
    if threads:
        torch.set_num_threads(threads)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    output = args.output or Path("outputs") / "benchmarks" / f"{args.preset}_{stamp}"
    baselines_dir = output / "baselines"
    repeats = 3 if args.quick else args.latency_repeats
    started, cpu_started = time.perf_counter(), cpu_seconds()
    cfg = compose_config(args.preset, output, args.quick, args.data_dir, list(args.overrides))
    if args.quick:
        cfg.export.top_k = 1
    if args.time is not None:
        cfg.budget.time = args.time or None
    yielding = parallel and search_yields(cfg, args.search_nice)
    baseline_nice = args.search_nice // 2 if yielding else 0  # for every baseline but the slowest
    competing = competing_threads(cfg, names, yielding, baseline_nice > 0)
    measured = (plan_benchmark_time(cfg, names, started, parallel, competing) if cfg.budget.get("time")
                else BaselineSpeeds({}, 1.0, {}))
    epoch_cpu = measured.epoch_cpu
    slowest = max(epoch_cpu, key=epoch_cpu.__getitem__) if epoch_cpu else None
    jobs: list[BaselineJob] = []
    free_cores: UseFreeCores | None = None
    if parallel:
        baselines_dir.mkdir(parents=True, exist_ok=True)
        config_file = baselines_dir / "config.yaml"
        config_file.write_text(OmegaConf.to_yaml(cfg, resolve=True))
        jobs = [BaselineJob(name, config_file, baselines_dir,
                            nice=baseline_nice if slowest not in (None, name) else 0,
                            precision=measured.precisions.get(name))
                for name in names]
        if args.threads is None and (os.cpu_count() or 1) > 1:
            free_cores = UseFreeCores(jobs, os.cpu_count() or 1)
        if cfg.budget.get("time"):
            cfg.budget.final_core_share = final_core_share(os.cpu_count() or 1, [job.nice for job in jobs])
            log.info("time plan: the final training expects %.2f of a core beside the baselines' workers",
                     cfg.budget.final_core_share)
    try:
        experiment_started = time.perf_counter()
        summary = run(cfg, final_callbacks=[free_cores] if free_cores else [])
        if threads:
            torch.set_num_threads(threads)  # the free cores were the final training's
        experiment_done = time.perf_counter()
        stages = {"search": float(summary["search_seconds"]),
                  "final training": float(summary["final_training_seconds"]),
                  "export (searched model)": float(summary.get("export_seconds", 0.0))}
        search_end = experiment_started + float(summary["search_seconds"])
        search_cpu = float(summary.get("search_cpu_seconds", math.nan)) - cpu_reaped_during(jobs, experiment_started,
                                                                                            search_end)
        stages_cpu = {"search": search_cpu,
                      "final training": float(summary.get("final_training_cpu_seconds", math.nan))}
        rows = [searched_figures(summary, cfg.evaluator.final_limit_train_batches)]
        datamodule = build_node(cfg, "data")
        shape, classes = tuple(datamodule.input_shape), int(datamodule.num_classes)
        if jobs:
            if any(job.running() for job in jobs):
                log.info("experiment done; waiting for the baseline workers")
                wait_for_baselines(jobs, os.cpu_count() or 1)
            for job in jobs:
                row, seconds = job.result()
                rows.append(row)
                stages[f"baseline {job.name} (parallel worker)"] = seconds
                stages_cpu[f"baseline {job.name} (parallel worker)"] = row.train_cpu_seconds
            stages["waiting for baselines"] = time.perf_counter() - experiment_done
        elif names:
            evaluator = build_node(cfg, "evaluator", datamodule=datamodule)
            for name in names:
                stage_started = time.perf_counter()
                rows.append(train_baseline(name, evaluator, shape, classes, baselines_dir))
                stages[f"baseline {name}"] = time.perf_counter() - stage_started
                stages_cpu[f"baseline {name}"] = rows[-1].train_cpu_seconds
    finally:
        for job in jobs:
            job.stop()
    profile_started, profile_cpu = time.perf_counter(), time.process_time()
    log.info("exporting the baselines and profiling every model with ExecuTorch")
    profile_models(rows, summary, baselines_dir, shape, repeats)
    stages["ExecuTorch export + profiling"] = time.perf_counter() - profile_started
    stages_cpu["ExecuTorch export + profiling"] = time.process_time() - profile_cpu
    stages["total"] = time.perf_counter() - started
    stages_cpu["total"] = cpu_seconds() - cpu_started

    epochs = int(summary.get("final_epochs") or cfg.evaluator.final_max_epochs or cfg.evaluator.max_epochs)
    for row in rows:  # the searched network without a planned figure trained the configured epochs
        if row.epochs is None and math.isfinite(row.test_acc):
            row.epochs = epochs
    text = format_results(rows, stages, epochs, stages_cpu)
    results = {"preset": args.preset, "quick": args.quick, "threads": torch.get_num_threads(),
               "final_all_cores_from_epoch": free_cores.switched_at_epoch if free_cores else None,
               "baseline_all_cores_after_s": {job.name: job.cores_taken_at for job in jobs
                                              if job.cores_taken_at is not None},
               "baselines_in_parallel": parallel, "cpu_count": os.cpu_count(),
               "models": [asdict(r) for r in rows], "stages_s": stages, "stages_cpu_s": stages_cpu,
               "budget_time": cfg.budget.get("time"),
               "published": [{"name": n, "test_acc": a, "cost": c} for n, a, c in PUBLISHED],
               "summary": str(output / "summary.json")}
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.json").write_text(strict_json.dumps(results, indent=2) + "\n")
    (output / "results.md").write_text(text + "\n")
    print(f"\nFashion-MNIST benchmark ({args.preset}{', quick' if args.quick else ''}) -> {output}\n{text}",
          flush=True)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
