"""Preflight checks: the smallest architecture of a space, impossible budgets, output folders, accelerators."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from lightning_nas.arch import Architecture
from lightning_nas.config import ConfigError
from lightning_nas.hardware.profile import count_params
from lightning_nas.objectives.constraints import parse_constraints
from lightning_nas.preflight import (
    blame_budget,
    check_accelerator,
    check_budget,
    check_output_dir,
    minimum_cost,
)
from lightning_nas.results.fingerprint import differences
from lightning_nas.spaces.base import SearchSpace


def test_minimum_cost_is_the_smallest_architecture_of_the_space(toy_space: SearchSpace) -> None:
    decisions = toy_space.decisions
    every = [Architecture(dict(zip(decisions, values, strict=True)))
             for values in itertools.product(*(c.candidates for c in decisions.values()))]
    with torch.random.fork_rng(devices=[]):
        smallest = min(count_params(toy_space.build(arch)) for arch in every)
    found, arch = minimum_cost(toy_space, "model/params")
    assert found == smallest
    assert count_params(toy_space.build(arch)) == smallest


def test_an_impossible_budget_is_refused_naming_the_minimum(toy_space: SearchSpace) -> None:
    smallest, _ = minimum_cost(toy_space, "model/params")
    check_budget(toy_space, parse_constraints({"max_params": smallest}))  # reachable: accepted
    with pytest.raises(ConfigError, match=rf"^objective\.constraints\.max_params: 10 cannot be met.*{smallest:,.0f}"):
        check_budget(toy_space, parse_constraints({"max_params": 10}))
    check_budget(toy_space, parse_constraints({"max_latency": "1us", "min_accuracy": 0.99}))  # not space costs


def test_output_dir_must_be_a_writable_folder(tmp_path: Path) -> None:
    check_output_dir(tmp_path / "new" / "run")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"^output_dir: .* is a file, not a folder"):
        check_output_dir(tmp_path / "file")
    with pytest.raises(ConfigError, match=r"^output_dir: .* is a file, so"):
        check_output_dir(tmp_path / "file" / "run")


def test_accelerator_must_exist_and_be_available() -> None:
    check_accelerator("cpu")
    check_accelerator("auto")
    with pytest.raises(ConfigError, match=r"^trainer\.accelerator: unknown accelerator 'warp'"):
        check_accelerator("warp")


def test_strategy_errors_name_the_budget_key_the_user_set() -> None:
    cfg = OmegaConf.create({"budget": {"evaluations": -1, "population_size": None},
                            "strategy": {"num_samples": "${budget.evaluations}", "population_size": 50}})
    assert blame_budget(cfg, "strategy.num_samples must be at least 1, got -1") == \
        "budget.evaluations must be at least 1, got -1 (read as strategy.num_samples)"
    cfg.budget.evaluations = None
    assert blame_budget(cfg, "strategy.num_samples must be at least 1") == "strategy.num_samples must be at least 1"


def test_a_larger_budget_is_not_a_different_run() -> None:
    saved = {"seed": 3, "strategy": {"num_samples": 10, "mutation_rate": 0.1}, "data": {"num_workers": 0}}
    same = {"seed": 3, "strategy": {"num_samples": 20, "mutation_rate": 0.1}, "data": {"num_workers": 2}}
    assert differences(saved, same) == []
    assert differences(saved, {**same, "seed": 4, "strategy": {"mutation_rate": 0.2}}) == \
        ["seed", "strategy.mutation_rate"]
