"""Constraint bounds that name a reference network (``max_latency: 0.95x two_conv_cnn``)."""

from __future__ import annotations

import pytest

from lightning_nas.objectives.reference import parse_reference, resolve_reference_bounds

KNOWN = {"two_conv_cnn": None, "resnet_small": None}


@pytest.mark.parametrize(("raw", "expected"), [
    ("two_conv_cnn", (1.0, "two_conv_cnn")), ("0.95x two_conv_cnn", (0.95, "two_conv_cnn")),
    ("2*resnet_small", (2.0, "resnet_small")), (" .5 x two_conv_cnn ", (0.5, "two_conv_cnn")),
    ("5M", None), ("100ms", None), (3.0, None), ("0.9x", None), (None, None),
])
def test_parse_reference(raw: object, expected: tuple[float, str] | None) -> None:
    assert parse_reference(raw) == expected


def test_resolve_scales_the_named_network_s_figure_and_measures_it_once() -> None:
    calls: list[str] = []

    def measure(name: str) -> dict[str, float]:
        calls.append(name)
        return {"hw/latency_ms": 0.08, "model/params": 50_000.0, "model/macs": 3.9e6}

    resolved = resolve_reference_bounds({"max_latency": "0.95x two_conv_cnn", "max_params": "two_conv_cnn",
                                         "max_macs": "6M", "min_accuracy": 0.5}, measure, KNOWN)
    assert resolved == {"max_latency": pytest.approx(0.076), "max_params": 50_000.0, "max_macs": "6M",
                        "min_accuracy": 0.5}
    assert calls == ["two_conv_cnn"]


@pytest.mark.parametrize(("constraints", "message"), [
    ({"min_accuracy": "two_conv_cnn"}, "objective.constraints.min_accuracy: only max_* bounds may name a network, "
                                        "got 'two_conv_cnn'"),
    ({"max_latency": "0.9x vgg16"}, "objective.constraints.max_latency: '0.9x vgg16' is neither a quantity nor a "
                                    "known network (resnet_small, two_conv_cnn)"),
    ({"max_latency": "0x two_conv_cnn"}, "objective.constraints.max_latency: the factor in '0x two_conv_cnn' must "
                                         "be above 0"),
    ({"max_memory": "two_conv_cnn"}, "objective.constraints.max_memory: measuring two_conv_cnn gave no hw/memory_mb"),
])
def test_resolve_errors_name_the_key(constraints: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as error:
        resolve_reference_bounds(constraints, lambda name: {"hw/latency_ms": 0.08}, KNOWN)
    assert str(error.value) == message
