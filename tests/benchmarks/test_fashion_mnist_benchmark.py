"""benchmarks/fashion_mnist.py, CI-sized: the flagship's code path on a few hundred images, one epoch."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from lightning_nas.baselines import BASELINES, build_baseline
from lightning_nas.evaluators import precision as precision_module
from lightning_nas.hardware.profile import count_params

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from data_files import write_fashion

BENCHMARK = "fashion_mnist"  # benchmarks/fashion_mnist.py, loaded by the bench fixture (conftest.py)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """torch on one thread during the test, as a baseline worker starts; the thread count restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baselines_take_fashion_mnist_images(name: str) -> None:
    model = build_baseline(name, (1, 28, 28), 10).eval()
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    params = count_params(model)
    expected = {"two_conv_cnn": (10_000, 100_000), "resnet_small": (100_000, 1_000_000)}
    low, high = expected.get(name, (1_000_000, 2_000_000))
    assert low < params < high


def test_unknown_baseline_is_named() -> None:
    with pytest.raises(ValueError, match="unknown baseline 'resnet'"):
        build_baseline("resnet", (1, 28, 28), 10)


@pytest.mark.parametrize("mode", ["parallel", pytest.param("sequential", marks=pytest.mark.slow)])
def test_quick_run_reports_every_figure(bench: ModuleType, tmp_path: Path, mode: str) -> None:
    data = write_fashion(tmp_path / "fashion", n_train=400, n_test=80)
    out = tmp_path / "run"
    flags = ["--sequential-baselines"] if mode == "sequential" else []
    results = bench.main(["--quick", "--data-dir", str(data), "--output", str(out), "--baselines", "two_conv_cnn",
                          *flags, "--", "executor=local", "logger=none", "progress=false"])
    assert results["baselines_in_parallel"] is (mode == "parallel")
    names = [m["name"] for m in results["models"]]
    assert names[0].startswith("searched (") and names[1:] == ["two_conv_cnn"]
    for model in results["models"]:
        assert 0.0 <= model["test_acc"] <= 1.0
        assert model["params"] > 0 and model["macs"] > 0
        assert model["executorch_ms"] is not None and model["executorch_ms"] > 0, model["export_error"]
        assert model["train_seconds"] > 0 and model["train_cpu_seconds"] > 0
        assert model["epochs"] == 1 and model["planned_epochs"] is None  # --quick: one final epoch each
    stages = results["stages_s"]
    baseline_stage = "baseline two_conv_cnn" + (" (parallel worker)" if mode == "parallel" else "")
    assert {"search", "final training", "export (searched model)", baseline_stage, "ExecuTorch export + profiling",
            "total"} <= set(stages)
    assert stages["total"] >= stages["search"] + stages["final training"]
    assert results["models"][1]["train_seconds"] <= stages[baseline_stage] <= stages["total"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["evaluations"] == 3 and summary["test"]["test/acc"] == results["models"][0]["test_acc"]
    text = (out / "results.md").read_text()
    assert "| two_conv_cnn |" in text and "DENSER" in text and "| total |" in text
    assert "| epochs |" in text and "not a like-for-like" not in text
    assert (out / "baselines" / "two_conv_cnn" / "model.pte").is_file()


def test_the_models_are_timed_in_turn_and_alone_when_that_fails(bench: ModuleType, tmp_path: Path) -> None:
    shape = (1, 8, 8)
    path, error = bench.export_pte(build_baseline("two_conv_cnn", shape, 10), shape, tmp_path / "two")
    assert error == "" and path is not None and path.is_file()
    copy = tmp_path / "copy.pte"
    copy.write_bytes(path.read_bytes())
    both = bench.time_ptes([path, copy], shape, repeats=4)
    assert len(both) == 2 and all(ms is not None and ms > 0 for ms in both)
    broken = tmp_path / "broken.pte"
    broken.write_bytes(b"not a program")
    alone = bench.time_ptes([path, broken], shape, repeats=2)  # the in-turn load fails: each is timed alone
    assert alone[0] is not None and alone[0] > 0 and alone[1] is None

    class Broken(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("no forward here")

    failed_path, failed = bench.export_pte(Broken(), shape, tmp_path / "broken")
    assert failed_path is None and "no forward here" in failed  # an export error is a message, not an exception


def test_failed_baseline_worker_is_reported_not_fatal(bench: ModuleType, tmp_path: Path) -> None:
    job = bench.BaselineJob("two_conv_cnn", tmp_path / "missing.yaml", tmp_path / "baselines")
    row, seconds = job.result()
    assert row.name == "two_conv_cnn" and row.executorch_ms is None and seconds > 0
    assert row.export_error.startswith("training failed (exit 1): ") and "train.log" in row.export_error
    assert "missing.yaml" in (tmp_path / "baselines" / "two_conv_cnn" / "train.log").read_text()
    assert job.cpu_seconds is not None and job.cpu_seconds > 0  # the reaped worker's own CPU seconds


def test_search_cpu_leaves_out_baseline_workers_that_exit_during_it(bench: ModuleType) -> None:
    jobs = [SimpleNamespace(ended=5.0, cpu_seconds=300.0),   # exits during the search: its CPU is not the search's
            SimpleNamespace(ended=20.0, cpu_seconds=900.0),  # exits after it
            SimpleNamespace(ended=None, cpu_seconds=None),   # still running
            SimpleNamespace(ended=1.0, cpu_seconds=50.0)]    # exited before the search started
    assert bench.cpu_reaped_during(jobs, 2.0, 10.0) == 300.0
    assert bench.cpu_reaped_during(jobs, 0.0, 30.0) == 1250.0
    assert bench.cpu_reaped_during([], 0.0, 30.0) == 0.0


def test_final_epochs_follow_the_slowest_baseline_and_the_hand_over(bench: ModuleType) -> None:
    plan, Plan = bench.plan_final_epochs, bench.EpochPlan
    cpu = {"slow": 100.0, "fast": 20.0}
    # beside the experiment's process on 2 cores: a whole core; 90% of 3000 s -> 27 epochs of 100 s. The rest
    # (27 x (20 + 20, the final training counted as the other baselines' average) + 10% of 3000) on the other
    # core is done after 1380 s: the hand-over
    assert plan(cpu, 3000.0, cores=2, competing=1) == Plan(27, 1380.0)
    # then 1.5x as fast on both cores: 32 epochs (1580 + 1.5 x 1120 = 3260 >= 3200; 33 would need 3300 of 3240)
    assert plan(cpu, 3000.0, cores=2, competing=1, speedup=1.5) == Plan(32, 1580.0)
    # 3 threads of its priority beside it: half a core until the rest is done on 1.5 cores, then a whole one
    assert plan(cpu, 3000.0, cores=2, competing=3).epochs == 22
    # heavy other baselines: the rest (120 CPU s an epoch) must end by 90% too -> 20 epochs, not 27
    assert plan({"slow": 100.0, "a": 50.0, "b": 30.0}, 3000.0, cores=2, competing=1, speedup=1.5) == Plan(20, 2700.0)
    # one core, nothing beside it: the slowest has it all, the hand-over is the end
    assert plan({"slow": 100.0}, 3000.0, cores=1, competing=0) == Plan(27, 2700.0)
    assert plan(cpu, 10.0, cores=2, competing=1).epochs == 1 and plan({}, 10.0, cores=2, competing=1).epochs == 100


def test_fixed_final_epochs_still_measure_the_baselines(bench: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    measured: list[int] = []

    def measure(cfg: object, names: list[str], cores: int) -> object:
        measured.append(cores)
        return bench.BaselineSpeeds({"slow": 100.0, "fast": 20.0}, 1.0, {"slow": "32", "fast": "bf16-mixed"})

    monkeypatch.setattr(bench, "measure_baselines", measure)
    cfg = OmegaConf.create({"budget": {"time": "3000s", "final_epochs": 12}, "evaluator": {"final_max_epochs": 10}})
    speeds = bench.plan_benchmark_time(cfg, ["slow", "fast"], time.perf_counter(), parallel=True)
    # the slowest is known (it keeps its priority), the epochs stay fixed and the experiment has all the time
    assert speeds.epoch_cpu == {"slow": 100.0, "fast": 20.0} and measured == [1]
    assert speeds.precisions == {"slow": "32", "fast": "bf16-mixed"}
    assert cfg.budget.final_epochs == cfg.evaluator.final_max_epochs == 12
    assert 2990 <= float(cfg.budget.time.rstrip("s")) <= 3000


def test_the_last_baseline_running_takes_every_core(bench: ModuleType) -> None:
    class Job:
        def __init__(self, name: str, polls: int) -> None:
            self.name, self.polls, self.asked = name, polls, []

        def running(self) -> bool:
            self.polls -= 1
            return self.polls >= 0

        def take_cores(self, threads: int) -> None:
            self.asked.append(threads)

    short, long = Job("short", 2), Job("long", 6)
    bench.wait_for_baselines([short, long], cores=2, poll_s=0.0)
    assert short.asked == [] and long.asked == [2]  # asked once, when it was the only one left
    alone = Job("alone", 3)
    bench.wait_for_baselines([alone], cores=1, poll_s=0.0)
    assert alone.asked == []  # one core: nothing to hand over


def test_a_worker_takes_the_cores_it_is_asked_for(bench: ModuleType, tmp_path: Path, one_thread: None) -> None:
    request = tmp_path / "worker" / bench.TakeCores.REQUEST_FILE
    request.parent.mkdir()
    callback = bench.TakeCores(request)
    trainer = type("T", (), {"current_epoch": 4})()
    callback.on_train_batch_start(trainer, None, None, 0)
    assert torch.get_num_threads() == 1 and callback.switched_at_epoch is None
    job = SimpleNamespace(folder=tmp_path, name="worker", started=0.0, cores_taken_at=None)
    bench.BaselineJob.take_cores(job, 2)  # what the benchmark's process writes
    assert request.read_text() == "2" and job.cores_taken_at > 0
    callback.on_train_batch_start(trainer, None, None, 1)
    assert torch.get_num_threads() == 2 and callback.switched_at_epoch == 5


def test_search_and_other_baselines_yield_to_the_slowest(bench: ModuleType) -> None:
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"executor": {"max_workers": 2, "nice": 0}})
    names = ["a", "b", "c"]
    assert not bench.search_yields(cfg, 0) and cfg.executor.nice == 0
    assert bench.competing_threads(cfg, names, False, False) == 5  # main process + 2 workers + 2 baselines
    assert bench.search_yields(cfg, 10) and cfg.executor.nice == 10
    assert bench.competing_threads(cfg, names, True, True) == 1    # only the main process (the final training)
    assert not bench.search_yields(OmegaConf.create({"executor": {}}), 10)  # local executor: nothing to lower
    assert bench.competing_threads(OmegaConf.create({"executor": {}}), names, False, True) == 1


def test_search_nice_out_of_range_is_named(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench.main(["--search-nice", "25"])
    assert "--search-nice must be from 0 to 19, got 25" in capsys.readouterr().err


def test_unknown_baseline_flag_is_named(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--baselines", "two_conv_cnn,resnet"])
    assert exit_info.value.code == 2
    assert "--baselines: unknown baseline(s) ['resnet']" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "named"), [(["--", "budget.evaluation=2"], r"budget\.evaluation"),
                                              (["--preset", "fashion_mnist_smal"], r"fashion_mnist_smal")])
def test_bad_override_or_preset_is_named_in_one_line(bench: ModuleType, tmp_path: Path, args: list[str],
                                                     named: str) -> None:
    with pytest.raises(SystemExit, match=rf"^fashion_mnist: [^\n]*{named}[^\n]*$"):
        bench.main(["--quick", "--output", str(tmp_path / "run"), *args])
    assert not (tmp_path / "run").exists()


class _Job:
    def __init__(self, running: bool) -> None:
        self._running = running

    def running(self) -> bool:
        return self._running


def test_final_training_takes_the_cores_once_no_baseline_runs(bench: ModuleType, one_thread: None) -> None:
    jobs = [_Job(False), _Job(True)]
    callback = bench.UseFreeCores(jobs, threads=2)
    trainer = type("T", (), {"current_epoch": 2})()
    callback.on_train_batch_start(trainer, None, None, 0)
    assert torch.get_num_threads() == 1 and callback.switched_at_epoch is None
    jobs[1]._running = False
    callback.on_train_batch_start(trainer, None, None, 1)
    assert torch.get_num_threads() == 2 and callback.switched_at_epoch == 3


def test_a_row_the_deadline_stopped_says_so_and_the_table_warns(bench: ModuleType) -> None:
    searched = bench.ModelFigures("searched (abc)", 0.93, 148_000, 3_900_000, 0.09, 1547.0, 1519.0, epochs=29,
                                  planned_epochs=33)
    baseline = bench.ModelFigures("resnet_small", 0.936, 308_000, 3_470_000, 0.05, 1400.0, 624.0, epochs=33)
    text = bench.format_results([searched, baseline], {"total": 3300.0}, 33)
    assert "| 29 of 33 (deadline) |" in text and "| 33 |" in text
    assert "Not every network trained the same epochs (29 of 33 (deadline), 33)" in text
    assert "Not every" not in bench.format_results([baseline], {"total": 1.0}, 33)


def test_a_row_whose_epochs_were_shortened_says_by_how_much(bench: ModuleType) -> None:
    summary = {"best": {"arch_id": "abc", "metrics": {"model/params": 10, "model/macs": 20}},
               "test": {"test/acc": 0.9}, "final_epochs": 31, "final_epochs_trained": 31,
               "final_stopped_by_deadline": False, "final_limit_train_batches": 0.82}
    row = bench.searched_figures(summary, 1.0)
    assert (row.epochs, row.planned_epochs, row.images_share) == (31, None, pytest.approx(0.82))
    assert bench.format_epochs(row, 31) == "31 (82% of the images each)"
    baseline = bench.ModelFigures("resnet_small", 0.93, 308_000, 3_470_000, 0.05, 1400.0, 624.0, epochs=31)
    assert "Not every network trained the same epochs" in bench.format_results([row, baseline], {"total": 1.0}, 31)
    assert bench.images_share(0.41, 0.5) == pytest.approx(0.82) and bench.images_share(1.0, 1.0) == 1.0
    assert bench.images_share(200, 1.0) == 1.0  # a batch count is not a share


def test_searched_row_reads_the_epochs_the_final_training_ran(bench: ModuleType) -> None:
    summary = {"best": {"arch_id": "abc", "metrics": {"model/params": 10, "model/macs": 20}},
               "test": {"test/acc": 0.9}, "final_epochs": 33, "final_epochs_trained": 29,
               "final_stopped_by_deadline": True}
    row = bench.searched_figures(summary)
    assert (row.epochs, row.planned_epochs) == (29, 33)
    summary.update(final_epochs_trained=33, final_stopped_by_deadline=False)
    assert (bench.searched_figures(summary).epochs, bench.searched_figures(summary).planned_epochs) == (33, None)


def test_each_row_says_the_precision_it_trained_in(bench: ModuleType) -> None:
    summary = {"best": {"arch_id": "abc", "metrics": {"model/params": 10, "model/macs": 20}},
               "test": {"test/acc": 0.9, "train/bf16": 1.0}, "final_epochs": 31}
    searched = bench.searched_figures(summary, 1.0)
    baseline = bench.ModelFigures("mobilenet_v3_small", 0.93, 1_527_000, 4_930_000, 0.4, 3000.0, 2990.0, epochs=31)
    assert (searched.precision, baseline.precision) == ("bf16-mixed", "32")
    text = bench.format_results([searched, baseline], {"total": 1.0}, 31)
    assert "| epochs | precision |" in text
    assert "| 31 | bfloat16 autocast | " in text and "| 31 | float32 | " in text


def test_the_final_training_s_core_share_follows_the_baselines_priorities(bench: ModuleType) -> None:
    # one thread at nice 0 beside MobileNetV3-Small at nice 0 and two baselines at nice 5, on two cores
    assert bench.final_core_share(2, [5, 0, 5]) == pytest.approx(2 / (2 + 2 * 1.25 ** -5))
    assert bench.final_core_share(2, [0]) == 1.0 and bench.final_core_share(1, [0]) == 0.5
    assert bench.final_core_share(4, []) == 1.0


@pytest.mark.parametrize("configured", ["auto", "32", "bf16-mixed"])
def test_baselines_precisions_are_chosen_once_in_planning(bench: ModuleType, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch, configured: str) -> None:
    data = write_fashion(tmp_path / "fashion", n_train=200, n_test=40)
    cfg = bench.compose_config("fashion_mnist", tmp_path / "out", True, str(data),
                               [f"evaluator.precision={configured}"])
    timed: list[tuple[str, str]] = []
    speed = {("two_conv_cnn", "32"): 1000.0, ("two_conv_cnn", "bf16-mixed"): 1500.0,
             ("resnet_small", "32"): 1000.0, ("resnet_small", "bf16-mixed"): 1050.0}

    def throughput(model: torch.nn.Module, *args: object, precision: str = "32", **kwargs: object) -> float:
        name = "two_conv_cnn" if count_params(model) < 100_000 else "resnet_small"
        timed.append((name, precision))
        return speed[name, precision]

    monkeypatch.setattr(bench, "measure_throughput", throughput)
    monkeypatch.setattr(bench, "cpu_has_native_bf16", lambda: True)
    measured = bench.measure_baselines(cfg, ["two_conv_cnn", "resnet_small"], cores=1, extra_s=0.0)
    expected = ({"two_conv_cnn": "bf16-mixed", "resnet_small": "32"} if configured == "auto"
                else dict.fromkeys(["two_conv_cnn", "resnet_small"], configured))
    assert measured.precisions == expected and all(p != "auto" for _, p in timed)
    # an epoch: the images over the chosen precision's speed
    assert measured.epoch_cpu["two_conv_cnn"] / measured.epoch_cpu["resnet_small"] == pytest.approx(
        speed["resnet_small", expected["resnet_small"]] / speed["two_conv_cnn", expected["two_conv_cnn"]])


def test_a_baseline_worker_trains_in_the_precision_it_is_given(bench: ModuleType, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               one_thread: None) -> None:
    data = write_fashion(tmp_path / "fashion", n_train=200, n_test=40)
    cfg = bench.compose_config("fashion_mnist", tmp_path / "out", True, str(data),
                               ["evaluator.precision=auto", "evaluator.final_max_epochs=1"])
    config_file = tmp_path / "config.yaml"
    config_file.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    monkeypatch.setattr(precision_module, "training_speed", lambda *a, **k: pytest.fail("timed in the worker"))
    bench.baseline_worker("two_conv_cnn", config_file, tmp_path / "baselines", precision="bf16-mixed")
    figures = json.loads((tmp_path / "baselines" / "two_conv_cnn" / "figures.json").read_text())
    assert figures["precision"] == "bf16-mixed" and figures["epochs"] == 1
    command = bench.worker_command("two_conv_cnn", config_file, tmp_path, 5, "bf16-mixed")  # what a job starts
    assert command[command.index("--worker-precision") + 1] == "bf16-mixed"
    assert "--worker-precision" not in bench.worker_command("two_conv_cnn", config_file, tmp_path, 5, None)
