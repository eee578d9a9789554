"""NNITunerStrategy: NNI built-in tuners propose valid architectures, learn, replay, and fail clearly."""

from __future__ import annotations

import importlib.util
import math
import sys
from functools import cached_property
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from torch import nn

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.config import ConfigError, build_node
from lightning_nas.nn import ValueChoice
from lightning_nas.results.history import History
from lightning_nas.search import run_search
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies import STRATEGIES
from lightning_nas.strategies.nni_tuner import MISSING_NNI, NNITunerStrategy

needs_nni = pytest.mark.skipif(importlib.util.find_spec("nni") is None, reason="the optional extra nni is missing")
TUNERS = ["TPE", "Random", "Evolution", "GridSearch"]


class MixedSpace(SearchSpace):
    """Int, bool, float and tuple (InputChoice-like) decisions: the values NNI must not mangle."""

    name = "mixed"

    def construct(self) -> nn.Module:
        return nn.Identity()

    @cached_property
    def decisions(self) -> dict[str, ValueChoice]:  # type: ignore[override]
        return {"depth": ValueChoice([1, 2, 3], label="depth"), "flag": ValueChoice([False, True], label="flag"),
                "ratio": ValueChoice([0.5, 1.0, 1.5], label="ratio"),
                "pick": ValueChoice([(0, 1), (0, 2), (1, 2)], label="pick"),
                "mode": ValueChoice(["x", "y"], label="mode")}


def quality(arch: Architecture) -> float:
    return sum(v == "a" for v in arch.values()) / len(arch)


class Fake:
    """Scores the share of op "a"; every architecture whose first op is "d" fails."""

    def evaluate(self, space: SearchSpace, arch: Architecture) -> EvalResult:
        if arch.get("layer0/op") == "d":
            return EvalResult.failed("boom")
        return EvalResult("ok", {"search/val_acc": quality(arch) if "layer0/op" in arch else 0.5})


def test_registered_and_validates() -> None:
    assert STRATEGIES.get("nni") is NNITunerStrategy
    with pytest.raises(ValueError, match=r"strategy.tuner 'Hyperband' is an NNI advisor"):
        NNITunerStrategy(tuner="Hyperband")
    with pytest.raises(ValueError, match=r"strategy.tuner_kwargs"):
        NNITunerStrategy(tuner_kwargs=[1])  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="setup"):
        NNITunerStrategy().ask()


def test_missing_nni_names_the_extra(monkeypatch: pytest.MonkeyPatch, wide_space: SearchSpace) -> None:
    monkeypatch.setitem(sys.modules, "nni.tools.package_utils.config_manager", None)
    with pytest.raises(ImportError, match=r"strategy=nni needs the optional extra: pip install 'lightning_nas\[nni\]'"):
        NNITunerStrategy().setup(wide_space)
    assert "lightning_nas[nni]" in MISSING_NNI


def test_partial_nni_install_names_the_missing_module(monkeypatch: pytest.MonkeyPatch, wide_space: SearchSpace) -> None:
    def broken(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("nni"):
            raise ModuleNotFoundError("No module named 'json_tricks'", name="json_tricks")
        return real_import(name, *args, **kwargs)

    real_import = __builtins__["__import__"] if isinstance(__builtins__, dict) else __builtins__.__import__
    monkeypatch.setattr("builtins.__import__", broken)
    with pytest.raises(ImportError, match=r"lightning_nas\[nni\]'.*module 'json_tricks' is missing"):
        NNITunerStrategy().setup(wide_space)


@needs_nni
def test_unknown_tuner_names_the_key(wide_space: SearchSpace) -> None:
    with pytest.raises(ValueError, match=r"strategy.tuner: 'Tpee' is not an NNI in-process tuner.*TPE"):
        NNITunerStrategy(tuner="Tpee")  # at construction, so the app stops at start with one line
    with pytest.raises(ValueError, match=r"strategy.tuner_kwargs do not fit"):
        NNITunerStrategy(tuner="Random", tuner_kwargs={"nope": 1}).setup(wide_space)


@needs_nni
@pytest.mark.parametrize("tuner", TUNERS)
def test_tuners_propose_valid_distinct_archs_deterministically(tuner: str) -> None:
    space = MixedSpace(input_shape=(1, 4, 4), num_classes=2)
    runs = []
    for _ in range(2):
        strategy = NNITunerStrategy(tuner=tuner, num_samples=20, seed=3)
        history = run_search(space, strategy, Fake(), History(), progress=False)
        runs.append([r.arch for r in history])
    archs = runs[0]
    assert runs[0] == runs[1], "same seed, same asks"
    assert len(set(archs)) == 20
    for arch in archs:
        assert space.validate(arch) == arch
        assert type(arch["flag"]) is bool and isinstance(arch["pick"], tuple) and type(arch["ratio"]) is float
        assert type(arch["depth"]) is int


@needs_nni
def test_tpe_learns_and_failures_report_a_bad_value(wide_space: SearchSpace) -> None:
    strategy = NNITunerStrategy(tuner="TPE", num_samples=40, seed=0, tuner_kwargs={"tpe_args": {"n_startup_jobs": 10}})
    history = run_search(wide_space, strategy, Fake(), History(), progress=False)
    archs = [r.arch for r in history]
    assert len(set(archs)) == 40
    assert max(quality(a) for a in archs[10:]) > max(quality(a) for a in archs[:10])
    calls = strategy.state_dict()["calls"]
    told = {tuple(sorted(c["params"].items())): c["value"] for c in calls if c["op"] == "receive"}
    failed = [told[tuple(sorted(strategy._encode(r.arch).items()))] for r in history if not r.result.ok]
    assert failed and all(math.isfinite(v) and v < 0 for v in failed)
    assert sum(c["op"] == "receive" for c in calls) >= len(history)  # a repeated suggestion is told its known value


@needs_nni
def test_tell_without_ask_is_imported(wide_space: SearchSpace) -> None:
    strategy = NNITunerStrategy(tuner="TPE", num_samples=5, seed=0)
    strategy.setup(wide_space)
    seed_arch = Architecture({f"layer{i}/op": "a" for i in range(16)})
    strategy.tell(seed_arch, EvalResult("ok", {"search/val_acc": 1.0}))
    assert strategy.state_dict()["calls"][-1] == {"op": "receive", "id": None, "value": 1.0,
                                                 "params": {f"layer{i}/op": 0 for i in range(16)}}
    assert strategy.ask() != seed_arch


@needs_nni
@pytest.mark.parametrize("tuner", ["TPE", "Evolution"])
def test_resume_replays_and_state_round_trip(tuner: str, wide_space: SearchSpace, tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    run_search(wide_space, NNITunerStrategy(tuner=tuner, num_samples=8, seed=1), Fake(), History(path),
               progress=False)
    resumed = run_search(wide_space, NNITunerStrategy(tuner=tuner, num_samples=14, seed=1), Fake(), History(path),
                         progress=False)
    first = NNITunerStrategy(tuner=tuner, num_samples=14, seed=1)
    full = run_search(wide_space, first, Fake(), History(), progress=False)
    assert [r.arch for r in resumed] == [r.arch for r in full]

    restored = NNITunerStrategy(tuner=tuner, num_samples=20, seed=1)
    restored.load_state_dict(first.state_dict())  # before setup: replayed when bound
    restored.setup(wide_space)
    assert restored.num_told == 14
    assert restored.ask() == first.ask()
    with pytest.raises(ValueError, match=r"strategy.tuner"):
        NNITunerStrategy(tuner="Random").load_state_dict(first.state_dict())


@needs_nni
def test_unknown_tuner_is_a_one_line_config_error() -> None:
    cfg = OmegaConf.create({"strategy": {"_target_": "lightning_nas.strategies.nni_tuner.NNITunerStrategy",
                                         "tuner": "Tpee"}})
    with pytest.raises(ConfigError, match=r"^strategy.tuner: 'Tpee' is not an NNI in-process tuner"):
        build_node(cfg, "strategy")
