"""Files a user hands in (weights, a run's supernet.pt) load as tensors only; code in them never runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lightning_nas.config import ConfigError
from lightning_nas.safe_load import load_state_dict_file
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies.supernet_search import SupernetSearch


def test_a_crafted_pickle_is_refused_unread(crafted_pickle: tuple[Path, Path]) -> None:
    path, marker = crafted_pickle
    with pytest.raises(ConfigError, match=r"^weights: .* objects other than tensors") as caught:
        load_state_dict_file(path, "weights", "pass a file saved with torch.save(model.state_dict())")
    assert "\n" not in str(caught.value)
    assert not marker.exists()


@pytest.mark.parametrize(("content", "reason"), [
    (b"not a checkpoint at all", "not a file written by torch.save"),
    (None, "expected a mapping of names to tensors"),
])
def test_other_bad_files_are_one_line(tmp_path: Path, content: bytes | None, reason: str) -> None:
    path = tmp_path / "weights.pt"
    if content is None:
        torch.save([torch.zeros(2)], path)
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=reason) as caught:
        load_state_dict_file(path, "weights", "fix")
    assert "\n" not in str(caught.value) and str(caught.value).startswith("weights: ")


def test_a_state_dict_round_trips(tmp_path: Path) -> None:
    torch.save({"w": torch.ones(3)}, tmp_path / "ok.pt")
    assert torch.equal(load_state_dict_file(tmp_path / "ok.pt", "weights", "fix")["w"], torch.ones(3))


def test_a_crafted_supernet_checkpoint_in_a_run_folder_runs_nothing(toy_space: SearchSpace, tmp_path: Path,
                                                                     crafted_pickle: tuple[Path, Path]) -> None:
    path, marker = crafted_pickle
    (tmp_path / "supernet.pt").write_bytes(path.read_bytes())
    with pytest.raises(ConfigError, match=r"^resume: .*supernet\.pt is not a state_dict"):
        SupernetSearch(epochs=1).train_supernet(toy_space, None, tmp_path)  # type: ignore[arg-type]
    assert not marker.exists()
