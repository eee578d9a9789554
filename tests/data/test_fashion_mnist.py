"""Fashion-MNIST: IDX parsing, the file search order, the missing-files message, and the real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from data_files import write_fashion, write_idx

from lightning_nas.data import FashionMNISTDataModule, read_idx
from lightning_nas.data import fashion_mnist as fm

STANDARD_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


@pytest.fixture
def no_system_copy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Hide the Debian files and the environment variable, so only the test's files are found."""
    monkeypatch.setattr(fm, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-debian")
    monkeypatch.delenv(fm.ENV_VAR, raising=False)


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_round_trip(tmp_path: Path, compress: bool) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / "images", images, compress)
    np.testing.assert_array_equal(read_idx(path, fm.IMAGES_MAGIC), images)
    wide = np.array([1, -2, 70000], dtype=np.int32)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "wide", wide)), wide)


def test_read_idx_rejects_bad_files(tmp_path: Path) -> None:
    labels = write_idx(tmp_path / "labels", np.zeros(5, dtype=np.uint8))
    with pytest.raises(ValueError, match="magic number 2049, expected 2051"):
        read_idx(labels, fm.IMAGES_MAGIC)
    junk = tmp_path / "junk"
    junk.write_bytes(b"PK\x03\x04 not an idx file")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(junk)
    truncated = tmp_path / "truncated"
    truncated.write_bytes(write_idx(tmp_path / "full", np.zeros((4, 2), np.uint8), False).read_bytes()[:-1])
    with pytest.raises(ValueError, match="needs 8"):
        read_idx(truncated)


def test_loads_idx_files_with_standard_semantics(fashion_dir: Path) -> None:
    dm = FashionMNISTDataModule(data_dir=str(fashion_dir), normalize=False, val_fraction=0.2)
    dm.setup()
    assert dm.class_names == STANDARD_NAMES and dm.input_shape == (1, 28, 28)
    assert (len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)) == (80, 20, 40)
    x, y = dm.test_dataset[13]
    assert x.shape == (1, 28, 28) and y == 3
    torch.testing.assert_close(x, torch.full((1, 28, 28), 13 / 255))


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_system_copy: None) -> None:
    explicit = write_fashion(tmp_path / "explicit", n_train=20, n_test=10)
    from_env = write_fashion(tmp_path / "env", n_train=30, n_test=10, compress=False)
    layout = write_fashion(tmp_path / "tv" / "FashionMNIST" / "raw", n_train=40, n_test=10)
    monkeypatch.setenv(fm.ENV_VAR, str(from_env))
    assert FashionMNISTDataModule(data_dir=str(explicit)).find_files() == explicit
    assert FashionMNISTDataModule(data_dir=str(tmp_path / "tv")).find_files() == from_env
    monkeypatch.delenv(fm.ENV_VAR)
    dm = FashionMNISTDataModule(data_dir=str(tmp_path / "tv"))
    assert dm.find_files() == layout
    assert len(dm.train_dataset) + len(dm.val_dataset) == 40
    monkeypatch.setattr(fm, "DEBIAN_FASHION_MNIST_DIR", explicit)
    assert FashionMNISTDataModule(data_dir=str(tmp_path / "tv")).find_files() == explicit


def test_a_data_dir_passed_over_is_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             no_system_copy: None, caplog: pytest.LogCaptureFixture) -> None:
    found = write_fashion(tmp_path / "env", n_train=20, n_test=10)
    monkeypatch.setenv(fm.ENV_VAR, str(found))
    misspelt = tmp_path / "fashoin"
    with caplog.at_level("WARNING", logger=fm.__name__):
        dm = FashionMNISTDataModule(data_dir=str(misspelt))
        assert dm.find_files() == found and dm.find_files() == found
        FashionMNISTDataModule(data_dir=str(found)).find_files()  # the files are where it says: no warning
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1  # once per data module
    assert f"data.data_dir={misspelt} does not exist; using the files in {found}" in warnings[0]


def test_missing_files_message(tmp_path: Path, no_system_copy: None) -> None:
    dm = FashionMNISTDataModule(data_dir=str(tmp_path / "empty"))
    dm.prepare_data()  # download=False: never downloads
    with pytest.raises(FileNotFoundError) as info:
        dm.setup("fit")
    message = str(info.value)
    for expected in (
        f"data.data_dir={tmp_path / 'empty'}",
        "$FASHION_MNIST_DIR (not set)",
        str(tmp_path / "no-debian"),
        str(tmp_path / "empty" / "FashionMNIST" / "raw"),
        "apt-get install dataset-fashion-mnist",
        "data.download=true",
    ):
        assert expected in message


def test_download_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_system_copy: None
) -> None:
    import torchvision.datasets

    calls: list[tuple[str, bool]] = []

    def fake_download(root: str, train: bool, download: bool) -> None:
        calls.append((root, download))
        write_fashion(Path(root) / "FashionMNIST" / "raw", n_train=20, n_test=10)

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", fake_download)
    dm = FashionMNISTDataModule(data_dir=str(tmp_path / "dl"), download=True)
    dm.prepare_data()
    assert calls and all(root == str(tmp_path / "dl") and download for root, download in calls)
    assert len(dm.test_dataset) == 10
    calls.clear()
    dm.prepare_data()  # files present now: no second download
    assert not calls


def test_fashion_specific_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match=r"data\.download.*'no'"):
        FashionMNISTDataModule(download="no")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"data\.data_dir.*42"):
        FashionMNISTDataModule(data_dir=42)  # type: ignore[arg-type]


@pytest.mark.skipif(
    not fm.DEBIAN_FASHION_MNIST_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed"
)
def test_real_debian_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(fm.ENV_VAR, raising=False)
    dm = FashionMNISTDataModule(max_train_samples=100, max_val_samples=50)
    assert dm.find_files() == fm.DEBIAN_FASHION_MNIST_DIR
    dm.setup()
    assert len(dm.test_dataset) == 10000 and len(dm.train_dataset.base) == 60000
    assert (len(dm.train_dataset), len(dm.val_dataset)) == (100, 50)
    assert torch.bincount(dm.test_dataset.targets).tolist() == [1000] * 10
    images = dm.test_dataset.base.images  # type: ignore[attr-defined]
    assert images.dtype == torch.uint8 and images.shape == (10000, 1, 28, 28)
    pixels = images.float() / 255
    assert abs(float(pixels.mean()) - dm.mean[0]) < 0.01 and abs(float(pixels.std()) - dm.std[0]) < 0.01
