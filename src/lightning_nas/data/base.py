"""The :class:`NASDataModule` base class: seeded train/val/test splits, caps, transforms.

Every data module of the ``data`` Hydra group derives from it and is registered in
:data:`DATAMODULES` under its Hydra name. Subclasses only say how to load the raw images
(:class:`~lightning_nas.data.datasets.ImageDataset`, values in ``[0, 1]``) and describe them
(``input_shape``, ``class_names``, ``mean``, ``std``); the base class does the rest.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from lightning_nas.data.batched import BatchAugment, BatchLoader
from lightning_nas.data.datasets import (
    Compose,
    ImageDataset,
    Normalize,
    SplitView,
    TensorImageDataset,
    Transform,
    stratified_split,
)
from lightning_nas.data.validation import (
    check_bool,
    check_fraction,
    check_non_negative_int,
    check_optional_positive_int,
    check_positive_int,
)
from lightning_nas.registry import Registry

__all__ = ["DATAMODULES", "TEST_SPLIT_SEED", "NASDataModule"]

log = logging.getLogger(__name__)

# Seed of held-out test splits carved from a single pool: constant, so that runs with different
# ``seed`` values are compared on the same test images.
TEST_SPLIT_SEED = 2024
# Offsets added to ``seed`` so that the split, each cap and the shuffle draw independent streams.
_VAL_SPLIT, _TRAIN_CAP, _VAL_CAP, _TEST_CAP, _SHUFFLE = 0, 1, 2, 3, 4


def _generator(seed: int, offset: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed + offset)


class NASDataModule(L.LightningDataModule, ABC):
    """Base of the ``data`` group: train / validation / test splits of one image dataset.

    The search sees the validation split only; the test split is used once at the end.
    ``input_shape``, ``num_classes``, ``class_names``, ``mean`` and ``std`` are known before
    :meth:`setup`. Splits and caps are stratified, drawn from ``torch.Generator`` objects seeded
    by ``seed`` (no global RNG); the training order is reshuffled from ``seed`` for each
    ``train_dataloader()`` call, so every candidate of a search sees the same batches.
    Augmentation (train only) uses torchvision's random transforms, seeded per worker by
    ``lightning.seed_everything``.

    Args:
        batch_size: samples per batch.
        num_workers: ``DataLoader`` worker processes (0 loads in the main process); not
            persistent, so a search that builds a loader per candidate leaves no processes behind.
        val_fraction: fraction of the training set held out for validation (stratified).
        seed: seed of the validation split, the caps and the training order.
        max_train_samples: cap on the training split (a seeded stratified subset), or None.
        max_val_samples: cap on the validation split, or None.
        max_test_samples: cap on the test split, or None.
        augment: light augmentation of training images (random crop + horizontal flip).
        normalize: subtract ``mean`` and divide by ``std`` per channel.
        batched: load whole batches from the in-memory image tensor and augment them as a batch
            (:class:`~lightning_nas.data.batched.BatchLoader`) where the data allows it.
        random_erasing: probability of erasing one random rectangle of a training image.
    """

    name: str = "data"

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int = 0,
        val_fraction: float = 0.2,
        seed: int = 0,
        max_train_samples: int | None = None,
        max_val_samples: int | None = None,
        max_test_samples: int | None = None,
        augment: bool = False,
        normalize: bool = True,
        batched: bool = False,
        random_erasing: float = 0.0,
    ) -> None:
        super().__init__()
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.num_workers = check_non_negative_int("num_workers", num_workers)
        self.val_fraction = check_fraction("val_fraction", val_fraction)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"data.seed must be a non-negative integer, got {seed!r}")
        self.seed = seed
        self.max_train_samples = check_optional_positive_int("max_train_samples", max_train_samples)
        self.max_val_samples = check_optional_positive_int("max_val_samples", max_val_samples)
        self.max_test_samples = check_optional_positive_int("max_test_samples", max_test_samples)
        self.augment = check_bool("augment", augment)
        self.normalize = check_bool("normalize", normalize)
        self.batched = check_bool("batched", batched)
        if isinstance(random_erasing, bool) or not isinstance(random_erasing, int | float) \
                or not 0 <= random_erasing <= 1:
            raise ValueError(f"data.random_erasing must be a probability in [0, 1], got {random_erasing!r}")
        self.random_erasing = float(random_erasing)
        self._train: SplitView | None = None
        self._val: SplitView | None = None
        self._test: SplitView | None = None

    # ---- description, available before setup()

    @property
    @abstractmethod
    def input_shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)`` of one sample."""

    @property
    @abstractmethod
    def class_names(self) -> list[str]:
        """Human-readable class names, indexed by label."""

    @property
    @abstractmethod
    def mean(self) -> tuple[float, ...]:
        """Per-channel mean of the ``[0, 1]`` images (used when ``normalize``)."""

    @property
    @abstractmethod
    def std(self) -> tuple[float, ...]:
        """Per-channel standard deviation of the ``[0, 1]`` images (used when ``normalize``)."""

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    # ---- what subclasses provide

    @abstractmethod
    def _load_train_pool(self) -> ImageDataset:
        """All labelled training images (train and validation are carved from them)."""

    @abstractmethod
    def _load_test_set(self) -> ImageDataset:
        """The held-out test images."""

    def _load_val_set(self) -> ImageDataset | None:
        """A separate validation set, or None to carve it from the training pool."""
        return None

    def _augmentation(self) -> Transform | None:
        """Training-only augmentation of ``[0, 1]`` images (called when ``augment``)."""
        return None

    def _batch_augmentation(self) -> BatchAugment | None:
        """The batched form of :meth:`_augmentation` (crop padding, flip), or None where there is none."""
        return None

    # ---- Lightning hooks

    def setup(self, stage: str | None = None) -> None:
        """Build the splits a stage needs; later calls reuse them (cheap and idempotent)."""
        if stage in (None, "fit", "validate"):
            self._ensure_fit()
        if stage in (None, "test", "predict"):
            self._ensure_test()

    def train_dataloader(self) -> DataLoader[tuple[Tensor, int]] | BatchLoader:
        generator = _generator(self.seed, _SHUFFLE)
        batched = self._batch_loader(self.train_dataset, generator, train=True)
        return batched or self._loader(self.train_dataset, shuffle=True, generator=generator)

    def val_dataloader(self) -> DataLoader[tuple[Tensor, int]] | BatchLoader:
        return self._batch_loader(self.val_dataset) or self._loader(self.val_dataset, shuffle=False)

    def test_dataloader(self) -> DataLoader[tuple[Tensor, int]] | BatchLoader:
        return self._batch_loader(self.test_dataset) or self._loader(self.test_dataset, shuffle=False)

    def predict_dataloader(self) -> DataLoader[tuple[Tensor, int]] | BatchLoader:
        return self.test_dataloader()

    # ---- splits

    @property
    def train_dataset(self) -> SplitView:
        """The training split (augmented when ``augment``); built on first use."""
        return self._ensure_fit()[0]

    @property
    def val_dataset(self) -> SplitView:
        """The validation split (never augmented); built on first use."""
        return self._ensure_fit()[1]

    @property
    def test_dataset(self) -> SplitView:
        """The test split (never augmented); built on first use."""
        return self._ensure_test()

    def calibration_batch(self, n: int = 32) -> Tensor:
        """The first ``n`` training images, normalized like the model sees them but not augmented.

        Deterministic for a given ``seed``; for BN recalibration, quantization or tracing.

        Args:
            n: number of images (at most the training split size).
        """
        check_positive_int("calibration_batch.n", n)
        train = self.train_dataset
        eval_view = SplitView(train.base, train.indices[:n], self._eval_transform())
        return torch.stack([eval_view[i][0] for i in range(len(eval_view))])

    def _ensure_fit(self) -> tuple[SplitView, SplitView]:
        if self._train is None or self._val is None:
            pool = self._load_train_pool()
            val_base = self._load_val_set()
            if val_base is None:
                val_base = pool
                train_idx, val_idx = self._carve_val(pool)
            else:
                train_idx, val_idx = torch.arange(len(pool)), torch.arange(len(val_base))
            train_idx = self._cap(pool.targets, train_idx, self.max_train_samples, _TRAIN_CAP)
            val_idx = self._cap(val_base.targets, val_idx, self.max_val_samples, _VAL_CAP)
            self._train = SplitView(pool, train_idx, self._train_transform())
            self._val = SplitView(val_base, val_idx, self._eval_transform())
            log.info("%s: %d train / %d val samples", self.name, len(self._train), len(self._val))
        return self._train, self._val

    def _ensure_test(self) -> SplitView:
        if self._test is None:
            test = self._load_test_set()
            idx = self._cap(test.targets, torch.arange(len(test)), self.max_test_samples, _TEST_CAP)
            self._test = SplitView(test, idx, self._eval_transform())
            log.info("%s: %d test samples", self.name, len(self._test))
        return self._test

    def _carve_val(self, pool: ImageDataset) -> tuple[Tensor, Tensor]:
        n_val = round(self.val_fraction * len(pool))
        if not 0 < n_val < len(pool):
            raise ValueError(
                f"data.val_fraction={self.val_fraction} leaves an empty split of {len(pool)} training samples"
            )
        val_idx, train_idx = stratified_split(pool.targets, n_val, _generator(self.seed, _VAL_SPLIT))
        return train_idx, val_idx

    def _cap(self, targets: Tensor, indices: Tensor, cap: int | None, offset: int) -> Tensor:
        if cap is None or cap >= len(indices):
            return indices
        keep, _ = stratified_split(targets[indices], cap, _generator(self.seed, offset))
        return indices[keep]

    # ---- transforms and loaders

    def _eval_transform(self) -> Transform | None:
        return Normalize(self.mean, self.std) if self.normalize else None

    def _train_transform(self) -> Transform | None:
        candidates = (self._augmentation() if self.augment else None, self._eval_transform())
        steps = [t for t in candidates if t is not None]
        if self.random_erasing > 0:
            steps.append(v2.RandomErasing(self.random_erasing, value=0))
        return Compose(steps) if steps else None

    def _batch_loader(self, split: SplitView, generator: torch.Generator | None = None,
                      train: bool = False) -> BatchLoader | None:
        """A :class:`BatchLoader` over ``split`` when ``batched`` and its images are an in-memory tensor."""
        if not self.batched or not isinstance(split.base, TensorImageDataset):
            return None
        augment = None
        if train:
            crop_flip = self._batch_augmentation() if self.augment else None
            if self.augment and crop_flip is None and self._augmentation() is not None:
                return None  # an augmentation with no batched form: the per-image loader applies it
            augment = BatchAugment(crop_flip.padding if crop_flip else 0, bool(crop_flip and crop_flip.flip),
                                   self.random_erasing)
        base = split.base
        return BatchLoader(base.images[split.indices], base.targets[split.indices], self.batch_size,
                           shuffle=train, generator=generator, max_value=base.max_value,
                           mean=self.mean if self.normalize else None, std=self.std if self.normalize else None,
                           augment=augment)

    def _loader(
        self, dataset: Dataset[Any], shuffle: bool, generator: torch.Generator | None = None
    ) -> DataLoader[tuple[Tensor, int]]:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=generator,
            num_workers=self.num_workers,
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(input_shape={self.input_shape}, num_classes={self.num_classes}, "
            f"batch_size={self.batch_size}, seed={self.seed})"
        )


DATAMODULES: Registry[type[NASDataModule]] = Registry("data module")
"""Data modules by their name in the ``data`` Hydra group."""
