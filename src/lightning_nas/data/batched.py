"""Whole-batch loading from in-memory image tensors, with augmentation applied to the batch at once.

A ``DataLoader`` over a :class:`~lightning_nas.data.datasets.SplitView` loads, converts, crops,
flips and normalizes one image at a time in Python: for 28x28 images that costs as much as a
small network's training step. :class:`BatchLoader` slices a batch out of the uint8 tensor and
does the same work as a few tensor operations on the whole batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["BatchAugment", "BatchLoader", "random_crop", "random_erase", "random_flip"]


def random_crop(images: Tensor, padding: int, generator: torch.Generator) -> Tensor:
    """A random ``H x W`` crop of each zero-padded image of ``images`` ``(B, C, H, W)``."""
    if padding <= 0:
        return images
    batch, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    top = torch.randint(0, 2 * padding + 1, (batch, 1), generator=generator)
    left = torch.randint(0, 2 * padding + 1, (batch, 1), generator=generator)
    rows = (top + torch.arange(height))[:, :, None]  # (B, H, 1)
    cols = (left + torch.arange(width))[:, None, :]  # (B, 1, W)
    picked = padded.permute(0, 2, 3, 1)[torch.arange(batch)[:, None, None], rows, cols]  # (B, H, W, C)
    return picked.permute(0, 3, 1, 2).contiguous()


def random_flip(images: Tensor, generator: torch.Generator) -> Tensor:
    """Each image flipped left-right with probability 0.5."""
    flip = torch.rand(len(images), generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def random_erase(images: Tensor, probability: float, generator: torch.Generator,
                 scale: tuple[float, float] = (0.02, 0.33), ratio: tuple[float, float] = (0.3, 3.3)) -> Tensor:
    """Random erasing (Zhong et al.): with ``probability``, one rectangle per image set to 0.

    The rectangle covers a fraction in ``scale`` of the image, with aspect ratio (log-uniform)
    in ``ratio``, as in torchvision's ``RandomErasing``; on normalized images 0 is the mean.
    """
    if probability <= 0:
        return images
    batch, _, height, width = images.shape
    area = height * width * torch.empty(batch).uniform_(*scale, generator=generator)
    log_ratio = torch.empty(batch).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    aspect = torch.exp(log_ratio)
    h = torch.sqrt(area * aspect).round().clamp(1, height).long()
    w = torch.sqrt(area / aspect).round().clamp(1, width).long()
    top = (torch.rand(batch, generator=generator) * (height - h + 1)).long()
    left = (torch.rand(batch, generator=generator) * (width - w + 1)).long()
    rows = torch.arange(height)[None, :]
    cols = torch.arange(width)[None, :]
    inside_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])  # (B, H)
    inside_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])  # (B, W)
    erase = torch.rand(batch, generator=generator) < probability
    mask = inside_rows[:, :, None] & inside_cols[:, None, :] & erase[:, None, None]
    return images.masked_fill(mask[:, None], 0.0)


@dataclass(frozen=True)
class BatchAugment:
    """Training augmentation of a whole batch: random crop after ``padding``, flip, random erasing."""

    padding: int = 0
    flip: bool = False
    erasing: float = 0.0

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """Crop and flip ``[0, 1]`` images; erasing comes after normalization (see :class:`BatchLoader`)."""
        images = random_crop(images, self.padding, generator)
        return random_flip(images, generator) if self.flip else images


class BatchLoader:
    """Batches of ``(images, labels)`` sliced from a uint8 image tensor, augmented as whole batches.

    Iterating draws a new order (when ``shuffle``) and new augmentations from ``generator``, so
    successive epochs differ while two loaders built with equal seeds give equal batches.

    Args:
        images: ``(N, C, H, W)`` integer (or float) images; divided by ``max_value``.
        targets: ``(N,)`` labels.
        batch_size: images per batch (the last batch may be smaller).
        shuffle: reshuffle each epoch.
        generator: the only source of randomness (order and augmentation).
        max_value: the value that maps to 1.0.
        mean: per-channel means to subtract (None: no normalization).
        std: per-channel standard deviations to divide by.
        augment: batch augmentation of training batches, or None.
    """

    def __init__(self, images: Tensor, targets: Tensor, batch_size: int, *, shuffle: bool = False,
                 generator: torch.Generator | None = None, max_value: float = 255.0,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 augment: BatchAugment | None = None) -> None:
        if images.ndim != 4 or len(images) != len(targets):
            raise ValueError(f"expected images (N, C, H, W) and N targets, got {tuple(images.shape)} "
                             f"and {len(targets)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.images, self.targets = images, targets.to(torch.int64)
        self.batch_size, self.shuffle = int(batch_size), bool(shuffle)
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.max_value, self.augment = float(max_value), augment
        channels = images.shape[1]
        self.mean = torch.tensor(mean if mean is not None else [0.0] * channels).view(1, -1, 1, 1)
        self.std = torch.tensor(std if std is not None else [1.0] * channels).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return math.ceil(len(self.targets) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        count = len(self.targets)
        order = torch.randperm(count, generator=self.generator) if self.shuffle else torch.arange(count)
        for start in range(0, count, self.batch_size):
            index = order[start:start + self.batch_size]
            yield self._batch(self.images[index]), self.targets[index]

    def _batch(self, raw: Tensor) -> Tensor:
        images = raw.to(torch.float32).div_(self.max_value)
        if self.augment is not None:
            images = self.augment(images, self.generator)
        images = (images - self.mean) / self.std
        if self.augment is not None and self.augment.erasing > 0:
            images = random_erase(images, self.augment.erasing, self.generator)
        return images
