import json

import numpy as np
import pytest

from lightning_nas.arch import Architecture


def test_equal_regardless_of_order_and_hashable() -> None:
    a = Architecture({"b": 2, "a": (0, 1), "c": "conv"})
    b = Architecture({"c": "conv", "a": [0, 1], "b": 2})
    assert a == b and hash(a) == hash(b)
    assert len({a, b}) == 1


def test_json_round_trip_is_exact_for_every_value_type() -> None:
    arch = Architecture({"int": 3, "float": 0.1 + 0.2, "str": "sep_conv3x3", "bool": True, "tuple": (0, 2)})
    again = Architecture.from_json(arch.to_json())
    assert again == arch
    assert type(again["bool"]) is bool and type(again["float"]) is float and again["tuple"] == (0, 2)
    assert json.loads(arch.to_json())["tuple"] == [0, 2]


def test_int_and_float_and_bool_are_different_values() -> None:
    assert Architecture({"x": 1}) != Architecture({"x": 1.0})
    assert Architecture({"x": 1}) != Architecture({"x": True})


def test_is_immutable() -> None:
    arch = Architecture({"a": 1})
    with pytest.raises(TypeError):
        arch["a"] = 2  # type: ignore[index]
    assert arch.with_value("a", 2)["a"] == 2 and arch["a"] == 1


def test_rejects_unsupported_values() -> None:
    with pytest.raises(ValueError, match="unsupported choice value"):
        Architecture({"a": {"nested": 1}})
    with pytest.raises(ValueError, match="integers only"):
        Architecture({"a": [1.5]})


def test_save_and_load(tmp_path) -> None:
    arch = Architecture({"w": 0.75, "depth": 4})
    arch.save(tmp_path / "best" / "arch.json")
    assert Architecture.load(tmp_path / "best" / "arch.json") == arch
    assert arch.digest() == Architecture.load(tmp_path / "best" / "arch.json").digest()


def test_digest_is_stable() -> None:
    rng = np.random.default_rng(0)
    archs = [Architecture({"x": int(v)}) for v in rng.integers(0, 1000, 50)]
    assert all(a.digest() == Architecture(a.to_dict()).digest() for a in archs)
