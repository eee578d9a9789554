"""A user's own images: ImageFolder semantics, resizing, channels, separate val/test directories."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from data_files import write_images

from lightning_nas.data import ImageFolderDataModule


def test_class_names_and_seeded_splits(image_root: Path) -> None:
    dm = ImageFolderDataModule(root=str(image_root), image_size=8, test_fraction=0.2, val_fraction=0.25)
    assert dm.class_names == ["cat", "dog", "eel"] and dm.num_classes == 3
    assert dm.input_shape == (3, 8, 8)
    dm.setup()
    assert len(dm.test_dataset) == 10  # 20% of 50 images, stratified: 4 cat, 3 dog, 3 eel
    assert torch.bincount(dm.test_dataset.targets).tolist() == [4, 3, 3]
    assert len(dm.train_dataset) + len(dm.val_dataset) == 40 and len(dm.val_dataset) == 10
    test_files = {dm.test_dataset.base.base.paths[i] for i in dm.test_dataset.base.indices.tolist()}  # type: ignore[attr-defined]
    pool = dm.train_dataset.base
    pool_files = {pool.base.paths[i] for i in pool.indices.tolist()}  # type: ignore[attr-defined]
    assert len(test_files) == 10 and not test_files & pool_files


def test_resize_channels_and_values(image_root: Path) -> None:
    rgb = ImageFolderDataModule(root=str(image_root), image_size=6, normalize=False)
    x, y = rgb.test_dataset[0]
    assert x.shape == (3, 6, 6) and x.dtype == torch.float32
    expected = torch.tensor([20 * y / 255, float(x[1, 0, 0]), 1.0]).view(3, 1, 1).expand(3, 6, 6)
    torch.testing.assert_close(x, expected, atol=1 / 255, rtol=0)
    gray = ImageFolderDataModule(root=str(image_root), image_size=5, channels=1, normalize=False)
    g, _ = gray.test_dataset[0]
    assert g.shape == (1, 5, 5) and gray.input_shape == (1, 5, 5)
    assert len(gray.mean) == len(gray.std) == 1


def test_separate_val_and_test_dirs(tmp_path: Path, image_root: Path) -> None:
    val_dir = write_images(tmp_path / "val", {"cat": 2, "eel": 3}, ext="jpg")
    test_dir = write_images(tmp_path / "test", {"cat": 1, "dog": 1, "eel": 1})
    dm = ImageFolderDataModule(
        root=str(image_root), image_size=8, val_dir=str(val_dir), test_dir=str(test_dir)
    )
    dm.setup()
    assert len(dm.train_dataset) == 50 and len(dm.val_dataset) == 5 and len(dm.test_dataset) == 3
    # labels follow root's classes even where a class folder is missing in val_dir
    assert sorted(dm.val_dataset.targets.tolist()) == [0, 0, 2, 2, 2]
    assert sorted(dm.test_dataset.targets.tolist()) == [0, 1, 2]


def test_custom_mean_and_std(image_root: Path) -> None:
    dm = ImageFolderDataModule(root=str(image_root), image_size=4, mean=[0.5, 0.5, 0.5], std=[0.25, 0.5, 1.0])
    assert dm.mean == (0.5, 0.5, 0.5) and dm.std == (0.25, 0.5, 1.0)
    raw = ImageFolderDataModule(root=str(image_root), image_size=4, normalize=False)
    expected = (raw.val_dataset[0][0] - 0.5) / torch.tensor([0.25, 0.5, 1.0]).view(3, 1, 1)
    torch.testing.assert_close(dm.val_dataset[0][0], expected)


def test_folder_errors(tmp_path: Path, image_root: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"data\.root=.*missing.*not a directory"):
        _ = ImageFolderDataModule(root=str(tmp_path / "missing")).class_names
    (tmp_path / "one" / "only").mkdir(parents=True)
    with pytest.raises(ValueError, match="at least 2 class folders"):
        _ = ImageFolderDataModule(root=str(tmp_path / "one")).num_classes
    stray = write_images(tmp_path / "stray", {"cat": 1, "fox": 1})
    with pytest.raises(ValueError, match=r"data\.val_dir=.*\['fox'\]"):
        ImageFolderDataModule(root=str(image_root), val_dir=str(stray)).setup("fit")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "b").mkdir()
    with pytest.raises(FileNotFoundError, match=r"data\.root=.*no images"):
        ImageFolderDataModule(root=str(tmp_path / "empty")).setup("fit")


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"image_size": 0}, r"data\.image_size.*0"),
        ({"channels": 2}, r"data\.channels must be one of 1, 3, got 2"),
        ({"test_fraction": 0}, r"data\.test_fraction.*0"),
        ({"mean": [0.5]}, r"data\.mean.*3 finite numbers.*\[0\.5\]"),
        ({"std": [1.0, 0.0, 1.0]}, r"data\.std must be positive"),
        ({"root": None}, r"data\.root.*None"),
        ({"val_dir": 3}, r"data\.val_dir.*3"),
    ],
)
def test_image_folder_arguments_are_validated(
    image_root: Path, kwargs: dict[str, object], pattern: str
) -> None:
    args: dict[str, object] = {"root": str(image_root), **kwargs}
    with pytest.raises(ValueError, match=pattern):
        ImageFolderDataModule(**args)  # type: ignore[arg-type]
