"""Image datasets with labels, split views with transforms, and stratified seeded splitting."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms import v2

__all__ = [
    "Compose",
    "ImageDataset",
    "ImageSubset",
    "Normalize",
    "SplitView",
    "TensorImageDataset",
    "Transform",
    "crop_flip",
    "stratified_split",
]

Transform = Callable[[Tensor], Tensor]


class ImageDataset(Dataset[tuple[Tensor, int]], ABC):
    """Raw images with labels: ``load(i)`` is a float tensor ``(C, H, W)`` in ``[0, 1]``.

    ``targets`` (int64, one per image) must be available without loading the images:
    stratified splits are made from it.
    """

    targets: Tensor

    @abstractmethod
    def load(self, index: int) -> Tensor:
        """Image ``index`` as a float32 tensor ``(C, H, W)`` with values in ``[0, 1]``."""

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.load(index), int(self.targets[index])


class TensorImageDataset(ImageDataset):
    """Images held in memory as an integer tensor ``(N, C, H, W)`` scaled by ``1 / max_value``.

    Args:
        images: ``(N, C, H, W)`` tensor (uint8 keeps large sets small).
        targets: ``(N,)`` integer labels.
        max_value: the value that maps to 1.0 (255 for uint8 images, 16 for digits).
    """

    def __init__(self, images: Tensor, targets: Tensor, max_value: float = 255.0) -> None:
        if images.ndim != 4 or len(images) != len(targets):
            raise ValueError(
                f"expected images (N, C, H, W) and N targets, got {tuple(images.shape)} and {len(targets)}"
            )
        self.images = images
        self.targets = targets.to(torch.int64)
        self.max_value = float(max_value)

    def load(self, index: int) -> Tensor:
        return self.images[index].to(torch.float32).div_(self.max_value)


class ImageSubset(ImageDataset):
    """The images ``indices`` of ``base``, numbered from 0 (a held-out part, before transforms).

    Args:
        base: the underlying dataset.
        indices: positions in ``base`` (int64 tensor).
    """

    def __init__(self, base: ImageDataset, indices: Tensor) -> None:
        self.base = base
        self.indices = indices.to(torch.int64)
        self.targets = base.targets[self.indices]

    def load(self, index: int) -> Tensor:
        return self.base.load(int(self.indices[index]))


class SplitView(Dataset[tuple[Tensor, int]]):
    """The images ``indices`` of ``base``, each passed through ``transform``.

    Args:
        base: the underlying dataset.
        indices: positions in ``base`` (int64 tensor).
        transform: applied to each ``(C, H, W)`` image (augmentation, normalization).
    """

    def __init__(self, base: ImageDataset, indices: Tensor, transform: Transform | None = None) -> None:
        self.base = base
        self.indices = indices.to(torch.int64)
        self.transform = transform

    @property
    def targets(self) -> Tensor:
        return self.base.targets[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        position = int(self.indices[index])
        image = self.base.load(position)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.base.targets[position])


def stratified_split(targets: Tensor, n_first: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Split positions ``0..N-1`` into ``n_first`` and ``N - n_first`` with class proportions kept.

    Each class gets ``n_first * n_c / N`` rounded by largest remainder, so the first part has
    exactly ``n_first`` elements. Both parts are returned sorted.

    Args:
        targets: ``(N,)`` integer labels.
        n_first: size of the first part, ``0 <= n_first <= N``.
        generator: the only source of randomness.
    """
    total = len(targets)
    if not 0 <= n_first <= total:
        raise ValueError(f"n_first must be between 0 and {total}, got {n_first}")
    classes, counts = torch.unique(targets, sorted=True, return_counts=True)
    ideal = counts.to(torch.float64) * n_first / max(total, 1)
    quota = ideal.floor().to(torch.int64)
    short = n_first - int(quota.sum())
    if short > 0:
        order = torch.argsort(ideal - quota, descending=True, stable=True)
        quota[order[:short]] += 1
    first: list[Tensor] = []
    rest: list[Tensor] = []
    for label, k in zip(classes.tolist(), quota.tolist(), strict=True):
        members = torch.nonzero(targets == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        first.append(members[:k])
        rest.append(members[k:])
    empty = torch.empty(0, dtype=torch.int64)
    return torch.sort(torch.cat(first or [empty]))[0], torch.sort(torch.cat(rest or [empty]))[0]


def crop_flip(size: tuple[int, int], padding: int, flip: bool = True) -> Transform:
    """Random crop of ``size`` after zero-padding by ``padding``, then an optional horizontal flip.

    Args:
        size: ``(height, width)`` of the output.
        padding: pixels of zero padding on each side before cropping.
        flip: add a random horizontal flip (p=0.5).
    """
    steps: list[Any] = [v2.RandomCrop(list(size), padding=padding)]
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps)


class Normalize:
    """``(x - mean) / std`` per channel (picklable, for worker processes)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, image: Tensor) -> Tensor:
        return (image - self.mean) / self.std


class Compose:
    """Apply transforms in order (picklable, for worker processes)."""

    def __init__(self, steps: Sequence[Transform]) -> None:
        self.steps = list(steps)

    def __call__(self, image: Tensor) -> Tensor:
        for step in self.steps:
            image = step(image)
        return image
