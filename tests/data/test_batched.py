"""Whole-batch loading and augmentation: same batches from the same seed, the augmentations do what they say."""

from __future__ import annotations

from pathlib import Path

import torch

from lightning_nas.data import FashionMNISTDataModule
from lightning_nas.data.batched import BatchAugment, BatchLoader, random_crop, random_erase, random_flip


def _images(n: int = 16) -> torch.Tensor:
    return torch.randint(0, 256, (n, 1, 6, 6), dtype=torch.uint8)


def test_loader_batches_cover_every_image_once_and_repeat_with_the_seed() -> None:
    images, targets = _images(10), torch.arange(10)
    loaders = [BatchLoader(images, targets, 4, shuffle=True, generator=torch.Generator().manual_seed(3))
               for _ in range(2)]
    first, second = (list(loader) for loader in loaders)
    assert len(loaders[0]) == 3 and [len(y) for _, y in first] == [4, 4, 2]
    assert sorted(torch.cat([y for _, y in first]).tolist()) == list(range(10))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, second, strict=True))
    again = list(loaders[0])  # the next epoch draws a new order
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(first, again, strict=True))


def test_loader_normalizes_without_augmentation() -> None:
    images = _images(4)
    loader = BatchLoader(images, torch.zeros(4), 4, mean=[0.5], std=[0.25])
    x, _ = next(iter(loader))
    assert torch.allclose(x, (images.float() / 255 - 0.5) / 0.25)


def test_crop_shifts_within_the_padding_and_flip_mirrors() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.arange(36, dtype=torch.float32).view(1, 1, 6, 6).repeat(64, 1, 1, 1)
    cropped = random_crop(x, 2, generator)
    assert cropped.shape == x.shape
    assert any(torch.equal(cropped[i], x[i]) for i in range(64)) and not all(
        torch.equal(cropped[i], x[i]) for i in range(64))
    flipped = random_flip(x, generator)
    same = [torch.equal(flipped[i], x[i]) for i in range(64)]
    assert any(same) and not all(same)
    assert all(s or torch.equal(flipped[i], x[i].flip(-1)) for i, s in enumerate(same))


def test_random_erase_zeroes_one_rectangle_per_erased_image() -> None:
    x = torch.ones(200, 1, 28, 28)
    erased = random_erase(x, 0.5, torch.Generator().manual_seed(1))
    zero = (erased == 0).view(200, -1).sum(1)
    assert 0.3 < (zero > 0).float().mean() < 0.7
    area = zero[zero > 0].float() / (28 * 28)
    assert area.min() >= 0.01 and area.max() <= 0.4
    assert torch.equal(random_erase(x, 0.0, torch.Generator()), x)


def test_augment_keeps_shape() -> None:
    out = BatchAugment(padding=2, flip=True)(torch.rand(8, 1, 28, 28), torch.Generator().manual_seed(0))
    assert out.shape == (8, 1, 28, 28)


def test_fashion_mnist_batched_loaders_match_the_per_image_ones(fashion_dir: Path) -> None:
    kwargs = {"data_dir": str(fashion_dir), "batch_size": 16, "val_fraction": 0.25}
    plain, batched = FashionMNISTDataModule(**kwargs), FashionMNISTDataModule(**kwargs, batched=True)
    for dm in (plain, batched):
        dm.setup("fit")
    assert isinstance(batched.val_dataloader(), BatchLoader)
    for a, b in zip(plain.val_dataloader(), batched.val_dataloader(), strict=True):
        assert torch.allclose(a[0], b[0], atol=1e-6) and torch.equal(a[1], b[1])
    augmented = FashionMNISTDataModule(**kwargs, batched=True, augment=True, random_erasing=0.5)
    augmented.setup("fit")
    loader = augmented.train_dataloader()
    assert isinstance(loader, BatchLoader) and loader.augment == BatchAugment(2, True, 0.5)
    x, y = next(iter(loader))
    assert x.shape == (16, 1, 28, 28) and y.dtype == torch.int64
