"""CIFAR-10: the python pickle format (as torchvision expects it), without md5 checks or downloads."""

from __future__ import annotations

import datetime
import pickle
from pathlib import Path

import pytest
import torch
from data_files import CIFAR_NAMES, write_cifar

from lightning_nas.data import CIFAR10DataModule, read_cifar_batch
from lightning_nas.data import cifar10 as cifar


def test_loads_all_batches_in_chw_order(cifar_root: Path) -> None:
    dm = CIFAR10DataModule(data_dir=str(cifar_root), normalize=False, val_fraction=0.2)
    dm.setup()
    assert dm.class_names == CIFAR_NAMES and dm.input_shape == (3, 32, 32)
    assert len(dm.train_dataset.base) == 5 * 20 and len(dm.test_dataset) == 30
    assert (len(dm.train_dataset), len(dm.val_dataset)) == (80, 20)
    x, y = dm.test_dataset[7]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == 1007 % 10
    # rows hold the R plane, then G, then B: each channel keeps its own value
    assert float(x[1].mean()) == pytest.approx(128 / 255) and float(x[2].min()) == pytest.approx(250 / 255)
    assert float(x[0, 0, 0]) == pytest.approx((1007 % 256) / 255) and float(x[0, 0, 1]) == pytest.approx(
        10 / 255
    )
    first_pixels = dm.train_dataset.base.images[:, 0, 0, 0]  # type: ignore[attr-defined]
    assert first_pixels.tolist() == list(range(100))  # batches 1..5 concatenated in order


def test_data_dir_may_be_the_batches_folder(cifar_root: Path) -> None:
    dm = CIFAR10DataModule(data_dir=str(cifar_root / "cifar-10-batches-py"))
    assert dm.find_files() == cifar_root / "cifar-10-batches-py"
    assert len(dm.test_dataset) == 30


def test_env_var_sets_the_root(cifar_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cifar.ENV_VAR, str(cifar_root))
    assert CIFAR10DataModule().find_files() == cifar_root / "cifar-10-batches-py"


def test_missing_files_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cifar.ENV_VAR, raising=False)
    partial = write_cifar(tmp_path / "partial")
    (partial / "cifar-10-batches-py" / "data_batch_3").unlink()
    dm = CIFAR10DataModule(data_dir=str(partial))
    dm.prepare_data()  # download=False: never downloads
    with pytest.raises(FileNotFoundError) as info:
        dm.setup("test")
    message = str(info.value)
    assert str(partial / "cifar-10-batches-py") in message and "data_batch_3" in message
    assert "data.download=true" in message and "data.data_dir" in message


def test_wrong_label_names_are_reported(tmp_path: Path) -> None:
    root = write_cifar(tmp_path, per_batch=2, n_test=2, names=[f"c{i}" for i in range(10)])
    with pytest.raises(ValueError, match=r"batches\.meta: label_names"):
        CIFAR10DataModule(data_dir=str(root)).setup("test")


def test_unpickler_refuses_anything_but_numpy(tmp_path: Path) -> None:
    path = tmp_path / "evil"
    path.write_bytes(pickle.dumps({"data": datetime.date(2020, 1, 1)}))
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load datetime\.date"):
        read_cifar_batch(path)
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(ValueError, match="not a CIFAR batch file"):
        read_cifar_batch(path)


def test_download_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    calls: list[str] = []

    def fake_download(root: str, train: bool, download: bool) -> None:
        assert download
        calls.append(root)
        write_cifar(Path(root), per_batch=2, n_test=4)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake_download)
    CIFAR10DataModule(data_dir=str(tmp_path / "none")).prepare_data()
    assert not calls
    dm = CIFAR10DataModule(data_dir=str(tmp_path / "dl"), download=True)
    dm.prepare_data()
    dm.prepare_data()
    assert calls == [str(tmp_path / "dl")]
    assert len(dm.test_dataset) == 4


def test_cifar_specific_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match=r"data\.download.*1"):
        CIFAR10DataModule(download=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"data\.data_dir.*''"):
        CIFAR10DataModule(data_dir="")
