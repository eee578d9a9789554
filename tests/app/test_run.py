"""The app end to end on a tiny budget: files, errors, and resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
from hydra import compose, initialize_config_module

from lightning_nas.arch import Architecture
from lightning_nas.config import ConfigError, build_node, register_configs
from lightning_nas.evaluators.train import SCREENED
from lightning_nas.hardware.profile import count_params
from lightning_nas.run import run

TINY = [
    "data.max_train_samples=160",
    "data.max_val_samples=80",
    "data.max_test_samples=80",
    "search_space.width_multipliers=[0.5,0.75]",
    "search_space.depth_multipliers=[0.5,1.0]",
    "evaluator.max_epochs=1",
    "evaluator.final_max_epochs=1",
    "evaluator.latency_repeats=3",
    "logger=none",
    "progress=false",
]


def _records(path: Path) -> list[dict]:
    """The records of a history.jsonl (its first line is the fingerprint header)."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert "fingerprint" in lines[0] and "index" not in lines[0]
    return lines[1:]


def _cfg(tmp_path: Path, *overrides: str):
    register_configs()
    with initialize_config_module(config_module="lightning_nas.conf", version_base="1.3"):
        return compose(config_name="config", overrides=[*TINY, f"output_dir={tmp_path}", *overrides])


def test_run_writes_history_best_and_summary(tmp_path, capsys) -> None:
    summary = run(_cfg(tmp_path, "strategy=random", "strategy.num_samples=3", "logger=wandb"))
    assert [r["index"] for r in _records(tmp_path / "history.jsonl")] == [0, 1, 2]
    best = Architecture.load(tmp_path / "best" / "arch.json")
    assert best.to_dict() == summary["best"]["arch"]
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert 0.0 <= on_disk["test"]["test/acc"] <= 1.0
    assert on_disk["evaluations"] == 3
    assert {"search/val_acc", "model/params", "model/macs", "hw/latency_ms"} <= set(on_disk["best"]["metrics"])
    assert list((tmp_path / "wandb").glob("offline-run-*"))
    printed = capsys.readouterr().out
    assert "Best architecture" in printed and best.digest() in printed


class _CountFits(L.Callback):
    def __init__(self) -> None:
        self.fits = 0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.fits += 1


def test_final_callbacks_join_the_final_training_only(tmp_path) -> None:
    counter = _CountFits()
    run(_cfg(tmp_path, "strategy=random", "strategy.num_samples=2", "executor=local"), final_callbacks=[counter])
    assert counter.fits == 1  # two candidates' fits without it, the final fit with it


def test_candidates_over_a_size_constraint_are_recorded_untrained(tmp_path) -> None:
    cfg = _cfg(tmp_path, "strategy=random", "strategy.num_samples=10", "objective=multi", "final_training=false",
               "executor=local")
    space = build_node(cfg, "search_space", input_shape=(1, 8, 8), num_classes=10)  # digits
    rng = np.random.default_rng(0)
    bound = int(np.median([count_params(space.build(space.sample(rng))) for _ in range(40)]))
    cfg.objective.constraints = {"max_params": bound}
    summary = run(cfg)
    records = _records(tmp_path / "history.jsonl")
    screened = [r for r in records if r["metrics"].get(SCREENED)]
    trained = [r for r in records if "search/val_acc" in r["metrics"]]
    assert len(records) == summary["evaluations"] == 10 and screened and trained
    assert len(screened) + len(trained) == 10 and all(r["status"] == "ok" for r in records)
    assert all(r["metrics"]["model/params"] > bound for r in screened)
    assert all("train/epochs" not in r["metrics"] for r in screened)
    assert summary["best"]["metrics"]["model/params"] <= bound
    assert (tmp_path / "pareto.csv").is_file() and (tmp_path / "summary.json").is_file()


def test_bad_value_is_a_config_error_naming_the_key(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"data\.batch_size"):
        run(_cfg(tmp_path, "data.batch_size=0"))


def test_existing_history_without_resume_is_refused(tmp_path) -> None:
    (tmp_path / "history.jsonl").write_text('{"index": 0}\n')
    with pytest.raises(ConfigError, match="resume=true"):
        run(_cfg(tmp_path, "strategy=random", "strategy.num_samples=1"))


def _cli(tmp_path: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "lightning_nas", *TINY, f"output_dir={tmp_path}", "final_training=false", *overrides]


def test_cli_reports_a_bad_value_on_one_line(tmp_path) -> None:
    done = subprocess.run(_cli(tmp_path, "strategy.mutation_rate=2.0"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("lightning_nas: error:")]
    assert len(errors) == 1 and "strategy.mutation_rate" in errors[0]


def test_sigkill_then_resume_loses_and_repeats_nothing(tmp_path) -> None:
    overrides = ["strategy=evolution", "strategy.population_size=4", "strategy.generations=2",
                 "strategy.tournament_size=2", "strategy.elitism=1"]
    history = tmp_path / "history.jsonl"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(_cli(tmp_path, *overrides), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and (not history.exists() or len(history.read_text().splitlines()) < 4):
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = history.read_text().splitlines()
    assert 3 <= len(before) - 1 < 8, "the run must be killed mid-search"  # - the header line

    resumed = subprocess.run(_cli(tmp_path, *overrides, "resume=true"), env=env, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = history.read_text().splitlines()
    assert after[: len(before)] == before
    records = _records(history)
    assert [r["index"] for r in records] == list(range(8))
    assert len({r["arch_id"] for r in records}) == 8


def test_supernet_strategy_reports_front_and_retrained_best(tmp_path, capsys) -> None:
    overrides = ["strategy=supernet", "strategy.epochs=1", "strategy.population_size=4", "strategy.generations=2",
                 "strategy.tournament_size=2", "strategy.elitism=1", "strategy.retrain=finetune"]
    summary = run(_cfg(tmp_path, *overrides))
    assert (tmp_path / "supernet.pt").exists()
    assert len(_records(tmp_path / "history.jsonl")) == summary["evaluations"] >= 4
    assert summary["front"] and 0.0 <= summary["test"]["test/acc"] <= 1.0
    assert "Pareto front" in capsys.readouterr().out


@pytest.mark.slow
def test_top_k_export_writes_deploy_and_code_packages(tmp_path) -> None:
    summary = run(_cfg(tmp_path, "strategy=random", "strategy.num_samples=2", "export.top_k=1"))
    [exported] = summary["exported"]
    assert exported["errors"] == {}
    folder = Path(exported["out_dir"])
    assert (folder / "deploy" / "model.pte").stat().st_size > 0
    assert (folder / "code" / "model.py").exists() and (folder / "code" / "weights.pt").exists()
    assert json.loads((folder / "package.json").read_text())["trained_weights"] is True


def test_darts_experiment_writes_genotype_heatmaps_and_test_accuracy(tmp_path) -> None:
    register_configs()
    with initialize_config_module(config_module="lightning_nas.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "experiment=darts_cell", f"output_dir={tmp_path}", "logger=none", "progress=false",
            "data.max_train_samples=128", "data.max_val_samples=64", "data.max_test_samples=64",
            "search_space.num_cells=3", "search_space.channels=4", "strategy.epochs=1", "strategy.warmup_epochs=0",
            "evaluator.max_epochs=1", "evaluator.final_max_epochs=1", "evaluator.latency_repeats=3",
        ])
    summary = run(cfg)
    genotype = Architecture.from_json((tmp_path / "darts" / "genotype.json").read_text())
    assert Architecture.load(tmp_path / "best" / "arch.json") == genotype
    assert list((tmp_path / "darts" / "alphas").glob("epoch_*.png"))
    assert 0.0 <= summary["test"]["test/acc"] <= 1.0


def test_multi_objective_experiment_writes_front_files_and_wandb_table(tmp_path) -> None:
    register_configs()
    with initialize_config_module(config_module="lightning_nas.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "experiment=multi_objective", f"output_dir={tmp_path}", "progress=false", "logger=wandb",
            *[o for o in TINY if not o.startswith(("logger", "progress"))],
            "budget.evaluations=6", "budget.population_size=3", "hardware.repeats=3", "final_training=false",
        ])
    summary = run(cfg)
    for name in ("pareto.csv", "pareto.png", "pareto3d.png", "progress.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    rows = (tmp_path / "pareto.csv").read_text().splitlines()
    assert len(rows) == summary["evaluations"] + 1 and "on_front" in rows[0]
    [run_dir] = list((tmp_path / "wandb").glob("offline-run-*"))
    assert list((run_dir / "files" / "media" / "table").rglob("*.table.json"))


@pytest.mark.parametrize("experiment", ["vit_search", "robustness"])
def test_issue8_experiments_run_end_to_end(tmp_path, experiment: str) -> None:
    register_configs()
    extra = {"vit_search": ["search_space.num_layers=[1,2]", "search_space.embed_dims=[8,16]",
                            "search_space.num_heads=[1,2]", "evaluator.max_epochs=1", "evaluator.final_max_epochs=1"],
             "robustness": ["evaluator.inner.max_epochs=1", "evaluator.inner.final_max_epochs=1",
                            "evaluator.inner.latency_repeats=3", "evaluator.pgd_steps=2", "evaluator.max_batches=1",
                            "search_space.width_multipliers=[0.5]"]}[experiment]
    with initialize_config_module(config_module="lightning_nas.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            f"experiment={experiment}", f"output_dir={tmp_path}", "logger=none", "progress=false",
            "data.max_train_samples=128", "data.max_val_samples=64", "data.max_test_samples=64",
            "budget.evaluations=2", "budget.population_size=2", *extra,
        ])
        if experiment == "robustness":
            cfg.strategy.tournament_size = 2
            cfg.strategy.elitism = 1
    summary = run(cfg)
    assert summary["evaluations"] >= 2 and 0.0 <= summary["test"]["test/acc"] <= 1.0
    if experiment == "robustness":
        assert "robust/adv_ratio" in summary["best"]["metrics"]
    else:
        assert (tmp_path / "pareto.png").stat().st_size > 0


def test_process_executor_gives_the_local_history(tmp_path) -> None:
    base = ["strategy=random", "strategy.num_samples=3", "final_training=false"]
    run(_cfg(tmp_path / "local", *base))
    run(_cfg(tmp_path / "process", *base, "executor=process", "executor.max_workers=2"))
    local = _records(tmp_path / "local" / "history.jsonl")
    pooled = _records(tmp_path / "process" / "history.jsonl")
    assert [r["arch"] for r in local] == [r["arch"] for r in pooled]
    assert [r["metrics"]["search/val_acc"] for r in local] == [r["metrics"]["search/val_acc"] for r in pooled]


def test_transfer_experiment_seeds_from_a_source_run_and_plots(tmp_path) -> None:
    source = tmp_path / "source"
    run(_cfg(source, "strategy=random", "strategy.num_samples=2", "final_training=false"))
    register_configs()
    with initialize_config_module(config_module="lightning_nas.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            *TINY, "experiment=transfer", f"output_dir={tmp_path / 'target'}", f"strategy.source={source}",
            f"strategy.scratch={source}", "budget.evaluations=2", "budget.population_size=2",
            "strategy.tournament_size=2", "strategy.elitism=1", "strategy.top_k=1", "final_training=false",
        ])
    run(cfg)
    first = _records(tmp_path / "target" / "history.jsonl")[0]
    assert first["arch"] == json.loads((source / "best" / "arch.json").read_text())
    assert (tmp_path / "target" / "transfer.png").stat().st_size > 0
    assert (tmp_path / "target" / "efficiency.csv").exists()


def _table_cfg(tmp_path: Path, *overrides: str):
    register_configs()
    with initialize_config_module(config_module="lightning_nas.conf", version_base="1.3"):
        return compose(config_name="config", overrides=[
            "search_space=nb201", "evaluator=tabular", "evaluator.table=nb201_synthetic", "logger=none",
            "progress=false", "data.max_train_samples=64", "data.max_val_samples=32", "data.max_test_samples=32",
            f"output_dir={tmp_path}", *overrides])


@pytest.mark.parametrize("strategy", [["strategy=evolution", "strategy.population_size=8", "strategy.num_samples=20"],
                                      ["strategy=hyperband", "strategy.min_epochs=4", "strategy.max_epochs=200",
                                       "strategy.num_samples=30"],
                                      ["strategy=auto", "strategy.num_samples=30"]])
def test_string_keyed_nb201_table_runs_in_the_app(tmp_path, caplog, capsys, strategy: list[str]) -> None:
    with caplog.at_level("INFO", logger="lightning_nas"):
        summary = run(_table_cfg(tmp_path, *strategy))
    budget = int(strategy[-1].split("=")[1])  # auto: BOHB jobs whose cost is that of `budget` full evaluations
    assert summary["failed"] == 0 and summary["evaluations"] == (243 if "strategy=auto" in strategy else budget)
    assert 0.5 < summary["test"]["test/acc"] < 0.96
    assert "looking up the test metrics" in caplog.text and "from scratch" not in caplog.text + capsys.readouterr().out
    if "strategy=auto" in strategy:
        assert "strategy=auto chose bohb" in caplog.text


def test_a_table_missing_architectures_stops_with_one_line(tmp_path) -> None:
    table = tmp_path / "partial.csv"
    table.write_text("arch,val_acc,test_acc\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,0.1,0.1\n")
    cmd = [sys.executable, "-m", "lightning_nas", "search_space=nb201", "evaluator=tabular", f"evaluator.table={table}",
           "strategy=random", "strategy.num_samples=5", "logger=none", "progress=false", "final_training=false",
           f"output_dir={tmp_path / 'run'}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("lightning_nas: error:")]
    assert len(errors) == 1 and "is not in the table" in errors[0] and "Traceback" not in done.stderr


def test_a_run_where_every_candidate_failed_ends_with_one_line(tmp_path, monkeypatch) -> None:
    from lightning_nas.evaluators import TrainEvaluator
    from lightning_nas.results.failures import SearchFailed

    def broken(self, space, arch):
        raise RuntimeError("the accelerator went away")

    monkeypatch.setattr(TrainEvaluator, "evaluate", broken)
    with pytest.raises(SearchFailed, match=r"all 2 candidates failed; most common reason \(2 of 2\): "
                                           r"RuntimeError: the accelerator went away") as caught:
        run(_cfg(tmp_path, "strategy=random", "strategy.num_samples=2"))
    assert "\n" not in str(caught.value)


def test_a_refused_resume_leaves_the_run_untouched(tmp_path) -> None:
    run(_cfg(tmp_path, "strategy=random", "strategy.num_samples=1", "final_training=false"))
    saved = {name: (tmp_path / name).read_bytes() for name in ("config.yaml", "history.jsonl", "summary.json")}
    with pytest.raises(ConfigError, match=r"^evaluator\.lr: differ from the run being resumed"):
        run(_cfg(tmp_path, "strategy=random", "strategy.num_samples=1", "evaluator.lr=0.1", "resume=true"))
    assert {name: (tmp_path / name).read_bytes() for name in saved} == saved
    extended = run(_cfg(tmp_path, "strategy=random", "strategy.num_samples=2", "final_training=false",
                        "resume=true"))  # a larger budget is the same search, continued
    assert extended["evaluations"] == 2
