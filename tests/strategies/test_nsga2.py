import json
import math

import numpy as np
import pytest

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.evaluators.base import Evaluator
from lightning_nas.objectives.multi import MultiObjective
from lightning_nas.objectives.score import Objective
from lightning_nas.results.history import History
from lightning_nas.search import run_search
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies import STRATEGIES, RandomSearch, Strategy
from lightning_nas.strategies.nsga2 import NSGA2Strategy

OBJECTIVE = MultiObjective({"accuracy": "max", "latency": "min"},
                           reference_point={"accuracy": 0.0, "latency": 25.0})


def zdt(arch: Architecture) -> EvalResult:
    """A ZDT1-like problem on the toy space: (width, depth) place a candidate along the front,
    kernel 3 and conv ops bring it onto the front (6 of the 96 architectures are Pareto-optimal)."""
    t = ([4, 8].index(int(arch["width"])) * 3 + [1, 2, 3].index(int(arch["depth"]))) / 5
    g = ((arch["kernel"] == 5) + sum(arch[f"block{i}/op"] == "skip" for i in range(3))) / 4
    accuracy = 1 - (1 - math.sqrt(t) + g) / 2
    return EvalResult("ok", {"search/val_acc": accuracy, "hw/latency_ms": 1 + 10 * (t + g)})


def drive(strategy: Strategy, space: SearchSpace, n: int | None = None, score: object = OBJECTIVE,
          problem=zdt) -> list[Architecture]:
    """Ask/tell ``n`` times (default: until done); the asked architectures in order."""
    if strategy.space is None:
        strategy.setup(space, score)  # type: ignore[arg-type]
    asked = []
    for _ in range(strategy.num_samples - strategy.num_told if n is None else n):
        arch = strategy.ask()
        strategy.tell(arch, problem(arch))
        asked.append(arch)
    return asked


def test_registered_and_default_budget() -> None:
    assert STRATEGIES.get("nsga2") is NSGA2Strategy
    assert NSGA2Strategy().num_samples == 100
    assert NSGA2Strategy(population_size=8, generations=3).num_samples == 24
    assert NSGA2Strategy(num_samples=7).num_samples == 7


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"population_size": 1}, "population_size"),
        ({"population_size": 4.0}, "population_size"),
        ({"generations": 0}, "generations"),
        ({"mutation_rate": -0.1}, "mutation_rate"),
        ({"crossover_rate": 1.5}, "crossover_rate"),
        ({"num_samples": 0}, "num_samples"),
        ({"num_samples": 2.5}, "num_samples"),
    ],
)
def test_validation_names_the_key(kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(ValueError, match=rf"strategy\.{key}"):
        NSGA2Strategy(**kwargs)  # type: ignore[arg-type]


def test_beats_random_search_on_hypervolume(toy_space) -> None:
    nsga, rand = [], []
    for seed in range(16):
        strategy = NSGA2Strategy(seed=seed, population_size=8, generations=5)
        asked = drive(strategy, toy_space)
        nsga.append(OBJECTIVE.hypervolume([zdt(a) for a in asked]))
        baseline = drive(RandomSearch(num_samples=40, seed=seed), toy_space)
        rand.append(OBJECTIVE.hypervolume([zdt(a) for a in baseline]))
    assert np.mean(nsga) > np.mean(rand) + 0.5


def test_front_reports_the_non_dominated_told(toy_space) -> None:
    strategy = NSGA2Strategy(seed=0, population_size=8, generations=5)
    assert strategy.front() == []
    asked = drive(strategy, toy_space)
    front = strategy.front()
    assert front and [r for _, r in front] == OBJECTIVE.front(zdt(a) for a in asked)


def test_constraints_keep_the_final_population_feasible(toy_space) -> None:
    constrained = MultiObjective({"accuracy": "max", "latency": "min"}, constraints={"max_latency": "6ms"})
    assert any(constrained.feasible(zdt(toy_space.sample(np.random.default_rng(i)))) for i in range(50))
    for seed in range(3):
        strategy = NSGA2Strategy(seed=seed, population_size=8, generations=5)
        drive(strategy, toy_space, score=constrained)
        assert all(constrained.feasible(result) for _, result in strategy.population)


def test_infeasible_survivors_are_the_least_violating(toy_space) -> None:
    # nothing is feasible: the population keeps the lowest violations (Deb's rule)
    impossible = MultiObjective(constraints={"max_latency": "0.5ms"})
    strategy = NSGA2Strategy(seed=1, population_size=6, generations=4)
    asked = drive(strategy, toy_space, score=impossible)
    kept = sorted(impossible.violation(r) for _, r in strategy.population)
    told = sorted(impossible.violation(zdt(a)) for a in asked)
    assert kept == told[:6]


def test_single_objective_fallback_is_elitist(toy_space) -> None:
    def accuracy_or_fail(arch: Architecture) -> EvalResult:
        return EvalResult.failed("boom") if arch["kernel"] == 5 else zdt(arch)

    strategy = NSGA2Strategy(seed=3, population_size=6, generations=4)
    asked = drive(strategy, toy_space, score=Objective({"accuracy": 1.0}), problem=accuracy_or_fail)
    best = max(Objective()(accuracy_or_fail(a)) for a in asked)
    alive = [Objective()(r) for _, r in strategy.population]
    assert max(alive) == best
    assert all(math.isfinite(score) for score in alive)  # failures never survive while enough succeed


def test_never_repeats_until_the_space_is_exhausted(toy_space) -> None:
    strategy = NSGA2Strategy(num_samples=96, seed=0, population_size=8)
    asked = drive(strategy, toy_space)
    assert len(set(asked)) == 96


def test_same_seed_same_asks(toy_space) -> None:
    first = drive(NSGA2Strategy(seed=5, population_size=6, generations=4), toy_space)
    second = drive(NSGA2Strategy(seed=5, population_size=6, generations=4), toy_space)
    assert first == second
    assert first != drive(NSGA2Strategy(seed=6, population_size=6, generations=4), toy_space)


@pytest.mark.parametrize("stop", [3, 6, 10, 17])
def test_state_dict_round_trip_continues_identically(toy_space, stop: int) -> None:
    original = NSGA2Strategy(seed=2, population_size=6, generations=4)
    drive(original, toy_space, n=stop)
    pending = original.ask()  # a checkpoint taken between ask and tell
    state = json.loads(json.dumps(original.state_dict(), allow_nan=False))
    restored = NSGA2Strategy(seed=99, population_size=6, generations=4)
    restored.setup(toy_space, OBJECTIVE)
    restored.load_state_dict(state)
    assert restored.ask() == pending
    assert restored.generation == original.generation
    assert drive(restored, toy_space) == drive(original, toy_space)
    with pytest.raises(ValueError, match="population_size"):
        NSGA2Strategy(population_size=7).load_state_dict(state)


class ZDTEvaluator(Evaluator):
    def evaluate(self, space: SearchSpace, arch: Architecture) -> EvalResult:
        return zdt(arch)


def test_resumed_search_continues_like_an_uninterrupted_one(toy_space, tmp_path) -> None:
    straight = run_search(toy_space, NSGA2Strategy(num_samples=30, seed=4, population_size=6),
                          ZDTEvaluator(), History(), score=OBJECTIVE, progress=False)
    path = tmp_path / "history.jsonl"
    run_search(toy_space, NSGA2Strategy(num_samples=17, seed=4, population_size=6),
               ZDTEvaluator(), History(path), score=OBJECTIVE, progress=False)
    resumed = run_search(toy_space, NSGA2Strategy(num_samples=30, seed=4, population_size=6),
                         ZDTEvaluator(), History(path), score=OBJECTIVE, progress=False)
    assert [r.arch for r in resumed] == [r.arch for r in straight]
