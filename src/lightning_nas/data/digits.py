"""scikit-learn's bundled 8x8 handwritten digits: the fast default dataset of the project."""

from __future__ import annotations

from functools import cached_property

import torch
from torch import Tensor

from lightning_nas.data.base import DATAMODULES, TEST_SPLIT_SEED, NASDataModule
from lightning_nas.data.datasets import ImageDataset, ImageSubset, TensorImageDataset, stratified_split
from lightning_nas.data.validation import check_fraction

__all__ = ["DigitsDataModule"]


@DATAMODULES.register("digits")
class DigitsDataModule(NASDataModule):
    """1797 grayscale 8x8 digits (``sklearn.datasets.load_digits``), pixel values 0-16 scaled to [0, 1].

    A fixed stratified test split (``test_fraction``, drawn with a constant seed so that it is the
    same for every ``seed``) is held out; validation is carved from the rest. No augmentation:
    crops and flips change what a digit is at 8x8.

    Args:
        batch_size: samples per batch.
        num_workers: ``DataLoader`` worker processes.
        val_fraction: fraction of the non-test images used for validation.
        test_fraction: fraction of all images held out for testing.
        seed: seed of the validation split, the caps and the training order.
        max_train_samples: cap on the training split, or None.
        max_val_samples: cap on the validation split, or None.
        max_test_samples: cap on the test split, or None.
        augment: must be false (kept so that every data module takes the same common arguments).
        normalize: standardize with the dataset mean/std.

    Example:
        >>> dm = DigitsDataModule(batch_size=32)
        >>> dm.input_shape, dm.num_classes
        ((1, 8, 8), 10)
    """

    name = "digits"

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int = 0,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
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
        if self.augment:
            raise ValueError(
                "data.augment must be false for digits (crops and flips change 8x8 digits), got True"
            )
        self.test_fraction = check_fraction("test_fraction", test_fraction)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (1, 8, 8)

    @property
    def class_names(self) -> list[str]:
        return [str(d) for d in range(10)]

    @property
    def mean(self) -> tuple[float, ...]:
        return (0.3053,)

    @property
    def std(self) -> tuple[float, ...]:
        return (0.3760,)

    @cached_property
    def _all(self) -> TensorImageDataset:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = torch.from_numpy(bunch.images).to(torch.uint8).unsqueeze(1)
        return TensorImageDataset(images, torch.from_numpy(bunch.target), max_value=16.0)

    @cached_property
    def _test_split(self) -> tuple[Tensor, Tensor]:
        data = self._all
        n_test = round(self.test_fraction * len(data))
        if not 0 < n_test < len(data):
            raise ValueError(
                f"data.test_fraction={self.test_fraction} leaves an empty split of {len(data)} images"
            )
        generator = torch.Generator().manual_seed(TEST_SPLIT_SEED)
        return stratified_split(data.targets, n_test, generator)

    def _load_train_pool(self) -> ImageDataset:
        return ImageSubset(self._all, self._test_split[1])

    def _load_test_set(self) -> ImageDataset:
        return ImageSubset(self._all, self._test_split[0])
