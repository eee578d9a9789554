"""Structured configs: one dataclass per Hydra group option, registered in the ConfigStore.

Every YAML preset under ``conf/`` extends one of these (``defaults: [<name>_schema, _self_]``),
so a misspelt key or a wrong type fails at composition with the key named. ``_target_`` names
the public class built from the node; its ``__init__`` matches the dataclass (a test checks it).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import II, MISSING, DictConfig, OmegaConf

__all__ = ["GROUP_SCHEMAS", "ConfigError", "LightningNASConfig", "build_node", "register_configs"]


class ConfigError(ValueError):
    """A configuration value (or a file it names) is wrong; the message starts with the key: ``<key>: <what>``."""


def build_node(cfg: DictConfig, group: str, **runtime: Any) -> Any:
    """Instantiate ``cfg[group]``; a constructor's ValueError comes back as a one-line ConfigError."""
    node = cfg[group]
    try:
        accepted = inspect.signature(get_class(str(node._target_))).parameters
        runtime = {k: v for k, v in runtime.items() if k in accepted}
        return instantiate(node, **runtime, _convert_="all", _recursive_=False)
    except InstantiationException as error:
        cause = error.__cause__ or error
        message = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        if not message.startswith(f"{group}."):
            message = f"{_file_key(node, group, cause)}: {message}"
        raise ConfigError(message) from cause


def _file_key(node: DictConfig, group: str, cause: BaseException) -> str:
    """``group.key`` when ``cause`` is about a file that one of the node's settings names, else ``group``."""
    filename = getattr(cause, "filename", None)
    if filename is not None:
        for key, value in node.items():
            if isinstance(value, str) and value and str(filename) in (value, str(Path(value).expanduser())):
                return f"{group}.{key!s}"
    return group


# --- data -------------------------------------------------------------------------------------
@dataclass
class DataConfig:
    batch_size: int = 64
    num_workers: int = 0
    val_fraction: float = 0.2
    seed: int = II("seed")
    max_train_samples: int | None = None
    max_val_samples: int | None = None
    max_test_samples: int | None = None
    augment: bool = False
    normalize: bool = True


@dataclass
class DigitsConfig(DataConfig):
    _target_: str = "lightning_nas.data.DigitsDataModule"
    test_fraction: float = 0.2


@dataclass
class FashionMNISTConfig(DataConfig):
    _target_: str = "lightning_nas.data.FashionMNISTDataModule"
    data_dir: str | None = None
    download: bool = False
    batched: bool = False
    random_erasing: float = 0.0


@dataclass
class CIFAR10Config(DataConfig):
    _target_: str = "lightning_nas.data.CIFAR10DataModule"
    data_dir: str | None = None
    download: bool = False


@dataclass
class ImageFolderConfig(DataConfig):
    _target_: str = "lightning_nas.data.ImageFolderDataModule"
    root: str = MISSING
    val_dir: str | None = None
    test_dir: str | None = None
    image_size: int = 32
    channels: int = 3
    test_fraction: float = 0.2
    mean: list[float] | None = None
    std: list[float] | None = None


# --- search spaces ----------------------------------------------------------------------------
@dataclass
class EfficientConvNetConfig:
    _target_: str = "lightning_nas.spaces.EfficientConvNetSpace"
    width_multipliers: list[float] = field(default_factory=lambda: [0.5, 0.75, 1.0, 1.5, 2.0])
    depth_multipliers: list[float] = field(default_factory=lambda: [0.5, 1.0, 1.5, 2.0])
    kernel_sizes: list[int] = field(default_factory=lambda: [3, 5, 7])
    expansions: list[int] = field(default_factory=lambda: [1, 3, 6])
    se_ratios: list[float] = field(default_factory=lambda: [0.0, 0.25])
    resolutions: list[int] | None = None
    stem_channels: int = 16
    stage_channels: list[int] = field(default_factory=lambda: [16, 24, 40, 80])
    stage_depths: list[int] = field(default_factory=lambda: [1, 2, 2, 1])
    stage_strides: list[int] = field(default_factory=lambda: [1, 2, 2, 1])
    stem_stride: int | None = None
    head_channels: int = 160
    activation: str = "swish"
    dropout: float = 0.0
    pool_size: int = 1
    channel_divisor: int = 8
    stem_multipliers: list[float] | None = None


@dataclass
class HybridConvNetConfig(EfficientConvNetConfig):
    _target_: str = "lightning_nas.spaces.HybridConvNetSpace"
    block_types: list[str] = field(default_factory=lambda: ["mbconv", "conv", "residual"])
    stage_stride_choices: list[list[int]] | None = None
    decision_scope: str = "block"


@dataclass
class MacroConvNetConfig:
    _target_: str = "lightning_nas.spaces.MacroConvNetSpace"
    num_layers: list[int] = field(default_factory=lambda: [6, 8, 10, 12, 14, 16, 18, 20, 22])
    ops: list[str] = field(default_factory=lambda: [
        "conv3x3", "conv5x5", "depthwise_conv", "sep_conv3x3", "dil_conv3x3", "max_pool", "avg_pool", "skip_connect",
    ])
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128, 256, 512])
    num_reductions: int | None = None
    activations: list[str] = field(default_factory=lambda: ["relu", "swish", "gelu"])
    norms: list[str] = field(default_factory=lambda: ["batch", "group", "layer"])
    residual: list[bool] = field(default_factory=lambda: [False, True])
    squeeze_excite: list[bool] = field(default_factory=lambda: [False, True])
    stem_channels: int = 16
    dropout: float = 0.0


@dataclass
class DartsCellConfig:
    _target_: str = "lightning_nas.spaces.DartsCellSpace"
    num_cells: int = 5
    channels: int = 8
    ops: list[str] = field(default_factory=lambda: [
        "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5",
    ])


@dataclass
class NB201Config:
    _target_: str = "lightning_nas.spaces.NB201Space"
    cells_per_stage: int = 5
    channels: int = 16


@dataclass
class VitSpaceConfig:
    _target_: str = "lightning_nas.spaces.VisionTransformerSpace"
    num_layers: list[int] = field(default_factory=lambda: [4, 6, 8, 10, 12])
    num_heads: list[int] = field(default_factory=lambda: [4, 8, 16])
    mlp_ratios: list[float] = field(default_factory=lambda: [2.0, 3.0, 4.0])
    patch_sizes: list[int] | None = None
    embed_dims: list[int] = field(default_factory=lambda: [64, 128, 192])
    dropout: float = 0.0


# --- strategies -------------------------------------------------------------------------------
@dataclass
class RandomConfig:
    _target_: str = "lightning_nas.strategies.RandomSearch"
    num_samples: int = 20
    seed: int = II("seed")


@dataclass
class EvolutionConfig:
    _target_: str = "lightning_nas.strategies.EvolutionStrategy"
    num_samples: int | None = None
    seed: int = II("seed")
    mode: str = "ga"
    population_size: int = 50
    generations: int = 5
    mutation_rate: float = 0.1
    crossover_rate: float = 0.8
    tournament_size: int = 5
    elitism: int = 2


@dataclass
class NSGA2Config:
    _target_: str = "lightning_nas.strategies.NSGA2Strategy"
    num_samples: int | None = None
    seed: int = II("seed")
    population_size: int = 20
    generations: int = 5
    mutation_rate: float = 0.2
    crossover_rate: float = 0.9


@dataclass
class SupernetConfig:
    _target_: str = "lightning_nas.strategies.supernet_search.SupernetSearch"
    epochs: int = 10
    sampling: str = "uniform"
    num_random_paths: int = 2
    distill: bool = True
    optimizer: str = "sgd"
    lr: float = 0.05
    calibration_batches: int = 5
    scoring_workers: int = 1
    fold_bn: bool = False
    num_samples: int | None = None
    mode: str = "ga"
    population_size: int = 20
    generations: int = 5
    mutation_rate: float = 0.1
    crossover_rate: float = 0.8
    tournament_size: int = 5
    elitism: int = 2
    retrain: str = "scratch"
    retrain_epochs: int | None = None
    seed: int = II("seed")


@dataclass
class RLConfig:
    _target_: str = "lightning_nas.strategies.RLStrategy"
    num_samples: int = 100
    seed: int = II("seed")
    hidden_size: int = 64
    lr: float = 0.0035
    baseline_decay: float = 0.95
    entropy_weight: float = 0.0001
    failure_penalty: float = 1.0


@dataclass
class HyperbandConfig:
    _target_: str = "lightning_nas.strategies.HyperbandSearch"
    num_samples: int = 50
    seed: int = II("seed")
    min_epochs: int = 1
    max_epochs: int = 9
    eta: int = 3
    mode: str = "asha"


@dataclass
class BOHBConfig:
    _target_: str = "lightning_nas.strategies.BOHBSearch"
    num_samples: int = 50
    seed: int = II("seed")
    min_epochs: int = 1
    max_epochs: int = 9
    eta: int = 3
    random_fraction: float = 0.3333333333333333
    top_fraction: float = 0.15
    num_candidates: int = 64
    bandwidth: float = 0.2


@dataclass
class AutoConfig:
    _target_: str = "lightning_nas.strategies.auto.AutoStrategy"
    num_samples: int = 50
    seed: int = II("seed")


@dataclass
class BayesianConfig:
    _target_: str = "lightning_nas.strategies.BayesianStrategy"
    num_samples: int = 50
    seed: int = II("seed")
    sampler: str = "tpe"
    n_startup_trials: int = 10
    multivariate: bool = True
    population_size: int = 20


@dataclass
class DartsConfig:
    _target_: str = "lightning_nas.strategies.DartsModule"
    epochs: int | None = None
    order: str = "first"
    warmup_epochs: int = 0
    partial_channels: int = 1
    weight_lr: float = 0.025
    min_weight_lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 3e-4
    arch_lr: float = 3e-4
    arch_betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    arch_weight_decay: float = 1e-3
    grad_clip: float = 5.0
    max_skip_connections: int | None = None
    collapse_action: str = "warn"
    seed: int = II("seed")
    activation_checkpointing: bool = False
    hessian_difference: str = "central"


@dataclass
class WarmEvolutionConfig(EvolutionConfig):
    _target_: str = "lightning_nas.strategies.WarmStartEvolution"
    source: str | None = None
    top_k: int = 5
    scratch: str | None = None
    screen_factor: int = 4
    predictor: str = "ridge"


@dataclass
class NNITunerConfig:
    _target_: str = "lightning_nas.strategies.NNITunerStrategy"
    tuner: str = "TPE"
    tuner_kwargs: dict[str, Any] = field(default_factory=dict)
    num_samples: int = 50
    seed: int = II("seed")


@dataclass
class EnsembleConfig:
    _target_: str = "lightning_nas.strategies.EnsembleStrategy"
    members: list[dict[str, Any]] = field(default_factory=lambda: [
        {"name": "random", "fraction": 0.3},
        {"name": "evolution", "fraction": 0.7, "population_size": 8, "tournament_size": 3},
    ])
    num_samples: int = 20
    seed: int = II("seed")
    top_k: int = 5
    source: str | None = None


@dataclass
class BudgetConfig:
    """Size of a sample-based search; every strategy preset reads it (null: that strategy's own default)."""

    evaluations: int | None = None
    population_size: int | None = None
    time: str | None = None  # the whole run's wall time ("60min", "90s", "1.5h"); the run plans itself to fit
    final_fraction: float = 0.4  # share of budget.time for the final training when its epochs are planned
    final_epochs: int | None = None  # fixed final epochs under budget.time (the search gets the rest)
    final_core_share: float = 1.0  # share of a core the final training expects beside other work (1: its own)


# --- evaluators -------------------------------------------------------------------------------
@dataclass
class TrainEvaluatorConfig:
    _target_: str = "lightning_nas.evaluators.TrainEvaluator"
    max_epochs: int = 3
    max_steps: int = -1
    limit_train_batches: float = 1.0
    optimizer: str = "adamw"
    lr: float = 3e-3
    weight_decay: float = 5e-4
    momentum: float = 0.9
    label_smoothing: float = 0.0
    warmup_epochs: int = 0
    final_max_epochs: int | None = None
    final_limit_train_batches: float | None = None
    ema_decay: float = 0.0
    channels_last: bool = False
    final_warmup_epochs: float | None = None
    latency_repeats: int = 20
    precision: str = "32"  # "bf16-mixed", or "auto": each network in the faster of float32 and bfloat16 on the CPU
    latency_threads: int = 1
    seed: int = II("seed")
    accelerator: str = II("trainer.accelerator")
    deterministic: bool = II("trainer.deterministic")
    final_progress: bool = II("progress")


@dataclass
class RobustEvaluatorConfig:
    _target_: str = "lightning_nas.evaluators.RobustnessEvaluator"
    inner: TrainEvaluatorConfig = field(default_factory=TrainEvaluatorConfig)
    noise_levels: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3])
    corruptions: list[str] = field(default_factory=lambda: ["gaussian_noise", "shot_noise", "impulse_noise"])
    severity: int = 3
    eps: float = 0.03137254901960784
    pgd_steps: int = 10
    max_batches: int | None = 4


@dataclass
class TabularEvaluatorConfig:
    _target_: str = "lightning_nas.evaluators.TabularEvaluator"
    table: str = MISSING
    metric: str = "val_acc"
    key: str = "auto"
    arch_column: str = "arch"
    device: str | None = None
    fidelity: int | None = None


@dataclass
class ProxyEvaluatorConfig:
    _target_: str = "lightning_nas.evaluators.ProxyEvaluator"
    proxy: str = "naswot"
    batch_size: int = 64
    seed: int = II("seed")


# --- objective, trainer, logger ---------------------------------------------------------------
@dataclass
class ObjectiveConfig:
    _target_: str = "lightning_nas.objectives.Objective"
    weights: dict[str, float] = field(default_factory=lambda: {"accuracy": 1.0})


@dataclass
class MultiObjectiveConfig:
    _target_: str = "lightning_nas.objectives.MultiObjective"
    metrics: dict[str, str | None] = field(default_factory=lambda: {"accuracy": "max", "latency": "min"})
    weights: dict[str, float] | None = None
    constraints: dict[str, Any] | None = None
    reference_point: dict[str, float] | None = None
    score_metrics: dict[str, str | None] | None = None  # in the scalar score only, not on the Pareto front


@dataclass
class TrainerConfig:
    """Where candidates train; the training recipe itself lives in the evaluator group."""

    accelerator: str = "cpu"
    deterministic: bool = True


@dataclass
class WandbLoggerConfig:
    _target_: str = "lightning_nas.callbacks.WandbSearchLogger"
    project: str = "lightning_nas"
    mode: str = "offline"
    entity: str | None = None
    tags: list[str] = field(default_factory=list)
    run_name: str | None = None
    run_group: str | None = None


@dataclass
class ExportConfig:
    """Automatic export of the best architectures at the end of a search."""

    top_k: int = 0
    quantize: bool = False
    deploy: bool = True
    codegen: bool = True
    untrained: bool = False  # also export architectures without trained weights (their files say so)


# --- hardware -----------------------------------------------------------------------------------
@dataclass
class CpuTargetConfig:
    _target_: str = "lightning_nas.hardware.CpuTarget"
    threads: int = 1
    repeats: int = 30
    warmup: int = 5
    clock: str = "wall"


@dataclass
class XnnpackTargetConfig:
    _target_: str = "lightning_nas.hardware.XnnpackTarget"
    threads: int = 1
    repeats: int = 30
    warmup: int = 5
    quantize: bool = False
    clock: str = "wall"
    reference: str | None = None  # a baseline timed in turn with every candidate; figures scaled by it


@dataclass
class LookupTableTargetConfig:
    _target_: str = "lightning_nas.hardware.LookupTableTarget"
    table: str = MISSING
    fallback: str = "error"
    scale: float | None = None


@dataclass
class PredictedLatencyTargetConfig:
    _target_: str = "lightning_nas.hardware.PredictedLatencyTarget"
    predictor_path: str = MISSING


# --- executors ----------------------------------------------------------------------------------
@dataclass
class LocalExecutorConfig:
    _target_: str = "lightning_nas.executors.LocalExecutor"


@dataclass
class ProcessExecutorConfig:
    _target_: str = "lightning_nas.executors.ProcessExecutor"
    max_workers: int = 2
    retries: int = 1
    timeout_s: float | None = None
    nice: int = 0


@dataclass
class RayExecutorConfig:
    _target_: str = "lightning_nas.executors.RayExecutor"
    address: str | None = None
    num_cpus: int | None = None
    retries: int = 1
    timeout_s: float | None = None


# --- the whole run ----------------------------------------------------------------------------
@dataclass
class LightningNASConfig:
    """Top level: one node per group plus run-wide settings."""

    data: Any = MISSING
    search_space: Any = MISSING
    strategy: Any = MISSING
    evaluator: Any = MISSING
    objective: Any = MISSING
    trainer: Any = MISSING
    logger: Any = MISSING
    hardware: Any = None
    executor: Any = None
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    name: str = "default"
    seed: int = 0
    resume: bool = False
    output_dir: str | None = None
    final_training: bool = True
    progress: bool = True
    top_k: int = 5
    export: ExportConfig = field(default_factory=ExportConfig)


GROUP_SCHEMAS: dict[str, dict[str, type]] = {
    "data": {"digits": DigitsConfig, "fashion_mnist": FashionMNISTConfig, "cifar10": CIFAR10Config,
             "image_folder": ImageFolderConfig},
    "search_space": {"efficient_convnet": EfficientConvNetConfig, "hybrid_convnet": HybridConvNetConfig,
                     "macro_convnet": MacroConvNetConfig,
                     "darts_cell": DartsCellConfig, "nb201": NB201Config, "vit": VitSpaceConfig},
    "strategy": {"random": RandomConfig, "evolution": EvolutionConfig, "nsga2": NSGA2Config,
                 "supernet": SupernetConfig, "rl": RLConfig, "hyperband": HyperbandConfig,
                 "bohb": BOHBConfig, "auto": AutoConfig,
                 "bayesian": BayesianConfig, "darts": DartsConfig, "warm_evolution": WarmEvolutionConfig,
                 "nni": NNITunerConfig, "ensemble": EnsembleConfig},
    "evaluator": {"train": TrainEvaluatorConfig, "tabular": TabularEvaluatorConfig, "proxy": ProxyEvaluatorConfig,
                  "robust": RobustEvaluatorConfig},
    "objective": {"weighted": ObjectiveConfig, "multi": MultiObjectiveConfig},
    "trainer": {"cpu": TrainerConfig},
    "logger": {"wandb": WandbLoggerConfig},
    "executor": {"local": LocalExecutorConfig, "process": ProcessExecutorConfig, "ray": RayExecutorConfig},
    "hardware": {"cpu": CpuTargetConfig, "xnnpack": XnnpackTargetConfig, "lookup_table": LookupTableTargetConfig,
                 "predicted": PredictedLatencyTargetConfig},
}
"""Group -> schema name -> dataclass; each is stored as ``<name>_schema`` in its group."""


def _value_or(value: Any, default: Any) -> Any:
    """``${lnas.or:${budget.evaluations},20}``: ``value`` unless it is null, else ``default``."""
    return default if value is None else value


def _share(population: int, fraction: float, below: bool = False) -> int:
    """``${lnas.share:${strategy.population_size},0.5}``: ``round(population * fraction)``, at least 1 and
    at most ``population`` (with ``below``: at most ``population - 1``, at least 0), so a preset's
    tournament size or elitism fits every population size a command line chooses."""
    high = int(population) - 1 if below else int(population)
    return max(0 if below else 1, min(high, round(int(population) * float(fraction))))


def register_configs() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent)."""
    if not OmegaConf.has_resolver("lnas.or"):
        OmegaConf.register_new_resolver("lnas.or", _value_or)
    if not OmegaConf.has_resolver("lnas.share"):
        OmegaConf.register_new_resolver("lnas.share", _share)
    store = ConfigStore.instance()
    store.store(name="lightning_nas_schema", node=LightningNASConfig)
    for group, schemas in GROUP_SCHEMAS.items():
        for name, schema in schemas.items():
            store.store(group=group, name=f"{name}_schema", node=schema)
