"""HyperbandSearch: ASHA / Hyperband promotion on scripted learning curves, continuation, resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.evaluators.multi_fidelity import TrainMultiFidelity
from lightning_nas.evaluators.train import SCREENED, TrainEvaluator
from lightning_nas.objectives.constraints import parse_constraints
from lightning_nas.results.history import History
from lightning_nas.search import ResumeError, run_search
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies import STRATEGIES
from lightning_nas.strategies.hyperband import HyperbandSearch, rung_epochs


def quality(arch: Architecture) -> float:
    """Final accuracy of an architecture: the share of layers using op "a"."""
    return sum(v == "a" for v in arch.values()) / len(arch)


class ScriptedCurves:
    """accuracy(arch, e) = quality(arch) * e / (e + 1): a known learning curve per architecture."""

    def __init__(self) -> None:
        self.calls: list[tuple[Architecture, int, Any]] = []

    def evaluate_at(self, space: SearchSpace, arch: Architecture, epochs: int,
                    resume_from: Any | None) -> tuple[EvalResult, Any]:
        self.calls.append((arch, epochs, resume_from))
        if resume_from is not None:
            assert resume_from["arch"] == arch.digest() and resume_from["epochs"] < epochs
        state = {"arch": arch.digest(), "epochs": epochs, "previous": resume_from}
        return EvalResult("ok", {"search/val_acc": quality(arch) * epochs / (epochs + 1)}), state


def test_registered_and_ladder() -> None:
    assert STRATEGIES.get("hyperband") is HyperbandSearch
    assert rung_epochs(1, 9, 3) == [1, 3, 9]
    assert rung_epochs(1, 10, 3) == [1, 3, 9, 10]
    assert rung_epochs(2, 2, 3) == [2]
    with pytest.raises(ValueError, match="mode"):
        HyperbandSearch(mode="bohb")
    with pytest.raises(ValueError, match="max_epochs"):
        HyperbandSearch(min_epochs=3, max_epochs=2)


def test_asha_promotes_top_third_and_continues_from_state(wide_space: SearchSpace) -> None:
    search = HyperbandSearch(num_samples=40, seed=0, min_epochs=1, max_epochs=9, eta=3, mode="asha")
    fake = ScriptedCurves()
    history = run_search(wide_space, search, fake, History(), progress=False)
    assert len(history) == len(fake.calls) == 40
    rungs: dict[int, list[tuple[Architecture, float]]] = {0: [], 1: [], 2: []}
    for record, (arch, epochs, resume) in zip(history, fake.calls, strict=True):
        rung = record.extra["rung"]
        assert record.extra["epochs"] == epochs == [1, 3, 9][rung] and record.arch == arch
        if rung == 0:
            assert resume is None
        else:  # promoted: in the top third of the rung below when it was asked, continuing its state
            below = sorted(rungs[rung - 1], key=lambda item: -item[1])
            assert arch in [a for a, _ in below[: len(below) // 3]]
            assert resume["arch"] == arch.digest() and resume["epochs"] == [1, 3, 9][rung - 1]
        rungs[rung].append((arch, record.result.metrics["search/val_acc"]))
    assert history[3].extra["rung"] == 1  # after 3 rung-0 results the best goes up at once
    assert history[3].arch == max(rungs[0][:3], key=lambda item: item[1])[0]
    assert rungs[2], "some candidate must reach the top rung"
    assert len({a for a, _ in rungs[0]}) == len(rungs[0])  # new candidates are never repeats


def test_hyperband_brackets(wide_space: SearchSpace) -> None:
    search = HyperbandSearch(num_samples=22, seed=1, min_epochs=1, max_epochs=9, eta=3, mode="hyperband")
    fake = ScriptedCurves()
    history = run_search(wide_space, search, fake, History(), progress=False)
    rungs = [r.extra["rung"] for r in history]
    assert rungs == [0] * 9 + [1] * 3 + [2] + [1] * 5 + [2] + [2] * 3
    first = sorted(history.records[:9], key=lambda r: -r.result.metrics["search/val_acc"])
    assert {r.arch for r in history.records[9:12]} == {r.arch for r in first[:3]}
    assert all(resume is None for _, _, resume in fake.calls[13:18])  # a new bracket starts from scratch
    assert fake.calls[18][2] is not None  # ... and continues its own promotions


def test_resume_replays_history(wide_space: SearchSpace, tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    run_search(wide_space, HyperbandSearch(num_samples=10, seed=2), ScriptedCurves(), History(path), progress=False)
    resumed = run_search(wide_space, HyperbandSearch(num_samples=25, seed=2), ScriptedCurves(), History(path),
                         progress=False)
    full = run_search(wide_space, HyperbandSearch(num_samples=25, seed=2), ScriptedCurves(), History(), progress=False)
    assert [(r.arch, r.extra["epochs"]) for r in resumed] == [(r.arch, r.extra["epochs"]) for r in full]
    with pytest.raises(ResumeError):
        run_search(wide_space, HyperbandSearch(num_samples=30, seed=3), ScriptedCurves(), History(path), progress=False)


def test_state_dict_round_trip_and_ask_tell(wide_space: SearchSpace) -> None:
    search = HyperbandSearch(num_samples=12, seed=4)
    search.setup(wide_space)
    for _ in range(7):
        arch = search.ask()
        search.tell(arch, EvalResult("ok", {"search/val_acc": quality(arch)}))
    assert search.num_told == 7
    state = json.loads(json.dumps(search.state_dict()))
    other = HyperbandSearch(num_samples=12, seed=4)
    other.setup(wide_space)
    other.load_state_dict(state)
    assert other.num_told == 7 and other.ask_job() == search.ask_job()


class Counting(TensorDataset):
    """Counts the samples read, to tell a continued fit from one started over."""

    reads = 0

    def __getitem__(self, index: Any) -> Any:
        Counting.reads += 1
        return super().__getitem__(index)


class TinyData(L.LightningDataModule):
    input_shape = (1, 8, 8)
    num_classes = 10

    def setup(self, stage: str | None = None) -> None:
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(64, 1, 8, 8, generator=g), torch.randint(0, 10, (64,), generator=g)

    def train_dataloader(self) -> DataLoader[Any]:
        return DataLoader(Counting(self.x, self.y), batch_size=32, shuffle=True)

    def val_dataloader(self) -> DataLoader[Any]:
        return DataLoader(TensorDataset(self.x, self.y), batch_size=32)


def test_train_multi_fidelity_continues_checkpoint(toy_space: SearchSpace, tmp_path: Path) -> None:
    evaluator = TrainEvaluator(TinyData(), max_epochs=1, latency_repeats=1)
    fidelity = TrainMultiFidelity(evaluator, folder=str(tmp_path))
    arch = toy_space.sample(np.random.default_rng(0))
    first, ckpt = fidelity.evaluate_at(toy_space, arch, 1, None)
    assert first.ok and Path(ckpt).is_file() and first.metrics["train/steps"] == 2
    Counting.reads = 0
    second, ckpt2 = fidelity.evaluate_at(toy_space, arch, 3, ckpt)
    assert second.ok, second.error
    assert Counting.reads == 2 * 64 + 64  # two more epochs plus BatchNorm recalibration, not three
    assert second.metrics["train/steps"] == 6 and second.metrics["train/epochs"] == 3  # 2 steps/epoch, continued
    assert ckpt2 != ckpt and "model/params" in second.metrics


def test_a_promotion_trains_on_a_schedule_to_its_own_budget(toy_space: SearchSpace, tmp_path: Path) -> None:
    """The checkpoint's learning-rate schedule ended with its budget: a promotion decays to the new one instead of
    restoring the old end (which left the learning rate at 0, so a promoted candidate never changed)."""
    fidelity = TrainMultiFidelity(TrainEvaluator(TinyData(), max_epochs=1, latency_repeats=1), folder=str(tmp_path))
    arch = toy_space.sample(np.random.default_rng(0))
    _, ckpt = fidelity.evaluate_at(toy_space, arch, 1, None)
    _, ckpt2 = fidelity.evaluate_at(toy_space, arch, 3, ckpt)
    before, after = (torch.load(path, weights_only=False) for path in (ckpt, ckpt2))
    weights = [k for k, v in before["state_dict"].items() if k.endswith("weight") and v.dim() > 1]
    assert weights and all(not torch.equal(before["state_dict"][k], after["state_dict"][k]) for k in weights)
    schedules = [c["lr_schedulers"][0]["lr_lambdas"][0]["total_steps"] for c in (before, after)]
    assert schedules == [2, 6]  # 2 steps an epoch: the promotion's decay ends at its own 3 epochs


def test_train_multi_fidelity_reports_epochs_run_and_screens(toy_space: SearchSpace, tmp_path: Path) -> None:
    evaluator = TrainEvaluator(TinyData(), max_epochs=1, latency_repeats=1)
    fidelity = TrainMultiFidelity(evaluator, folder=str(tmp_path))
    arch = toy_space.sample(np.random.default_rng(0))
    first, ckpt = fidelity.evaluate_at(toy_space, arch, 1, None)
    second, _ = fidelity.evaluate_at(toy_space, arch, 3, ckpt)
    assert first.metrics["train/epochs_run"] == 1 and second.metrics["train/epochs_run"] == 2  # a promotion's share
    assert first.metrics["train/cpu_s"] > 0 and second.metrics["train/cpu_s"] > 0
    params = first.metrics["model/params"]
    evaluator.screen_constraints = parse_constraints({"max_params": params - 1})
    Counting.reads = 0
    screened, state = fidelity.evaluate_at(toy_space, arch, 3, ckpt)
    assert screened.ok and screened.metrics[SCREENED] == 1.0 and state is None
    assert Counting.reads == 0 and "search/val_acc" not in screened.metrics  # not trained


def test_asha_ranks_only_trained_candidates_in_a_rung(wide_space: SearchSpace) -> None:
    class HalfScreened(ScriptedCurves):
        """About half the architectures (odd digests) break a size constraint: screened, not trained."""

        def evaluate_at(self, space: SearchSpace, arch: Architecture, epochs: int,
                        resume_from: Any | None) -> tuple[EvalResult, Any]:
            if int(arch.digest(), 16) % 2:
                self.calls.append((arch, epochs, resume_from))
                return EvalResult("ok", {SCREENED: 1.0, "model/params": 2e6}), None
            return super().evaluate_at(space, arch, epochs, resume_from)

    search = HyperbandSearch(num_samples=24, seed=0, min_epochs=1, max_epochs=3, eta=3, mode="asha")
    fake = HalfScreened()
    history = run_search(wide_space, search, fake, History(), progress=False)
    screened = {r.arch for r in history if r.result.metrics.get(SCREENED)}
    promoted = [r for r in history if r.extra["rung"] == 1]
    assert screened and promoted
    assert not screened & {r.arch for r in promoted}  # a screened candidate is never promoted
    trained = [r for r in history if r.extra["rung"] == 0 and r.arch not in screened]
    # promotions go by the trained candidates alone: after 3 trained ones (however many screened), the best goes up
    first = history.records.index(promoted[0])
    assert len([r for r in trained if r.index < first]) == 3


def test_a_crafted_checkpoint_path_runs_nothing(toy_space: SearchSpace, tmp_path: Path, crafted_pickle) -> None:
    path, marker = crafted_pickle  # a history's "state" names the checkpoint a rung continues from
    fidelity = TrainMultiFidelity(TrainEvaluator(TinyData(), max_epochs=1, latency_repeats=1), folder=str(tmp_path))
    result, state = fidelity.evaluate_at(toy_space, toy_space.sample(np.random.default_rng(0)), 2, str(path))
    assert not result.ok and state is None
    assert not marker.exists()
