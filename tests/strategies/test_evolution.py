import json
import math
import re
from collections.abc import Callable

import numpy as np
import pytest

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.evaluators.base import Evaluator
from lightning_nas.results.history import History
from lightning_nas.search import run_search
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies import STRATEGIES, EvolutionStrategy, RandomSearch, Strategy

Objective = Callable[[Architecture], EvalResult]


def onemax(arch: Architecture) -> EvalResult:
    """Fraction of layers whose op is "a" (the optimum is all "a")."""
    return EvalResult("ok", {"search/val_acc": sum(v == "a" for v in arch.values()) / len(arch)})


def toy_objective(arch: Architecture) -> EvalResult:
    """Number of conv ops actually used plus width; fails for kernel 5 so failures are mixed in."""
    if arch["kernel"] == 5 and arch["depth"] == 2:
        return EvalResult.failed("boom")
    convs = sum(arch[f"block{i}/op"] == "conv" for i in range(int(arch["depth"])))
    return EvalResult("ok", {"search/val_acc": convs + float(arch["width"]) / 8})


def drive(
    strategy: Strategy, space: SearchSpace, objective: Objective, n: int | None = None
) -> list[Architecture]:
    """Ask/tell ``n`` times (default: until done); the asked architectures in order."""
    if strategy.space is None:
        strategy.setup(space)
    asked = []
    for _ in range(strategy.num_samples - strategy.num_told if n is None else n):
        arch = strategy.ask()
        strategy.tell(arch, objective(arch))
        asked.append(arch)
    return asked


def test_registered_and_default_budget() -> None:
    assert STRATEGIES.get("evolution") is EvolutionStrategy
    assert EvolutionStrategy().num_samples == 250
    assert EvolutionStrategy(population_size=10, generations=3).num_samples == 30
    assert EvolutionStrategy(num_samples=7).num_samples == 7


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"mode": "tabu"}, "mode"),
        ({"population_size": 1, "tournament_size": 1, "elitism": 0}, "population_size"),
        ({"generations": 0}, "generations"),
        ({"mutation_rate": -0.1}, "mutation_rate"),
        ({"crossover_rate": 1.5}, "crossover_rate"),
        ({"population_size": 4, "tournament_size": 5}, "tournament_size"),
        ({"tournament_size": 0}, "tournament_size"),
        ({"population_size": 4, "tournament_size": 2, "elitism": 4}, "elitism"),
        ({"elitism": -1}, "elitism"),
        ({"num_samples": 0}, "num_samples"),
        ({"num_samples": 2.5}, "num_samples"),
    ],
)
def test_bad_arguments_name_the_key(kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"strategy.{key}")):
        EvolutionStrategy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["ga", "aging"])
def test_same_seed_same_asks(toy_space, mode: str) -> None:
    runs = [
        drive(EvolutionStrategy(40, seed=s, mode=mode, population_size=8, tournament_size=3), toy_space,
              toy_objective)
        for s in (3, 3, 4)
    ]
    assert runs[0] == runs[1] != runs[2]


@pytest.mark.parametrize("mode", ["ga", "aging"])
def test_offspring_are_new_until_the_space_is_exhausted(toy_space, mode: str) -> None:
    strategy = EvolutionStrategy(120, seed=0, mode=mode, population_size=8, tournament_size=3)
    asked = drive(strategy, toy_space, toy_objective)
    assert len(set(asked[:96])) == 96
    assert all(toy_space.validate(a) == a for a in asked)


@pytest.mark.parametrize("mode", ["ga", "aging"])
@pytest.mark.parametrize("stop", [5, 13, 22])  # initial population, first and second GA generations
def test_state_dict_round_trip_continues_identically(toy_space, mode: str, stop: int) -> None:
    config = {"mode": mode, "population_size": 8, "tournament_size": 3, "elitism": 2}
    original = EvolutionStrategy(40, seed=5, **config)  # type: ignore[arg-type]
    drive(original, toy_space, toy_objective, stop)
    pending = original.ask()  # checkpoint between ask and tell
    state = json.loads(json.dumps(original.state_dict()))

    restored = EvolutionStrategy(40, seed=123, **config)  # type: ignore[arg-type]
    restored.setup(toy_space)
    restored.load_state_dict(state)
    assert restored.ask() == pending
    assert restored.population == original.population and restored.generation == original.generation
    assert drive(restored, toy_space, toy_objective) == drive(original, toy_space, toy_objective)
    assert restored.best() == original.best()


def test_load_state_dict_rejects_another_configuration() -> None:
    state = EvolutionStrategy(mode="aging").state_dict()
    with pytest.raises(ValueError, match=r"strategy\.mode"):
        EvolutionStrategy(mode="ga").load_state_dict(state)


@pytest.mark.parametrize("mode", ["ga", "aging"])
def test_beats_random_search_on_a_synthetic_objective(wide_space, mode: str) -> None:
    budget, seeds = 200, range(4)
    random_best = []
    for seed in seeds:
        asked = drive(RandomSearch(budget, seed=seed), wide_space, onemax)
        random_best.append(max(onemax(arch).metrics["search/val_acc"] for arch in asked))
    evolution_best = []
    for seed in seeds:
        strategy = EvolutionStrategy(budget, seed=seed, mode=mode, population_size=20, mutation_rate=0.05)
        drive(strategy, wide_space, onemax)
        evolution_best.append(strategy.best()[1])
    assert min(evolution_best) > float(np.mean(random_best))


def test_ga_elitism_keeps_the_best_without_reevaluating(wide_space) -> None:
    population, elitism = 10, 2
    strategy = EvolutionStrategy(10 + 8 * 4, seed=0, population_size=population, elitism=elitism)
    strategy.setup(wide_space)
    asked = drive(strategy, wide_space, onemax, population)
    for generation in range(1, 5):
        best_arch, best_score = strategy.best()
        asked += drive(strategy, wide_space, onemax, population - elitism)  # elites cost no evaluation
        assert strategy.generation == generation and len(strategy.population) == population
        assert best_arch in {arch for arch, _ in strategy.population}
        assert strategy.best()[1] >= best_score
    assert strategy.done and len(set(asked)) == len(asked)


def test_aging_removes_the_oldest(wide_space) -> None:
    strategy = EvolutionStrategy(30, seed=0, mode="aging", population_size=6, tournament_size=3)
    asked = drive(strategy, wide_space, onemax, 6)
    assert [arch for arch, _ in strategy.population] == asked
    for _ in range(10):
        asked += drive(strategy, wide_space, onemax, 1)
        assert [arch for arch, _ in strategy.population] == asked[-6:]


@pytest.mark.parametrize("mode", ["ga", "aging"])
def test_failed_candidates_are_never_parents(wide_space, mode: str) -> None:
    good = Architecture({f"layer{i}/op": "b" for i in range(16)})

    def only_good_succeeds(arch: Architecture) -> EvalResult:
        return onemax(arch) if arch == good else EvalResult.failed("diverged")

    strategy = EvolutionStrategy(30, seed=1, mode=mode, population_size=6, tournament_size=6, elitism=1,
                                 mutation_rate=0.0, crossover_rate=1.0)
    strategy.setup(wide_space)
    drive(strategy, wide_space, lambda arch: EvalResult.failed("diverged"), 3)
    strategy.tell(good, only_good_succeeds(good))  # a user-told arch joins the population too
    drive(strategy, wide_space, only_good_succeeds, 2)
    # Aging evicts ``good`` with the 4th child (it is 4th oldest); the GA keeps it as its only elite.
    children = drive(strategy, wide_space, only_good_succeeds, 4 if mode == "aging" else 20)
    assert all(sum(child[k] != good[k] for k in good) == 1 for child in children)
    assert strategy.best() == (good, 0.0)


def test_all_failed_still_proposes_new_valid_architectures(toy_space) -> None:
    strategy = EvolutionStrategy(40, seed=2, population_size=6, tournament_size=2)
    asked = drive(strategy, toy_space, lambda arch: EvalResult.failed("oom"))
    assert len(set(asked)) == len(asked) and all(toy_space.validate(a) == a for a in asked)
    assert strategy.best()[1] == -math.inf
    with pytest.raises(RuntimeError, match="told"):
        EvolutionStrategy().best()


class _Objective(Evaluator):
    def evaluate(self, space: SearchSpace, arch: Architecture) -> EvalResult:
        return toy_objective(arch)


@pytest.mark.parametrize("mode", ["ga", "aging"])
def test_resumes_through_the_search_loop(tmp_path, toy_space, mode: str) -> None:
    config = {"seed": 4, "mode": mode, "population_size": 8, "tournament_size": 3}
    full = run_search(toy_space, EvolutionStrategy(30, **config), _Objective(), History(),  # type: ignore[arg-type]
                      progress=False)
    path = tmp_path / "history.jsonl"
    run_search(toy_space, EvolutionStrategy(12, **config), _Objective(), History(path),  # type: ignore[arg-type]
               progress=False)
    resumed = run_search(toy_space, EvolutionStrategy(30, **config), _Objective(),  # type: ignore[arg-type]
                         History(path), progress=False)
    assert [r.arch for r in resumed] == [r.arch for r in full]
