"""A user's own images in ``root/<class>/*.png|jpg`` (torchvision ``ImageFolder`` semantics)."""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset
from torchvision.transforms.v2 import functional as F

from lightning_nas.data.base import DATAMODULES, TEST_SPLIT_SEED, NASDataModule
from lightning_nas.data.datasets import ImageDataset, ImageSubset, Transform, crop_flip, stratified_split
from lightning_nas.data.validation import (
    check_choice,
    check_fraction,
    check_optional_path,
    check_path,
    check_positive_int,
    check_stats,
)

__all__ = ["ImageFolderDataModule"]

log = logging.getLogger(__name__)

# ImageNet statistics: a sensible default for natural photographs (grayscale: their mean).
_RGB_MEAN, _RGB_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_GRAY_MEAN, _GRAY_STD = (0.449,), (0.226,)


class _ImageFiles(ImageDataset):
    """Image files decoded on access, converted to ``channels`` and resized to a square.

    Args:
        samples: ``(path, label)`` pairs.
        image_size: output height and width.
        channels: 1 (grayscale) or 3 (RGB).
    """

    def __init__(self, samples: list[tuple[str, int]], image_size: int, channels: int) -> None:
        self.paths = [path for path, _ in samples]
        self.targets = torch.tensor([label for _, label in samples], dtype=torch.int64)
        self.image_size = image_size
        self.mode = "L" if channels == 1 else "RGB"

    def load(self, index: int) -> Tensor:
        with Image.open(self.paths[index]) as img:
            image = img.convert(self.mode)
        tensor = F.pil_to_tensor(image)
        size = [self.image_size, self.image_size]
        tensor = F.resize(tensor, size, antialias=True)
        return tensor.to(torch.float32).div_(255.0)


@DATAMODULES.register("image_folder")
class ImageFolderDataModule(NASDataModule):
    """Your own images: one sub-directory per class under ``root``, class names sorted as by ``ImageFolder``.

    Validation comes from ``val_dir`` when given (same class folders), else it is carved from
    ``root``; the test split comes from ``test_dir`` when given, else a fixed stratified
    ``test_fraction`` of ``root`` (the same for every ``seed``) is held out before validation is carved.

    Args:
        root: directory with ``<class>/<image>`` files (png, jpg, ...).
        image_size: images are resized to ``image_size x image_size``.
        channels: 1 (converted to grayscale) or 3 (RGB).
        val_dir: separate validation directory with the same layout, or None.
        test_dir: separate test directory with the same layout, or None.
        test_fraction: fraction of ``root`` held out for testing when ``test_dir`` is None.
        mean: per-channel mean for ``normalize``, or None for ImageNet's.
        std: per-channel standard deviation for ``normalize``, or None for ImageNet's.
        batch_size: samples per batch.
        num_workers: ``DataLoader`` worker processes (decoding files benefits from a few).
        val_fraction: fraction of the training images used for validation when ``val_dir`` is None.
        seed: seed of the validation split, the caps and the training order.
        max_train_samples: cap on the training split, or None.
        max_val_samples: cap on the validation split, or None.
        max_test_samples: cap on the test split, or None.
        augment: random crop (padding ``image_size // 8``) and horizontal flip of training images.
        normalize: standardize with ``mean``/``std``.
    """

    name = "image_folder"

    def __init__(
        self,
        root: str,
        image_size: int = 32,
        channels: int = 3,
        val_dir: str | None = None,
        test_dir: str | None = None,
        test_fraction: float = 0.2,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        val_fraction: float = 0.2,
        seed: int = 0,
        max_train_samples: int | None = None,
        max_val_samples: int | None = None,
        max_test_samples: int | None = None,
        augment: bool = False,
        normalize: bool = True,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            num_workers=num_workers,
            val_fraction=val_fraction,
            seed=seed,
            max_train_samples=max_train_samples,
            max_val_samples=max_val_samples,
            max_test_samples=max_test_samples,
            augment=augment,
            normalize=normalize,
        )
        self.root = check_path("root", root)
        self.image_size = check_positive_int("image_size", image_size)
        check_choice("channels", channels, (1, 3))
        self.channels = channels
        self.val_dir = check_optional_path("val_dir", val_dir)
        self.test_dir = check_optional_path("test_dir", test_dir)
        self.test_fraction = check_fraction("test_fraction", test_fraction)
        self._mean = check_stats("mean", mean, channels)
        self._std = check_stats("std", std, channels)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    @property
    def class_names(self) -> list[str]:
        return list(self._class_to_idx)

    @property
    def mean(self) -> tuple[float, ...]:
        return self._mean or (_GRAY_MEAN if self.channels == 1 else _RGB_MEAN)

    @property
    def std(self) -> tuple[float, ...]:
        return self._std or (_GRAY_STD if self.channels == 1 else _RGB_STD)

    @cached_property
    def _class_to_idx(self) -> dict[str, int]:
        root = Path(self.root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(
                f"data.root={self.root} is not a directory (expected root/<class>/<image>)"
            )
        try:
            classes, class_to_idx = find_classes(str(root))
        except FileNotFoundError as error:
            raise FileNotFoundError(f"data.root={self.root}: no class folders found: {error}") from error
        if len(classes) < 2:
            raise ValueError(f"data.root={self.root} must hold at least 2 class folders, found {classes}")
        return class_to_idx

    def _scan(self, name: str, directory: str) -> _ImageFiles:
        path = Path(directory).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(
                f"data.{name}={directory} is not a directory (expected <dir>/<class>/<image>)"
            )
        unknown = sorted({p.name for p in path.iterdir() if p.is_dir()} - set(self._class_to_idx))
        if unknown:
            raise ValueError(f"data.{name}={directory} has class folders {unknown} that data.root lacks")
        samples = make_dataset(str(path), self._class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
        if not samples:
            raise FileNotFoundError(f"data.{name}={directory}: no images ({', '.join(IMG_EXTENSIONS)}) found")
        log.info("image_folder: %d images in %s", len(samples), directory)
        return _ImageFiles(samples, self.image_size, self.channels)

    @cached_property
    def _root_split(self) -> tuple[_ImageFiles, Tensor, Tensor]:
        """All of ``root``, and its (test, rest) positions (test empty when ``test_dir`` is given)."""
        files = self._scan("root", self.root)
        if self.test_dir is not None:
            return files, torch.empty(0, dtype=torch.int64), torch.arange(len(files))
        n_test = round(self.test_fraction * len(files))
        if not 0 < n_test < len(files):
            raise ValueError(
                f"data.test_fraction={self.test_fraction} leaves an empty split of {len(files)} images"
            )
        generator = torch.Generator().manual_seed(TEST_SPLIT_SEED)
        test, rest = stratified_split(files.targets, n_test, generator)
        return files, test, rest

    def _load_train_pool(self) -> ImageDataset:
        files, _, rest = self._root_split
        return ImageSubset(files, rest)

    def _load_val_set(self) -> ImageDataset | None:
        return None if self.val_dir is None else self._scan("val_dir", self.val_dir)

    def _load_test_set(self) -> ImageDataset:
        if self.test_dir is not None:
            return self._scan("test_dir", self.test_dir)
        files, test, _ = self._root_split
        return ImageSubset(files, test)

    def _augmentation(self) -> Transform | None:
        return crop_flip((self.image_size, self.image_size), padding=max(1, self.image_size // 8))
