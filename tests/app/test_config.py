"""Every preset composes; every _target_ matches its schema; bad keys and values are named."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from lightning_nas.config import GROUP_SCHEMAS, ConfigError, build_node, register_configs
from lightning_nas.hardware.profile import count_params

CONF = Path(__file__).resolve().parents[2] / "src" / "lightning_nas" / "conf"
RUNTIME_ARGS = {"input_shape", "num_classes", "datamodule", "output_dir", "run_config", "space"}


def _compose(overrides: list[str]):
    register_configs()
    with initialize_config_module(config_module="lightning_nas.conf", version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def _presets() -> list[tuple[str, str]]:
    # tuning/<experiment>_<strategy> is merged into `strategy` for that pair only: see the experiment x strategy test
    return sorted((p.parent.name, p.stem) for p in CONF.glob("*/*.yaml") if p.parent.name != "tuning")


@pytest.mark.parametrize(("group", "name"), _presets())
def test_every_preset_composes(group: str, name: str) -> None:
    override = f"{group}={name}"
    extra = {("data", "image_folder"): ["data.root=/tmp/images"],
             ("evaluator", "tabular"): ["evaluator.table=/tmp/table.csv"],
             ("hardware", "predicted"): ["hardware.predictor_path=/tmp/predictor.json"]}.get((group, name), [])
    cfg = _compose([override, *extra])
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    if group == "experiment":
        assert cfg.name == name


def _target(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize(
    "schema", [s for schemas in GROUP_SCHEMAS.values() for s in schemas.values()], ids=lambda s: s.__name__
)
def test_targets_match_their_schema(schema: type) -> None:
    fields = {f.name for f in dataclasses.fields(schema)} - {"_target_"}
    target_field = next((f for f in dataclasses.fields(schema) if f.name == "_target_"), None)
    if target_field is None:
        return  # a plain settings node (trainer)
    cls = _target(target_field.default)
    assert not cls.__name__.startswith("_"), "targets are public classes"
    params = inspect.signature(cls.__init__).parameters
    accepted = {n for n, p in params.items() if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    assert fields - accepted == set(), f"{cls.__name__} does not accept {sorted(fields - accepted)}"
    required = {n for n in accepted if params[n].default is inspect.Parameter.empty}
    assert required - fields - RUNTIME_ARGS == set()
    assert (accepted - fields) - RUNTIME_ARGS == set(), f"schema lacks {sorted(accepted - fields - RUNTIME_ARGS)}"


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("data.batch_sise=3", "batch_sise"),
        ("data.batch_size=many", "data.batch_size"),
        ("strategy.population_size=1.5", "strategy.population_size"),
        ("search_space.kernel_sizes=[a]", "search_space.kernel_sizes"),
        ("evaluator.lr=fast", "evaluator.lr"),
        ("objective.weights=3", "objective.weights"),
        ("logger.mod=offline", "mod"),
        ("sed=3", "sed"),
    ],
)
def test_bad_key_or_type_names_it(override: str, key: str) -> None:
    with pytest.raises(Exception) as info:
        _compose([override])
    assert key in str(info.value)


def test_unknown_group_option_names_it() -> None:
    with pytest.raises(Exception, match=r"strategy"):
        _compose(["strategy=evolutoin"])


EXPERIMENTS = sorted(p.stem for p in CONF.glob("experiment/*.yaml"))
STRATEGIES = sorted(p.stem for p in CONF.glob("strategy/*.yaml"))
BUDGETED = {"random", "evolution", "nsga2", "rl", "bayesian", "hyperband", "nni", "ensemble", "warm_evolution"}
POPULATION = {"evolution", "nsga2", "warm_evolution"}


@pytest.mark.parametrize(
    "experiment", [pytest.param(e, marks=() if e == "efficient_convnet" else pytest.mark.slow) for e in EXPERIMENTS]
)
def test_every_strategy_composes_with_every_experiment(experiment: str, tmp_path: Path) -> None:
    """The experiment's budget reaches every sample-based strategy; DARTS needs a relaxable space."""
    register_configs()
    with initialize_config_module(config_module="lightning_nas.conf", version_base="1.3"):
        for strategy in STRATEGIES:
            cfg = compose(config_name="config", overrides=[f"experiment={experiment}", f"strategy={strategy}"])
            assert cfg.name == experiment
            space = build_node(cfg, "search_space", input_shape=[1, 8, 8], num_classes=10)
            if strategy == "darts" and not hasattr(space, "relaxed"):  # the one incompatible pairing
                with pytest.raises(ConfigError, match=r"strategy: DARTS needs a relaxable search space"):
                    build_node(cfg, "strategy", space=space, output_dir=str(tmp_path))
                continue
            node = build_node(cfg, "strategy", space=space, output_dir=str(tmp_path))
            if strategy in BUDGETED:
                assert node.num_samples == cfg.budget.evaluations, (experiment, strategy)
            if strategy in POPULATION:
                assert node.population_size == cfg.budget.population_size, (experiment, strategy)


def test_make_run_keeps_its_search() -> None:
    """``experiment=efficient_convnet``: 12 evaluations of evolution, population 6, tournaments of 3."""
    strategy = _compose(["experiment=efficient_convnet"]).strategy
    assert strategy._target_.endswith("EvolutionStrategy")
    assert (strategy.num_samples, strategy.population_size, strategy.tournament_size, strategy.elitism) == (12, 6, 3, 2)
    assert _compose(["strategy=evolution"]).strategy.num_samples is None  # no experiment: population x generations


def test_small_fashion_mnist_space_mostly_fits_its_parameter_budget() -> None:
    """``experiment=fashion_mnist_small``: most sampled architectures meet ``max_params: 25K``, the largest do not."""
    cfg = _compose(["experiment=fashion_mnist_small"])
    assert cfg.objective.constraints.max_params == "25K"
    space = build_node(cfg, "search_space", input_shape=[1, 28, 28], num_classes=10)
    rng = np.random.default_rng(0)
    params = np.array([count_params(space.build(space.sample(rng))) for _ in range(60)])
    assert 0.5 <= np.mean(params <= 25_000) <= 0.9, np.sort(params)  # the limit falls inside the space


def test_latency_fashion_mnist_preset_bounds_latency_by_the_two_conv_cnn_in_widths_of_16() -> None:
    """``experiment=fashion_mnist_latency``: a measured XNNPACK bound and every width of its space a multiple of 16."""
    from torch import nn

    cfg = _compose(["experiment=fashion_mnist_latency"])
    assert cfg.objective.constraints.max_latency == "0.9x two_conv_cnn"  # a margin under the 1x target
    assert cfg.hardware._target_.endswith("XnnpackTarget") and cfg.hardware.clock == "cpu"
    assert cfg.hardware.reference == "two_conv_cnn"  # timed in turn with every candidate
    objective = build_node(cfg, "objective", constraints={"max_latency": 0.07})  # the app measures the network
    assert (objective.names, objective.directions) == (["accuracy", "latency"], ["max", "min"])  # the front
    assert objective.score_metrics == {"macs": "max"}  # capacity in the score only
    assert objective.weights == {"accuracy": 1.0, "latency": 0.0, "macs": 0.003}  # 1M MACs: 0.3 points of accuracy
    assert cfg.strategy.tournament_size == 3  # the flagship's evolution settings reach this preset too
    space = build_node(cfg, "search_space", input_shape=[1, 28, 28], num_classes=10)
    rng = np.random.default_rng(0)
    widths = {m.out_channels for _ in range(12) for m in space.build(space.sample(rng)).modules()
              if isinstance(m, nn.Conv2d)}
    assert widths and all(w % 16 == 0 for w in widths), sorted(widths)
    stems = {space.build(space.sample(rng)).stem[0].out_channels for _ in range(12)}
    assert stems == {16}  # the stem keeps 16 channels at every width
