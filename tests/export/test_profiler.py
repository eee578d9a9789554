"""Profiling an exported ``.pte``: latency, planned memory, ETDump operator profile, threads."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import torch

from lightning_nas.export import export_model, planned_memory_bytes, profile_pte
from lightning_nas.export.profiler import rounds_in_turn, time_in_turn

ARCH = {"width": 4, "kernel": 3, "depth": 1, "block0/op": "conv", "block1/op": "conv", "block2/op": "conv"}


@pytest.fixture(scope="module")
def cache() -> dict[str, Path]:
    return {}


@pytest.fixture
def pte(toy_space: Any, tmp_path_factory: pytest.TempPathFactory, cache: dict[str, Path]) -> Path:
    if "pte" not in cache:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = toy_space.build(ARCH)
        path = tmp_path_factory.mktemp("profile") / "toy.pte"
        cache["pte"] = export_model(model, torch.zeros(1, 1, 8, 8), path).path
    return cache["pte"]


def _pool_size() -> int:
    from executorch.extension.pybindings import portable_lib

    return int(portable_lib._threadpool_get_thread_count())


def test_latency_memory_and_threads(pte: Path) -> None:
    before = _pool_size()
    profile = profile_pte(pte, (1, 8, 8), repeats=20, warmup=2, threads=1)
    assert 0 < profile.median_ms <= profile.p90_ms
    assert profile.mean_ms > 0 and profile.repeats == 20
    assert profile.threads == 1 and _pool_size() == before, "the threadpool size must be restored"
    # input (1x1x8x8 floats) and logits (10 floats) live in the memory plan at least
    assert profile.planned_memory_bytes == planned_memory_bytes(pte) >= (64 + 10) * 4
    assert profile.file_bytes == pte.stat().st_size
    assert profile.op_profile == () and profile.op_profile_source == "none"


def test_etdump_operator_profile_csv(pte: Path, tmp_path: Path) -> None:
    out = tmp_path / "ops.csv"
    profile = profile_pte(pte, (1, 1, 8, 8), repeats=10, warmup=2, etdump_csv=out)
    assert profile.op_profile_source == "etdump" and profile.etdump_csv == out
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == len(profile.op_profile)
    events = {row["event"]: row for row in rows}
    assert "DELEGATE_CALL" in events and "Method::execute" in events
    assert int(events["Method::execute"]["count"]) == 10  # warmup runs dropped
    assert float(events["Method::execute"]["median_ms"]) > 0
    xnnpack_ops = [row for row in rows if row["delegated"] == "1"]
    assert any("Convolution" in row["event"] for row in xnnpack_ops)


def test_cpu_clock_times_the_calling_thread(pte: Path) -> None:
    profile = profile_pte(pte, (1, 8, 8), repeats=10, warmup=2, threads=1, clock="cpu")
    assert 0 < profile.median_ms <= profile.p90_ms
    with pytest.raises(ValueError, match="clock 'cpu' times the calling thread only: it needs threads=1, got 2"):
        profile_pte(pte, (1, 8, 8), threads=2, clock="cpu")
    with pytest.raises(ValueError, match=r"clock must be one of \['cpu', 'wall'\], got 'gpu'"):
        profile_pte(pte, (1, 8, 8), clock="gpu")


def test_rejects_a_wrong_input_shape(pte: Path) -> None:
    with pytest.raises(ValueError, match="does not match"):
        profile_pte(pte, (3, 8, 8), repeats=1)


def test_programs_timed_in_turn_get_every_round_and_restore_the_pool(pte: Path, tmp_path: Path) -> None:
    second = tmp_path / "second.pte"
    second.write_bytes(pte.read_bytes())
    before = _pool_size()
    first_ms, second_ms = time_in_turn([pte, second], (1, 8, 8), rounds=3, repeats=4, warmup=1, clock="cpu")
    assert len(first_ms) == len(second_ms) == 12
    assert first_ms == sorted(first_ms) and all(t > 0 for t in first_ms + second_ms)
    assert _pool_size() == before
    by_round = rounds_in_turn([pte, second], (1, 8, 8), rounds=3, repeats=4, warmup=1, clock="cpu")
    assert [[len(r) for r in program] for program in by_round] == [[4, 4, 4], [4, 4, 4]]  # kept by round
    assert all(t > 0 for program in by_round for r in program for t in r)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"rounds": 0}, "need rounds >= 1"), ({"repeats": 0}, "need rounds >= 1"),
    ({"clock": "gpu"}, "clock must be one of"), ({"threads": 2, "clock": "cpu"}, "needs threads=1, got 2"),
])
def test_timing_in_turn_checks_its_arguments(pte: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        time_in_turn([pte], (1, 8, 8), **kwargs)
