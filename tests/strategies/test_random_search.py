import json

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.strategies import STRATEGIES, RandomSearch


def _result(arch: Architecture) -> EvalResult:
    return EvalResult("ok", {"search/val_acc": float(arch["width"]) / 8})


def _asks(strategy: RandomSearch, n: int) -> list[Architecture]:
    asked = []
    for _ in range(n):
        arch = strategy.ask()
        strategy.tell(arch, _result(arch))
        asked.append(arch)
    return asked


def test_registered() -> None:
    assert STRATEGIES.get("random") is RandomSearch


def test_no_repeats_until_the_space_is_exhausted(toy_space) -> None:
    strategy = RandomSearch(num_samples=100, seed=0)
    strategy.setup(toy_space)
    asked = _asks(strategy, 100)
    assert len(set(asked[: toy_space.cardinality])) == toy_space.cardinality == 96
    assert all(toy_space.validate(a) == a for a in asked)
    assert strategy.done


def test_same_seed_same_asks(toy_space) -> None:
    runs = []
    for seed in (7, 7, 8):
        strategy = RandomSearch(num_samples=20, seed=seed)
        strategy.setup(toy_space)
        runs.append(_asks(strategy, 20))
    assert runs[0] == runs[1] != runs[2]


def test_state_dict_round_trip_continues_identically(toy_space) -> None:
    original = RandomSearch(num_samples=60, seed=1)
    original.setup(toy_space)
    _asks(original, 30)
    pending = original.ask()  # checkpoint between ask and tell
    state = json.loads(json.dumps(original.state_dict()))

    restored = RandomSearch(num_samples=60, seed=99)
    restored.setup(toy_space)
    restored.load_state_dict(state)
    assert restored.ask() == pending and original.ask() == pending
    original.tell(pending, _result(pending))
    restored.tell(pending, _result(pending))
    assert _asks(restored, 29) == _asks(original, 29)
    assert restored.num_told == original.num_told == 60
