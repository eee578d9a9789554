"""budget.time: parsing, the planner's choices, the deadline, and a whole run kept within its budget."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from torch import nn

from lightning_nas import planner as planner_module
from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.config import ConfigError, register_configs
from lightning_nas.data import DigitsDataModule
from lightning_nas.evaluators import precision as precision_module
from lightning_nas.evaluators.classifier import WarmupCosine
from lightning_nas.evaluators.train import SCREENED, TrainEvaluator
from lightning_nas.planner import (
    FINAL_EPOCH_MARGIN,
    DeadlineCallback,
    TimeBudget,
    _split_sizes,
    format_seconds,
    measure_throughput,
    parse_duration,
    set_train_batches,
    time_budget_from_config,
)
from lightning_nas.results.history import History, Record
from lightning_nas.run import keep_search_precision, run
from lightning_nas.spaces.efficient_convnet import EfficientConvNetSpace
from lightning_nas.strategies.random_search import RandomSearch


@pytest.mark.parametrize(("text", "seconds"), [("60min", 3600), ("90s", 90), ("1.5h", 5400), ("45m", 2700),
                                                ("2 minutes", 120), (30, 30), ("12", 12), (None, None), ("", None)])
def test_parse_duration(text: object, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["abc", "10 parsecs", "-5s", "0s", "1h30"])
def test_bad_duration_names_budget_time(text: str) -> None:
    with pytest.raises(ValueError, match=r"^budget\.time must be a"):
        parse_duration(text)


def test_format_seconds() -> None:
    assert format_seconds(75) == "1:15"
    assert format_seconds(3725) == "1:02:05"


def test_measure_throughput_restores_the_weights() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert measure_throughput(model, (1, 8, 8), 3, batch_size=8, steps=2, channels_last=True) > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model[0].weight.is_contiguous()


def _planned(total_s: float, **kwargs: object) -> tuple[TimeBudget, RandomSearch, TrainEvaluator,
                                                        EfficientConvNetSpace]:
    data = DigitsDataModule(max_train_samples=200, max_val_samples=60)
    evaluator = TrainEvaluator(data, max_epochs=1, latency_repeats=1)
    space = EfficientConvNetSpace((1, 8, 8), 10, width_multipliers=[0.5], depth_multipliers=[0.5])
    strategy = RandomSearch(num_samples=1000)
    budget = TimeBudget(total_s, **kwargs)  # type: ignore[arg-type]
    assert budget.plan_search(space, evaluator, strategy) is not None
    return budget, strategy, evaluator, space


def test_plan_splits_the_budget_and_sets_the_strategy_size() -> None:
    budget, strategy, _, _ = _planned(600.0, final_fraction=0.5, reserve_s=30.0)
    plan = budget.plan
    assert plan is not None and strategy.num_samples == plan.evaluations >= 1
    assert plan.final_deadline == pytest.approx(budget.end - 30.0)
    final_s = plan.final_deadline - plan.search_deadline
    assert final_s >= plan.final_epochs * plan.epoch_seconds  # the planned epochs fit their share
    assert final_s <= 0.5 * 570 + 2 * plan.epoch_seconds + 5


def test_fixed_final_epochs_leave_the_rest_to_the_search() -> None:
    budget, _, evaluator, space = _planned(600.0, final_epochs=3)
    assert budget.plan is not None and budget.plan.final_epochs == 3
    assert budget.plan_final(space, space.sample(__import__("numpy").random.default_rng(1)), evaluator) == 3
    assert evaluator.final_max_epochs == 3 and isinstance(evaluator.final_callbacks[-1], DeadlineCallback)


def test_search_stops_when_the_next_candidate_would_miss_the_deadline() -> None:
    budget, strategy, _, space = _planned(600.0)
    assert budget.plan is not None
    history = History(None)  # candidates without a duration: the deadline is the test's
    budget.on_search_start(space, history)
    arch = Architecture({})
    record = history.append(arch, EvalResult("ok", {"search/val_acc": 0.5}, duration_s=0.0))
    strategy.num_told = 1
    budget.on_candidate_end(record, history)
    assert not strategy.done  # 600 s left
    budget.plan.search_deadline = time.perf_counter()  # the deadline has come
    record = history.append(Architecture({"x": 1}), EvalResult("ok", {"search/val_acc": 0.5}, duration_s=0.0))
    strategy.num_told = 2
    budget.on_candidate_end(record, history)
    assert strategy.done and strategy.num_samples == 2


@pytest.mark.parametrize("count_reached", [False, True])
def test_the_measured_pace_replaces_the_planned_number_of_candidates(count_reached: bool) -> None:
    """The count is advice, also once reached: with time left before the search deadline (one that moved
    later), the search goes on instead of ending early."""
    budget, strategy, _, space = _planned(600.0)
    assert budget.plan is not None
    history = History(None)
    budget.on_search_start(space, history)
    budget._search_started = time.perf_counter() - 10.0  # one candidate took 10 s
    budget.plan.search_deadline = time.perf_counter() + 95.0  # room for 9 more
    # no duration on record: the deadline stays where it is (see the next test for how durations move it)
    record = history.append(Architecture({}), EvalResult("ok", {"search/val_acc": 0.5}, duration_s=0.0))
    strategy.num_told = 1
    if count_reached:
        strategy.num_samples = 1
    budget.on_candidate_end(record, history)
    assert strategy.num_samples == budget.plan.evaluations == 10 and not strategy.done


def test_candidates_measured_pace_moves_the_search_deadline() -> None:
    budget, strategy, _, space = _planned(3600.0, final_epochs=4)
    plan = budget.plan
    assert plan is not None
    plan.epoch_seconds = 3.0 * plan.candidate_seconds  # a final epoch trains three candidates' worth of images
    history = History(None)
    budget.on_search_start(space, history)
    for index, seconds in enumerate([10.0, 20.0, 30.0, 40.0, 50.0]):
        record = history.append(Architecture({"x": index}), EvalResult("ok", {"search/val_acc": 0.5},
                                                                        duration_s=seconds))
        strategy.num_told = index + 1
        budget.on_candidate_end(record, history)
    # 75th percentile of 10..50 s is 40 s per candidate: 120 s per final epoch, 4 epochs
    assert plan.epoch_seconds == pytest.approx(120.0)
    assert plan.search_deadline == pytest.approx(plan.final_deadline - 480.0)
    failed = history.append(Architecture({"x": 9}), EvalResult.failed("boom", {}, 500.0))
    budget.on_candidate_end(failed, history)  # a failure's duration does not count
    assert plan.epoch_seconds == pytest.approx(120.0)


def test_a_multi_fidelity_job_counts_as_its_share_of_a_candidate() -> None:
    budget, strategy, _, space = _planned(3600.0, final_epochs=4)
    plan = budget.plan
    assert plan is not None and plan.candidate_epochs == 1.0  # the evaluator trains a candidate one epoch
    history = History(None)
    budget.on_search_start(space, history)
    # rung 0 (1 epoch, 10 s) and a promotion from 1 to 3 epochs (2 epochs run, 20 s): both 10 s per candidate
    for index, (seconds, epochs_run) in enumerate([(10.0, 1.0), (20.0, 2.0), (10.0, 1.0), (20.0, 2.0)]):
        metrics = {"search/val_acc": 0.5, "train/cpu_s": seconds, "train/epochs_run": epochs_run}
        record = history.append(Architecture({"x": index}), EvalResult("ok", metrics, duration_s=seconds))
        strategy.num_told = index + 1
        budget.on_candidate_end(record, history)
    assert budget._paces == pytest.approx([10.0] * 4)


def test_each_new_best_s_final_epoch_is_timed_and_moves_the_search_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    budget, strategy, _, space = _planned(3600.0, final_epochs=4)
    plan = budget.plan
    assert plan is not None
    timed: list[tuple[int, bool]] = []

    def fake_timing(self: TimeBudget, space: object, arch: Architecture, trainer: object,
                    own_core: bool = False) -> tuple[float, float]:
        timed.append((arch["x"], own_core))
        return {0: 30.0, 2: 50.0}[arch["x"]], 1.0

    monkeypatch.setattr(TimeBudget, "_final_epoch_seconds", fake_timing)
    budget.score = lambda result: result.metrics.get("search/val_acc", -math.inf)
    history = History(None)
    budget.on_search_start(space, history)
    for index, accuracy in enumerate([0.5, 0.4, 0.6]):
        metrics = {"search/val_acc": accuracy, "train/cpu_s": 500.0}  # a slow pace: ignored once a best is timed
        record = history.append(Architecture({"x": index}), EvalResult("ok", metrics, duration_s=500.0))
        strategy.num_told = index + 1
        budget.on_candidate_end(record, history)
        if index == 1:  # the first best's timed epochs, not the candidates' pace, set the deadline
            assert plan.search_deadline == pytest.approx(plan.final_deadline - 4 * 30.0)
    assert timed == [(0, True), (2, True)]  # a worse candidate is not timed
    assert plan.epoch_seconds == 50.0 and plan.search_deadline == pytest.approx(plan.final_deadline - 4 * 50.0)


def test_a_cheaper_new_best_does_not_shrink_the_time_set_aside(monkeypatch: pytest.MonkeyPatch) -> None:
    """A later best may again be as costly as an earlier one, and one found late can no longer move the deadline:
    the search leaves time for the costliest best so far."""
    budget, strategy, _, space = _planned(3600.0, final_epochs=4)
    plan = budget.plan
    assert plan is not None
    monkeypatch.setattr(TimeBudget, "_final_epoch_seconds", lambda self, space, arch, trainer, own_core=False:
                        ({0: 50.0, 1: 30.0}[arch["x"]], 1.0))
    budget.score = lambda result: result.metrics.get("search/val_acc", -math.inf)
    history = History(None)
    budget.on_search_start(space, history)
    for index, accuracy in enumerate([0.5, 0.6]):  # the second, cheaper network is the new best
        metrics = {"search/val_acc": accuracy, "train/cpu_s": 5.0}
        record = history.append(Architecture({"x": index}), EvalResult("ok", metrics, duration_s=5.0))
        strategy.num_told = index + 1
        budget.on_candidate_end(record, history)
    assert plan.epoch_seconds == 50.0 and plan.search_deadline == pytest.approx(plan.final_deadline - 4 * 50.0)


def test_a_final_training_sharing_the_machine_gets_its_epochs_time_divided_by_its_share(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Beside other work (the flagship benchmark's baseline workers) a final epoch takes longer in wall time than
    on a core of its own: the search leaves the timed epochs' time divided by ``final_core_share``."""
    budget, strategy, _, space = _planned(3600.0, final_epochs=4, final_core_share=0.5)
    plan = budget.plan
    assert plan is not None
    shared = plan.final_deadline - plan.search_deadline
    alone_plan = _planned(3600.0, final_epochs=4)[0].plan
    assert alone_plan is not None
    assert shared > 1.5 * (alone_plan.final_deadline - alone_plan.search_deadline)  # the first plan, too
    monkeypatch.setattr(TimeBudget, "_final_epoch_seconds", lambda self, space, arch, trainer, own_core=False:
                        (30.0, 1.0))
    budget.score = lambda result: result.metrics.get("search/val_acc", -math.inf)
    history = History(None)
    budget.on_search_start(space, history)
    record = history.append(Architecture({"x": 0}), EvalResult("ok", {"search/val_acc": 0.5, "train/cpu_s": 5.0},
                                                                duration_s=5.0))
    strategy.num_told = 1
    with caplog.at_level(logging.INFO, logger="lightning_nas.planner"):
        budget.on_candidate_end(record, history)
    assert plan.epoch_seconds == 30.0  # on a core of its own
    assert plan.search_deadline == pytest.approx(plan.final_deadline - 4 * 30.0 / 0.5)
    assert "a final epoch ~30 s on a core of its own (set aside: ~60 s at 0.50 of a core" in caplog.text


@pytest.mark.parametrize("share", [0, 1.5, True, "half"])
def test_final_core_share_is_checked(share: object) -> None:
    with pytest.raises(ValueError, match=r"budget\.final_core_share must be in \(0, 1\]"):
        TimeBudget(60.0, final_core_share=share)  # type: ignore[arg-type]


def test_timing_a_final_epoch_on_one_thread_restores_the_threads() -> None:
    budget, _, evaluator, space = _planned(3600.0, final_epochs=2)
    threads = torch.get_num_threads()
    arch = space.sample(np.random.default_rng(0))
    epoch_s, fixed = budget._final_epoch_seconds(space, arch, evaluator, own_core=True)
    assert epoch_s > 0 and fixed >= 0 and torch.get_num_threads() == threads


def test_screened_candidates_are_neither_a_pace_nor_a_candidate_s_time() -> None:
    budget, strategy, _, space = _planned(3600.0, final_epochs=4)
    plan = budget.plan
    assert plan is not None
    history = History(None)
    budget.on_search_start(space, history)
    budget._search_started = time.perf_counter() - 10.0  # one trained candidate took 10 s
    plan.search_deadline = time.perf_counter() + 95.0  # room for 9 more
    trained = history.append(Architecture({}), EvalResult("ok", {"search/val_acc": 0.5}, duration_s=0.0))
    strategy.num_told = 1
    budget.on_candidate_end(trained, history)
    paces = list(budget._paces)
    for index in range(5):  # five candidates over a size budget, not trained, take (almost) no time
        record = history.append(Architecture({"x": index}), EvalResult("ok", {SCREENED: 1.0}, duration_s=0.01))
        strategy.num_told += 1
        budget.on_candidate_end(record, history)
    assert budget._paces == paces and budget._trained == 1
    # the count follows the pace over all six candidates (10 s / 6): 56 more of this mix fit in 95 s
    assert 55 <= strategy.num_samples - strategy.num_told <= 57 and not strategy.done


def test_screened_candidates_time_counts_in_the_pace_not_in_a_trained_one_s() -> None:
    """Under a latency bound a screened candidate costs an export and a timing. The count of candidates that
    fit follows the pace over all of them; the stop waits for a trained one's time, their share left out."""
    budget, strategy, _, space = _planned(3600.0)
    plan = budget.plan
    assert plan is not None
    budget._workers = 2  # two candidates at once
    history = History(None)
    budget.on_search_start(space, history)
    budget._search_started = time.perf_counter() - 200.0  # 18 screened candidates of 20 s each and 1 trained
    for index in range(18):
        record = history.append(Architecture({"x": index}), EvalResult("ok", {SCREENED: 1.0}, duration_s=20.0))
        strategy.num_told += 1
        budget.on_candidate_end(record, history)
    plan.search_deadline = time.perf_counter() + 30.0  # room for one more trained candidate (~20 s of wall)
    trained = history.append(Architecture({}), EvalResult("ok", {"search/val_acc": 0.5}, duration_s=40.0))
    strategy.num_told += 1
    budget.on_candidate_end(trained, history)
    # 200 s / 19 candidates: 2 more fit in 30 s; the stop did not take the trained one for 200 s (the old pace)
    assert strategy.num_samples == strategy.num_told + 2 and not strategy.done
    budget._search_started -= 20.0  # the next trained candidate takes its 20 s of wall
    plan.search_deadline = time.perf_counter() + 15.0  # less than a trained candidate's ~20 s
    last = history.append(Architecture({"y": 1}), EvalResult("ok", {"search/val_acc": 0.4}, duration_s=40.0))
    strategy.num_told += 1
    budget.on_candidate_end(last, history)
    assert strategy.done


def test_plan_final_sets_epochs_and_a_deadline_callback() -> None:
    budget, _, evaluator, space = _planned(600.0)
    arch = space.sample(__import__("numpy").random.default_rng(1))
    epochs = budget.plan_final(space, arch, SimpleNamespace(evaluator=evaluator))  # unwraps wrappers
    assert epochs is not None and evaluator.final_max_epochs == epochs >= 1
    assert any(isinstance(c, DeadlineCallback) for c in evaluator.final_callbacks)


def test_deadline_callback_stops_training() -> None:
    budget = TimeBudget(10.0)
    trainer = SimpleNamespace(should_stop=False, current_epoch=0, max_epochs=5)
    DeadlineCallback(budget, time.perf_counter() + 60).on_train_batch_end(trainer, None, None, None, 0)
    assert not trainer.should_stop
    DeadlineCallback(budget, time.perf_counter() - 1).on_train_batch_end(trainer, None, None, None, 0)
    assert trainer.should_stop


def test_deadline_callback_counts_epochs_and_warns_when_the_pace_misses(caplog: pytest.LogCaptureFixture) -> None:
    budget = TimeBudget(600.0)
    callback = DeadlineCallback(budget, time.perf_counter() + 600)
    trainer = SimpleNamespace(should_stop=False, current_epoch=0, max_epochs=10)
    callback.on_train_start(trainer, None)
    with caplog.at_level("WARNING", logger="lightning_nas.planner"):
        callback.on_train_epoch_end(trainer, None)  # the first epoch (one-time costs) sets no pace
        callback._first_epoch_end = time.perf_counter() - 100  # the second epoch took ~100 s: ~7 of 10 fit
        trainer.current_epoch = 1
        callback.on_train_epoch_end(trainer, None)
        trainer.current_epoch = 2
        callback.on_train_epoch_end(trainer, None)  # warned once
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "about 7 of the 10 planned fit before the deadline" in warnings[0], warnings
    assert callback.epochs_trained == 3 and not callback.stopped_early
    callback.deadline = time.perf_counter() - 1
    trainer.current_epoch = 3
    callback.on_train_batch_end(trainer, None, None, None, 0)  # stopped inside epoch 4: 3 epochs trained
    callback.on_train_epoch_end(trainer, None)
    assert trainer.should_stop and callback.stopped_early and callback.epochs_trained == 3


def test_deadline_callback_is_quiet_when_the_epochs_fit(caplog: pytest.LogCaptureFixture) -> None:
    callback = DeadlineCallback(TimeBudget(600.0), time.perf_counter() + 600)
    trainer = SimpleNamespace(should_stop=False, current_epoch=0, max_epochs=3)
    callback.on_train_start(trainer, None)
    with caplog.at_level("WARNING", logger="lightning_nas.planner"):
        callback.on_train_epoch_end(trainer, None)
        callback._first_epoch_end = time.perf_counter() - 100  # 100 s an epoch: 2 + 5 fit, 3 planned
        trainer.current_epoch = 1
        callback.on_train_epoch_end(trainer, None)
    assert not [r for r in caplog.records if r.levelname == "WARNING"] and callback.epochs_trained == 2


def test_config_without_time_plans_nothing() -> None:
    assert time_budget_from_config(OmegaConf.create({"time": None}), 0.0) is None
    budget = time_budget_from_config(OmegaConf.create({"time": "2min", "final_epochs": 4}), 0.0, export_top_k=1)
    assert budget is not None and budget.total_s == 120 and budget.fixed_epochs == 4 and budget.reserve_s > 20


def test_final_epoch_estimate_leaves_the_first_fit_s_one_time_costs_out(monkeypatch: pytest.MonkeyPatch) -> None:
    budget, _, evaluator, space = _planned(600.0)
    assert budget.plan is not None
    calls: list[int] = []

    def probe(space: object, arch: object, evaluator: object, batches: int, own_core: bool = False) -> float:
        calls.append(batches)
        return (5.0 if len(calls) == 1 else 0.0) + 1.0 + 0.05 * batches  # the first fit pays 5 s once

    monkeypatch.setattr(TimeBudget, "_probe", staticmethod(probe))
    budget.plan.final_deadline = time.perf_counter() + 20.0
    epochs = budget.plan_final(space, space.sample(np.random.default_rng(2)), evaluator)
    k = calls[1]
    assert calls == [max(2, k // 2), k, 3 * k]
    train_n, _, batch = _split_sizes(evaluator)
    epoch_s = FINAL_EPOCH_MARGIN * math.ceil(train_n / batch) * 0.05  # 0.05 s per batch once warm
    assert abs(epochs - 19.0 / epoch_s) <= 1.0


def test_final_epochs_fill_the_time_with_a_share_of_each_epoch() -> None:
    budget, _, evaluator, space = _planned(600.0)
    assert budget.plan is not None
    budget.plan.final_deadline = time.perf_counter() + 0.5  # less than one epoch left
    epochs = budget.plan_final(space, space.sample(np.random.default_rng(2)), evaluator)
    assert epochs == 1 and 0.05 <= evaluator.final_limit_train_batches < 1.0


def test_fixed_final_epochs_that_miss_the_deadline_train_a_share_of_each_epoch(
        caplog: pytest.LogCaptureFixture) -> None:
    """budget.final_epochs stays (the baselines train as many), and the schedule runs to its end: each epoch
    trains on a share of the images rather than the deadline cutting the last epochs."""
    budget, _, evaluator, space = _planned(600.0, final_epochs=3)
    assert budget.plan is not None
    budget.plan.final_deadline = time.perf_counter() + 0.5  # other work slowed everything: not three epochs
    with caplog.at_level("WARNING", logger="lightning_nas.planner"):
        epochs = budget.plan_final(space, space.sample(np.random.default_rng(2)), evaluator)
    assert epochs == 3 == evaluator.final_max_epochs and 0.05 <= evaluator.final_limit_train_batches < 1.0
    assert "3 final epochs of" in caplog.text and "of the images instead" in caplog.text


def test_fixed_final_epochs_that_fit_keep_every_image() -> None:
    budget, _, evaluator, space = _planned(3600.0, final_epochs=2)
    assert budget.plan_final(space, space.sample(np.random.default_rng(2)), evaluator) == 2
    assert evaluator.final_limit_train_batches == 1.0


def test_a_final_share_of_an_epoch_is_at_least_one_batch() -> None:
    """No time left on little data (4 batches an epoch): the share must still be one batch, which Lightning
    requires (0.05 of 4 batches stopped the run in a MisconfigurationException before the test report)."""
    budget, _, evaluator, space = _planned(600.0)
    assert budget.plan is not None
    budget.plan.final_deadline = time.perf_counter() - 10.0  # the search used up the time
    budget.plan_final(space, space.sample(np.random.default_rng(2)), evaluator)
    length = len(evaluator.datamodule.train_dataloader())
    assert length < 20 and int(length * evaluator.final_limit_train_batches) >= 1


def _cfg(tmp_path: Path, *overrides: str):
    register_configs()
    with initialize_config_module(config_module="lightning_nas.conf", version_base="1.3"):
        return compose(config_name="config", overrides=[
            "experiment=efficient_convnet", f"output_dir={tmp_path}", "logger=none", "progress=false",
            "data.max_train_samples=1000", "data.max_val_samples=200", "data.max_test_samples=200",
            "evaluator.max_epochs=1", "evaluator.latency_repeats=3", "hardware.repeats=3", *overrides])


def test_bad_budget_time_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^budget\.time must be a duration"):
        run(_cfg(tmp_path, "budget.time=soon"))


@pytest.mark.slow
def test_run_keeps_within_ten_percent_of_budget_time(tmp_path: Path) -> None:
    budget_s = 40.0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # timings on a shared 2-core machine: one thread does not fight for the cores
    try:
        summary = run(_cfg(tmp_path, f"budget.time={budget_s:.0f}s", "search_space.resolutions=[8]",
                           "search_space.width_multipliers=[0.5]"))
    finally:
        torch.set_num_threads(threads)
    # Never more than 10% over. Under it, whole final epochs and two noisy probe fits on a 40 s budget can
    # leave a few seconds unused (35.0 s measured once on a loaded machine): at least 80% is required here.
    assert 0.8 * budget_s <= summary["total_seconds"] <= 1.1 * budget_s, summary["total_seconds"]
    assert summary["evaluations"] >= 2 and summary["test"]["test/acc"] > 0.1
    assert summary["final_epochs"] >= 1  # what the planner chose, for the benchmark's table
    assert 0 < summary["final_limit_train_batches"] <= 1.0  # and the share of each epoch it kept
    assert 0 <= summary["final_epochs_trained"] <= summary["final_epochs"]  # 0: stopped inside the first
    assert summary["final_stopped_by_deadline"] is (summary["final_epochs_trained"] < summary["final_epochs"])


def test_the_plan_times_candidates_in_the_precision_their_fits_will_use(monkeypatch: pytest.MonkeyPatch) -> None:
    timed: list[str] = []

    def speed(*args: object, precision: str = "32", **kwargs: object) -> float:
        timed.append(precision)
        return {"32": 1000.0, "bf16-mixed": 2000.0}[precision]

    monkeypatch.setattr(precision_module, "training_speed", speed)
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(planner_module, "training_speed", speed)
    data = DigitsDataModule(max_train_samples=200, max_val_samples=60)
    evaluator = TrainEvaluator(data, max_epochs=1, latency_repeats=1, precision="auto")
    space = EfficientConvNetSpace((1, 8, 8), 10, width_multipliers=[0.5], depth_multipliers=[0.5],
                                  kernel_sizes=[3], expansions=[1], se_ratios=[0.0])
    assert TimeBudget(600.0).plan_search(space, evaluator, RandomSearch(num_samples=1000)) is not None
    # each structure's choice is the evaluator's (3 timings, once per structure), and each of the 3 sampled
    # candidates' speed is timed in it
    structures = len(evaluator._precision_choices)
    assert set(evaluator._precision_choices.values()) == {"bf16-mixed"} and 1 <= structures <= 3
    assert timed.count("32") == 2 * structures and len(timed) == 3 * structures + 3 and timed[-1] == "bf16-mixed"


def test_the_final_training_keeps_the_precision_the_search_fit_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision_module, "training_speed", lambda *a, **k: pytest.fail("timed again"))
    data = DigitsDataModule(max_train_samples=64, max_val_samples=32, batch_size=32)
    evaluator = TrainEvaluator(data, max_epochs=1, latency_repeats=1, precision="auto")
    space = EfficientConvNetSpace((1, 8, 8), 10, width_multipliers=[0.5], depth_multipliers=[0.5])
    arch = space.sample(np.random.default_rng(1))
    best = Record(0, arch, EvalResult("ok", {"search/val_acc": 0.5, "train/bf16": 1.0}), 0.0, {})
    keep_search_precision(SimpleNamespace(evaluator=evaluator, space=space), best)
    assert evaluator.training_precision(evaluator.build(space, arch)) == "bf16-mixed"


def _fit_with(callbacks: list[L.Callback], epochs: int, limit: float) -> tuple[TrainEvaluator, object]:
    data = DigitsDataModule(max_train_samples=320, max_val_samples=64, batch_size=32)  # 10 batches an epoch
    evaluator = TrainEvaluator(data, max_epochs=epochs, latency_repeats=1, final_warmup_epochs=1)
    evaluator.final_callbacks = callbacks
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    module = evaluator.fit_model(model, epochs, num_classes=10, limit_train_batches=limit, final=True)
    return evaluator, module


class _Counter(L.Callback):
    def __init__(self) -> None:
        self.train_batches: list[int] = []
        self.last_lr = math.nan

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.train_batches.append(0)

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        self.train_batches[-1] += 1
        self.last_lr = trainer.optimizers[0].param_groups[0]["lr"]


def test_a_final_training_planned_short_gets_its_images_back_once_its_pace_is_known() -> None:
    counter = _Counter()
    deadline = DeadlineCallback(TimeBudget(600.0), time.perf_counter() + 600, max_share=1.0)
    _, module = _fit_with([deadline, counter], epochs=4, limit=0.5)
    # epochs 1-2 at the plan's 5 of 10 batches; from the second epoch's pace all 10 fit: epochs 3-4 take them
    assert counter.train_batches == [5, 5, 10, 10] == deadline.batches_per_epoch
    assert deadline.epochs_trained == 4 and not deadline.stopped_early
    assert module.fit_metrics["train/steps"] == 30 and counter.last_lr < 1e-4  # the schedule ended with them
    assert deadline.rescaled and deadline.mean_share == pytest.approx(0.75)


def test_without_a_share_to_re_plan_the_batches_stay() -> None:
    counter = _Counter()
    deadline = DeadlineCallback(TimeBudget(600.0), time.perf_counter() + 600)
    _fit_with([deadline, counter], epochs=3, limit=0.5)
    assert counter.train_batches == [5, 5, 5] and not deadline.rescaled and deadline.mean_share == 0.5
    with pytest.raises(ValueError, match="max_share must be in"):
        DeadlineCallback(TimeBudget(600.0), 0.0, max_share=1.5)


def _fake_trainer(schedule: WarmupCosine, batches: int = 100) -> SimpleNamespace:
    loader = SimpleNamespace(limits=None, flattened=["loader"])
    return SimpleNamespace(fit_loop=SimpleNamespace(_combined_loader=loader, max_batches=batches),
                           num_training_batches=batches, max_epochs=10, global_step=200, accumulate_grad_batches=1,
                           val_check_interval=1.0, val_check_batch=batches, limit_train_batches=0.5,
                           lr_scheduler_configs=[SimpleNamespace(interval="step",
                                                                 scheduler=SimpleNamespace(lr_lambdas=[schedule]))])


def test_a_final_training_running_late_trains_fewer_images_instead_of_being_cut(
        caplog: pytest.LogCaptureFixture) -> None:
    schedule = WarmupCosine(0, 1000)
    trainer = _fake_trainer(schedule)
    now = 1000.0
    deadline = DeadlineCallback(TimeBudget(600.0), now + 400.0, max_share=1.0)
    deadline.full_batches, deadline.epochs_trained = 200, 2
    # 8 epochs left, 100 batches took 60 s: 480 s needed, 400 left -> 400 / (8 x 0.6 x margin) batches
    with caplog.at_level("INFO", logger="lightning_nas.planner"):
        assert deadline._rescale(trainer, now, 60.0)
    expected = math.floor(400.0 / (8 * 0.6 * FINAL_EPOCH_MARGIN))
    assert trainer.fit_loop.max_batches == trainer.val_check_batch == trainer.limit_train_batches == expected
    assert trainer.fit_loop._combined_loader.limits == [expected]
    assert schedule.total_steps == 200 + 8 * expected and "the remaining 8 train on" in caplog.text
    # a pace that fits: within the dead band nothing changes
    trainer.num_training_batches = expected
    assert not deadline._rescale(trainer, now, 0.6 * expected)
    # a little short of every image, with time to spare: the epochs take them all, however small the change
    deadline.deadline = now + 10_000.0
    trainer.num_training_batches = 197
    assert deadline._rescale(trainer, now, 0.6 * 197) and trainer.fit_loop.max_batches == 200
    trainer.num_training_batches = 200
    assert not deadline._rescale(trainer, now, 0.6 * 200)
    # another scheduler does not follow a change: the batches stay
    trainer.lr_scheduler_configs[0].scheduler = SimpleNamespace(lr_lambdas=[lambda step: 1.0])
    deadline.deadline = now + 400.0
    assert not deadline._rescale(trainer, now, 60.0) and trainer.fit_loop.max_batches == 200


def test_set_train_batches_needs_loaded_training_data() -> None:
    trainer = SimpleNamespace(fit_loop=SimpleNamespace(_combined_loader=None, max_batches=10))
    assert not set_train_batches(trainer, 5) and trainer.fit_loop.max_batches == 10
