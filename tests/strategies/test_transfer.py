"""Warm-started evolution: the source run's best architectures open the new search."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from lightning_nas.arch import Architecture
from lightning_nas.evaluators.base import EvalResult
from lightning_nas.results.history import History
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies.transfer import WarmStartEvolution, best_so_far, load_source_run, transfer_plot


def _result(arch: Architecture) -> EvalResult:
    """A synthetic score: the fraction of layers using op ``a``."""
    return EvalResult("ok", {"search/val_acc": sum(v == "a" for v in arch.values()) / len(arch)})


def _source_run(space: SearchSpace, tmp_path: Path) -> tuple[Path, list[Architecture]]:
    rng = np.random.default_rng(7)
    history = History(tmp_path / "source" / "history.jsonl")
    archs = [space.sample(rng) for _ in range(12)]
    for arch in archs:
        history.append(arch, _result(arch))
    history.append(archs[0], EvalResult.failed("boom"))
    best = max(archs, key=lambda a: _result(a).metrics["search/val_acc"])
    best.save(tmp_path / "source" / "best" / "arch.json")
    ranked = sorted(archs, key=lambda a: -_result(a).metrics["search/val_acc"])
    return tmp_path / "source", ranked


def _run(strategy: WarmStartEvolution, space: SearchSpace, n: int) -> list[Architecture]:
    asked = []
    for _ in range(n):
        arch = strategy.ask()
        strategy.tell(arch, _result(arch))
        asked.append(arch)
    return asked


def test_load_source_run_ranks_best_first(wide_space: SearchSpace, tmp_path: Path) -> None:
    source, ranked = _source_run(wide_space, tmp_path)
    archs, records = load_source_run(source)
    assert len(records) == 13 and archs[0] == ranked[0]
    assert set(archs) == set(ranked) and len(archs) == len(ranked)
    with pytest.raises(FileNotFoundError, match=r"no history\.jsonl"):
        load_source_run(tmp_path / "missing")


def test_first_generation_holds_the_source_top_k(
    wide_space: SearchSpace, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source, ranked = _source_run(wide_space, tmp_path)
    foreign = Architecture({"other/op": "a"})
    History(source / "history.jsonl").append(foreign, EvalResult("ok", {"search/val_acc": 2.0}))
    strategy = WarmStartEvolution(source=str(source), top_k=4, population_size=8, generations=3, seed=1)
    with caplog.at_level(logging.INFO, logger="lightning_nas.strategies.transfer"):
        strategy.setup(wide_space)
    assert "skipping source architecture" in caplog.text and "other/op" in caplog.text
    first = _run(strategy, wide_space, 8)
    assert first[:4] == ranked[:4]
    assert len(set(first)) == 8
    assert strategy.best()[1] >= _result(ranked[0]).metrics["search/val_acc"]


def test_resume_is_exact_and_no_source_is_plain_evolution(wide_space: SearchSpace, tmp_path: Path) -> None:
    source, _ = _source_run(wide_space, tmp_path)
    kwargs = {"source": str(source), "top_k": 3, "population_size": 6, "generations": 3, "seed": 2}
    reference = WarmStartEvolution(**kwargs)  # type: ignore[arg-type]
    reference.setup(wide_space)
    expected = _run(reference, wide_space, 14)
    first = WarmStartEvolution(**kwargs)  # type: ignore[arg-type]
    first.setup(wide_space)
    head = _run(first, wide_space, 4)
    resumed = WarmStartEvolution(**kwargs)  # type: ignore[arg-type]
    resumed.load_state_dict(first.state_dict())
    resumed.setup(wide_space)
    assert head + _run(resumed, wide_space, 10) == expected
    plain = WarmStartEvolution(population_size=6, generations=2)
    plain.setup(wide_space)
    assert plain.warm == [] and len(set(_run(plain, wide_space, 6))) == 6


def test_transfer_plot_draws_both_curves(wide_space: SearchSpace, tmp_path: Path) -> None:
    source, _ = _source_run(wide_space, tmp_path)
    records = load_source_run(source)[1]
    curve = best_so_far(records)
    assert np.all(np.diff(curve) >= 0)
    out = transfer_plot(source, records[:5], tmp_path / "plots" / "transfer.png")
    assert out.is_file() and out.stat().st_size > 1000
