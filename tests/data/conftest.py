"""Fixtures: small data sets in the real on-disk formats, and a factory over the registry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from data_files import write_cifar, write_fashion, write_images

from lightning_nas.data import (
    CIFAR10DataModule,
    DigitsDataModule,
    FashionMNISTDataModule,
    ImageFolderDataModule,
    NASDataModule,
)


@pytest.fixture(scope="session")
def fashion_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fashion(tmp_path_factory.mktemp("fashion"))


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cifar(tmp_path_factory.mktemp("cifar"))


@pytest.fixture(scope="session")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_images(tmp_path_factory.mktemp("images") / "train", {"cat": 20, "dog": 16, "eel": 14})


Factory = Callable[..., NASDataModule]


@pytest.fixture(params=["digits", "fashion_mnist", "cifar10", "image_folder"])
def make_dm(request: pytest.FixtureRequest, fashion_dir: Path, cifar_root: Path, image_root: Path) -> Factory:
    """Builds the data module ``request.param`` on its small test files, with extra kwargs."""
    name: str = request.param

    def make(**kwargs: object) -> NASDataModule:
        if name == "digits":
            return DigitsDataModule(**kwargs)
        if name == "fashion_mnist":
            return FashionMNISTDataModule(data_dir=str(fashion_dir), **kwargs)
        if name == "cifar10":
            return CIFAR10DataModule(data_dir=str(cifar_root), **kwargs)
        return ImageFolderDataModule(root=str(image_root), image_size=8, **kwargs)

    make.name = name
    return make
