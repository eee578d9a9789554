"""Lightning data modules of the ``data`` Hydra group, registered in :data:`DATAMODULES` by name."""

from lightning_nas.data.base import DATAMODULES, TEST_SPLIT_SEED, NASDataModule
from lightning_nas.data.cifar10 import CIFAR10DataModule, read_cifar_batch
from lightning_nas.data.datasets import (
    ImageDataset,
    ImageSubset,
    SplitView,
    TensorImageDataset,
    stratified_split,
)
from lightning_nas.data.digits import DigitsDataModule
from lightning_nas.data.fashion_mnist import FashionMNISTDataModule, read_idx
from lightning_nas.data.image_folder import ImageFolderDataModule

__all__ = [
    "DATAMODULES",
    "TEST_SPLIT_SEED",
    "CIFAR10DataModule",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "ImageDataset",
    "ImageFolderDataModule",
    "ImageSubset",
    "NASDataModule",
    "SplitView",
    "TensorImageDataset",
    "read_cifar_batch",
    "read_idx",
    "stratified_split",
]
