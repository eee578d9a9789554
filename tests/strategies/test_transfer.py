"""Warm-started evolution: the source run's best architectures open the new search."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.callbacks.study_reports import TransferReport
from lightning_nas.evaluators.base import Evaluator
from lightning_nas.objectives.score import best_so_far
from lightning_nas.results.history import History
from lightning_nas.search import run_search
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies.accuracy_predictor import AccuracyPredictor, training_set
from lightning_nas.strategies.transfer import WarmStartEvolution, load_source_run, transfer_plot


def _result(arch: Architecture) -> EvalResult:
    """A synthetic score: the fraction of layers using op ``a``."""
    return EvalResult("ok", {"search/val_acc": sum(v == "a" for v in arch.values()) / len(arch)})


def _source_run(space: SearchSpace, tmp_path: Path, size: int = 12) -> tuple[Path, list[Architecture]]:
    rng = np.random.default_rng(7)
    history = History(tmp_path / "source" / "history.jsonl")
    archs = list(dict.fromkeys(space.sample(rng) for _ in range(size)))
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


def _truth(archs: list[Architecture]) -> list[float]:
    return [_result(a).metrics["search/val_acc"] for a in archs]


def test_predictor_from_the_source_history_ranks_by_the_truth(wide_space: SearchSpace, tmp_path: Path) -> None:
    source, _ = _source_run(wide_space, tmp_path, size=40)
    archs, accuracies = training_set(wide_space, load_source_run(source)[1])
    assert len(archs) == 40 and accuracies == _truth(archs)  # the failed repeat is left out
    predictor = AccuracyPredictor(seed=3).fit(wide_space, archs, accuracies)
    rng = np.random.default_rng(11)
    fresh = [wide_space.sample(rng) for _ in range(60)]
    assert spearmanr(predictor.predict(wide_space, fresh), _truth(fresh)).statistic > 0.8
    fit = predictor.cross_validate(wide_space, archs, accuracies)
    assert fit["method"] == "5-fold" and fit["n"] == 40 and fit["spearman"] > 0.6
    assert predictor.cross_validate(wide_space, archs[:10], accuracies[:10])["method"] == "leave-one-out"
    again = AccuracyPredictor(seed=3).fit(wide_space, archs, accuracies)
    assert np.array_equal(again.predict(wide_space, fresh), predictor.predict(wide_space, fresh))
    with pytest.raises(ValueError, match="at least 3"):
        AccuracyPredictor().fit(wide_space, archs[:2], accuracies[:2])


def _generation_one(space: SearchSpace, source: Path, screen_factor: int) -> tuple[WarmStartEvolution, list[float]]:
    strategy = WarmStartEvolution(source=str(source), top_k=0, population_size=8, generations=2, seed=5,
                                  screen_factor=screen_factor)
    strategy.setup(space)
    offspring = _run(strategy, space, 8 + 6)[8:]
    return strategy, _truth(offspring)


def test_screening_keeps_the_offspring_predicted_best(wide_space: SearchSpace, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    source, _ = _source_run(wide_space, tmp_path, size=40)
    screened, screened_truth = _generation_one(wide_space, source, 4)
    _, plain_truth = _generation_one(wide_space, source, 1)
    assert screened.predictor_fit is not None and screened.predictor_fit["spearman"] > 0.6
    assert np.mean(screened_truth) > np.mean(plain_truth)
    pools: list[tuple[list[Architecture], np.ndarray]] = []
    predict = screened.predictor.predict

    def spy(space: SearchSpace, archs: list[Architecture]) -> np.ndarray:
        pools.append((list(archs), predict(space, archs)))
        return pools[-1][1]

    monkeypatch.setattr(screened.predictor, "predict", spy)
    kept = _run(screened, wide_space, 6)
    pool, predicted = pools[0]
    assert len(pool) == 24 and len(set(pool)) == 24 and set(kept) <= set(pool)
    assert min(predicted[pool.index(a)] for a in kept) >= max(
        p for a, p in zip(pool, predicted, strict=True) if a not in kept)
    with pytest.raises(ValueError, match="screen_factor"):
        WarmStartEvolution(screen_factor=0)


class _Synthetic(Evaluator):
    def evaluate(self, space: SearchSpace, arch: Architecture) -> EvalResult:
        return _result(arch)


@pytest.mark.parametrize("mode", ["ga", "aging"])
def test_screened_search_resumes_exactly_by_replay(wide_space: SearchSpace, tmp_path: Path, mode: str) -> None:
    source, _ = _source_run(wide_space, tmp_path, size=20)
    config = {"source": str(source), "top_k": 2, "population_size": 6, "seed": 4, "mode": mode,
              "tournament_size": 3}
    full = run_search(wide_space, WarmStartEvolution(num_samples=20, **config), _Synthetic(),  # type: ignore[arg-type]
                      History(), progress=False)
    path = tmp_path / "run" / "history.jsonl"
    run_search(wide_space, WarmStartEvolution(num_samples=9, **config), _Synthetic(),  # type: ignore[arg-type]
               History(path), progress=False)
    resumed = run_search(wide_space, WarmStartEvolution(num_samples=20, **config), _Synthetic(),  # type: ignore[arg-type]
                         History(path), progress=False)
    assert [r.arch for r in resumed] == [r.arch for r in full]
    original = WarmStartEvolution(num_samples=20, **config)  # type: ignore[arg-type]
    original.setup(wide_space)
    checkpointed = WarmStartEvolution(num_samples=20, **config)  # type: ignore[arg-type]
    checkpointed.source_records = []  # the fit comes from the checkpoint, not from re-reading the source
    checkpointed.load_state_dict(original.state_dict())
    checkpointed.setup(wide_space)
    assert checkpointed.predictor_fit == original.predictor_fit and checkpointed.predictor_fit is not None


def test_transfer_report_carries_the_predictor_fit(wide_space: SearchSpace, tmp_path: Path) -> None:
    source, _ = _source_run(wide_space, tmp_path, size=20)
    strategy = WarmStartEvolution(source=str(source), top_k=2, population_size=6, generations=2, seed=1)
    strategy.setup(wide_space)
    records = load_source_run(source)[1][:6]
    paths = TransferReport(tmp_path / "out", source=str(source), predictor_fit=lambda: strategy.predictor_fit
                           ).write(records)
    assert paths["png"].stat().st_size > 1000
    report = json.loads(paths["json"].read_text())
    assert report["source"] == str(source) and report["predictor"]["method"] == "leave-one-out"
    assert report["predictor"]["n"] == 20 and report["predictor"]["screen_factor"] == 4
    assert report["predictor"]["spearman"] == pytest.approx(strategy.predictor_fit["spearman"])  # type: ignore[index]
