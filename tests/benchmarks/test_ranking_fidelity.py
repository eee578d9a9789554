"""benchmarks/ranking_fidelity.py on a few hundred Fashion-MNIST-shaped images: tau is reported, and the
scores do not depend on how many worker processes train the architectures."""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from data_files import write_fashion


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    """benchmarks/ranking_fidelity.py imported by its own name, so that spawned workers find score_one."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    return importlib.import_module("ranking_fidelity")


@pytest.mark.slow
def test_tau_is_reported_and_workers_do_not_change_scores(bench: ModuleType, tmp_path: Path) -> None:
    data = write_fashion(tmp_path / "fashion", n_train=300, n_test=40)
    common = ["--archs", "3", "--epochs", "1", "--max-val-samples", "60", "--reference-train-samples", "120",
              "--proxy", "1x50%=evaluator.max_epochs=1,evaluator.limit_train_batches=0.5",
              "--", f"data.data_dir={data}", "data.batch_size=32", "evaluator.latency_repeats=1",
              "evaluator.precision=32"]  # scores compared across processes: no timed precision choice
    serial = bench.main(["--jobs", "1", "--output", str(tmp_path / "serial"), *common])
    parallel = bench.main(["--jobs", "2", "--output", str(tmp_path / "parallel"), *common])
    assert serial["reference_train_samples"] == 120 and len(serial["reference"]) == 3
    row = serial["proxies"]["1x50%"]
    assert -1.0 <= row["kendall_tau"] <= 1.0 and row["cpu_s_per_arch"] > 0
    assert parallel["reference"] == pytest.approx(serial["reference"], abs=1e-6)
    assert parallel["proxies"]["1x50%"]["scores"] == pytest.approx(row["scores"], abs=1e-6)
    saved = json.loads((tmp_path / "serial" / "ranking_fidelity.json").read_text())
    assert saved["archs"] == serial["archs"]
    # a new proxy against the recorded reference: the reference is not trained again; rungs continue a checkpoint
    reused = bench.main(["--jobs", "1", "--output", str(tmp_path / "reused"), "--reference",
                         str(tmp_path / "serial" / "ranking_fidelity.json"), *common[:-7],
                         "--proxy", "rungs 1 -> 2=evaluator.limit_train_batches=0.5,rungs=1/2", *common[-5:]])
    assert reused["reference"] == serial["reference"] and reused["reference_cpu_s"] == serial["reference_cpu_s"]
    assert len(reused["proxies"]["rungs 1 -> 2"]["scores"]) == 3


def test_a_reference_of_other_architectures_is_refused(bench: ModuleType, tmp_path: Path) -> None:
    saved = {"preset": "fashion_mnist", "archs": ["aaa", "bbb"], "epochs": 10, "reference_train_samples": 13500,
             "max_train_samples": None, "reference": [0.8, 0.9], "reference_cpu_s": 12.0}
    path = tmp_path / "ranking_fidelity.json"
    path.write_text(json.dumps(saved))
    archs = [SimpleNamespace(digest=lambda name=name: name) for name in ("aaa", "bbb")]
    assert bench.load_reference(path, "fashion_mnist", archs, 10, 13500, None) == ([0.8, 0.9], 12.0, {})
    path.write_text(json.dumps({**saved, "reference": [0.8, None], "reference_failures": {"RuntimeError: x": 1}}))
    scores, _, failures = bench.load_reference(path, "fashion_mnist", archs, 10, 13500, None)
    assert scores[0] == 0.8 and math.isnan(scores[1]) and failures == {"RuntimeError: x": 1}  # null: a failed score
    path.write_text(json.dumps(saved))
    with pytest.raises(SystemExit, match="epochs is 10, this run's is 5"):
        bench.load_reference(path, "fashion_mnist", archs, 5, 13500, None)
    with pytest.raises(SystemExit, match="archs"):
        bench.load_reference(path, "fashion_mnist", archs[::-1], 10, 13500, None)
    with pytest.raises(SystemExit, match="cannot read"):
        bench.load_reference(tmp_path / "missing.json", "fashion_mnist", archs, 10, 13500, None)


def test_a_proxy_s_rungs_must_be_increasing_epochs(bench: ModuleType) -> None:
    assert bench.parse_proxy("asha=evaluator.limit_train_batches=0.3,rungs=1/3") == (
        "asha", ["evaluator.limit_train_batches=0.3", "rungs=1/3"])
    for bad in ("rungs=3/1", "rungs=1/x", "rungs=0/2", "rungs="):
        with pytest.raises(SystemExit, match="rungs must be increasing epochs like rungs=1/3"):
            bench.parse_proxy(f"asha={bad}")


def test_a_failed_fit_is_reported_and_leaves_tau_not_computed(bench: ModuleType, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Two of three architectures fail under one proxy (as a share of under one batch does): its tau is
    not computed and the reason is printed once with its count; the other proxy's tau is still computed."""
    from lightning_nas.arch import EvalResult
    from lightning_nas.evaluators.train import TrainEvaluator

    data = write_fashion(tmp_path / "fashion", n_train=60, n_test=20)
    failing: list[str] = []

    def evaluate(self: TrainEvaluator, space: object, arch: Any) -> EvalResult:
        if self.max_epochs == 2 and len(failing) < 2:
            failing.append(arch.digest())
            return EvalResult.failed("ValueError: limit_train_batches=0.01 is under one batch")
        return EvalResult("ok", {"search/val_acc": int(arch.digest(), 16) % 97 / 97})

    monkeypatch.setattr(TrainEvaluator, "evaluate", evaluate)
    monkeypatch.setattr(TrainEvaluator, "fit_model", lambda self, model, *a, **k: model)
    monkeypatch.setattr(TrainEvaluator, "validate_model",
                        lambda self, model: {"val/acc": sum(p.numel() for p in model.parameters()) % 89 / 89})
    results = bench.main(["--archs", "3", "--epochs", "1", "--jobs", "1", "--output", str(tmp_path / "out"),
                          "--proxy", "tiny=evaluator.max_epochs=2", "--proxy", "fine=evaluator.max_epochs=1",
                          "--", f"data.data_dir={data}", "data.batch_size=16"])
    out = capsys.readouterr().out
    tiny, fine = results["proxies"]["tiny"], results["proxies"]["fine"]
    assert tiny["kendall_tau"] is None and tiny["tau_not_computed"] == "2 of 3 scores failed"
    assert tiny["failures"] == {"ValueError: limit_train_batches=0.01 is under one batch": 2}
    assert "| tiny | not computed: 2 of 3 scores failed | - |" in out
    assert out.count("proxy tiny: 2 of 3 architectures have no score: ValueError: limit_train_batches=0.01 "
                     "is under one batch") == 1
    assert -1.0 <= fine["kendall_tau"] <= 1.0 and fine["failures"] == {} and fine["tau_not_computed"] is None
    text = (tmp_path / "out" / "ranking_fidelity.json").read_text()
    assert "NaN" not in text  # strict JSON: the failed scores are null
    saved = json.loads(text)
    assert saved["proxies"]["tiny"]["failures"] == tiny["failures"] and saved["reference_failures"] == {}
    assert None in saved["proxies"]["tiny"]["scores"], saved["proxies"]["tiny"]


def test_an_exception_of_one_architecture_is_its_reason(bench: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    def score_one(preset: str, overrides: list[str], arch_json: str, epochs: int | None) -> tuple[float, float, None]:
        if arch_json == "b":
            raise RuntimeError("out of memory")
        return 0.5, 2.0, None

    monkeypatch.setattr(bench, "score_one", score_one)
    archs = [SimpleNamespace(to_json=lambda n=n: n, digest=lambda n=n: n) for n in "abc"]
    scores, cpu, failures = bench.score_all("p", [], archs, None, 1, "proxy x")
    assert scores[0] == scores[2] == 0.5 and scores[1] != scores[1] and cpu == 4.0
    assert failures == {"RuntimeError: out of memory": 1}
