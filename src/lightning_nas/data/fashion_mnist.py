"""Fashion-MNIST from local IDX files (Debian's ``dataset-fashion-mnist``), downloading only on request."""

from __future__ import annotations

import gzip
import logging
import os
from pathlib import Path

import numpy as np
import torch

from lightning_nas.data.base import DATAMODULES, NASDataModule
from lightning_nas.data.batched import BatchAugment
from lightning_nas.data.datasets import ImageDataset, TensorImageDataset, Transform, crop_flip
from lightning_nas.data.validation import check_bool, check_optional_path

__all__ = ["DEBIAN_FASHION_MNIST_DIR", "FashionMNISTDataModule", "read_idx"]

log = logging.getLogger(__name__)

DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_VAR = "FASHION_MNIST_DIR"
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# IDX type codes (third byte of the magic number) -> big-endian numpy dtypes.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike[str], magic: int | None = None) -> np.ndarray:
    """Read an IDX file (``.gz`` or not) into a numpy array, checking its header.

    Args:
        path: the file; names ending in ``.gz`` are decompressed.
        magic: the expected magic number (2051 for images, 2049 for labels), or None for any.

    Raises:
        ValueError: bad magic number, unknown type code or a size that does not match the header.
    """
    path = Path(path)
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
        raw = f.read()
    header = raw[:4]
    found = int.from_bytes(header, "big") if len(header) == 4 else -1
    if len(header) != 4 or header[:2] != b"\0\0" or header[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (magic number {found})")
    if magic is not None and found != magic:
        raise ValueError(f"{path}: magic number {found}, expected {magic}")
    ndim = header[3]
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[header[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - 4 - 4 * ndim != expected:
        raise ValueError(f"{path}: {len(raw) - 4 - 4 * ndim} bytes of data, header {shape} needs {expected}")
    data = np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _find(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


@DATAMODULES.register("fashion_mnist")
class FashionMNISTDataModule(NASDataModule):
    """Fashion-MNIST (1x28x28 grayscale, 10 clothing classes, 60000 train / 10000 test).

    The original IDX files (``train-images-idx3-ubyte[.gz]`` etc.) are looked up, in order, in
    ``data_dir``, ``$FASHION_MNIST_DIR``, ``/usr/share/datasets/fashion-mnist`` (Debian package
    ``dataset-fashion-mnist``) and torchvision's layout ``<root>/FashionMNIST/raw``, where
    ``root`` is ``data_dir`` or ``~/.cache/lightning_nas/datasets``. Nothing is downloaded unless
    ``download`` is true (then torchvision downloads into ``root`` in :meth:`prepare_data`).

    Args:
        data_dir: directory with the IDX files (flat, or torchvision's layout), or None.
        download: allow torchvision to download the files when none are found.
        batch_size: samples per batch.
        num_workers: ``DataLoader`` worker processes.
        val_fraction: fraction of the 60000 training images used for validation.
        seed: seed of the validation split, the caps and the training order.
        max_train_samples: cap on the training split, or None.
        max_val_samples: cap on the validation split, or None.
        max_test_samples: cap on the test split, or None.
        augment: random crop (padding 2) and horizontal flip of training images.
        normalize: standardize with the dataset mean/std.
        batched: whole-batch loading and augmentation from the in-memory tensor (faster).
        random_erasing: probability of erasing a random rectangle of a training image.
    """

    name = "fashion_mnist"
    CLASSES = (
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
    )

    def __init__(
        self,
        data_dir: str | None = None,
        download: bool = False,
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
            batched=batched,
            random_erasing=random_erasing,
        )
        self.data_dir = check_optional_path("data_dir", data_dir)
        self.download = check_bool("download", download)
        self._warned_data_dir = False

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (1, 28, 28)

    @property
    def class_names(self) -> list[str]:
        return list(self.CLASSES)

    @property
    def mean(self) -> tuple[float, ...]:
        return (0.2860,)

    @property
    def std(self) -> tuple[float, ...]:
        return (0.3530,)

    @property
    def root(self) -> Path:
        """Where torchvision's layout is looked for, and where ``download`` writes."""
        if self.data_dir is not None:
            return Path(self.data_dir).expanduser()
        return Path.home() / ".cache" / "lightning_nas" / "datasets"

    def search_paths(self) -> list[Path]:
        """The directories searched for the IDX files, in order."""
        paths = [Path(self.data_dir).expanduser()] if self.data_dir is not None else []
        if os.environ.get(ENV_VAR):
            paths.append(Path(os.environ[ENV_VAR]).expanduser())
        paths += [DEBIAN_FASHION_MNIST_DIR, self.root / "FashionMNIST" / "raw"]
        return paths

    def find_files(self) -> Path | None:
        """The first searched directory holding all four IDX files, or None. A ``data_dir`` passed but
        passed over (no files there, e.g. a misspelt path) is logged as a warning, once."""
        for directory in self.search_paths():
            if all(_find(directory, stem) for pair in _FILES.values() for stem in pair):
                self._warn_if_data_dir_passed_over(directory)
                return directory
        return None

    def _warn_if_data_dir_passed_over(self, found: Path) -> None:
        if self.data_dir is None or self._warned_data_dir:
            return
        given = Path(self.data_dir).expanduser()
        if found not in (given, given / "FashionMNIST" / "raw"):
            self._warned_data_dir = True
            state = "has no Fashion-MNIST IDX files at its top level" if given.exists() else "does not exist"
            log.warning("data.data_dir=%s %s; using the files in %s (searched in order: data_dir, $%s, %s, "
                        "<data_dir>/FashionMNIST/raw)", self.data_dir, state, found, ENV_VAR, DEBIAN_FASHION_MNIST_DIR)

    def prepare_data(self) -> None:
        """Download through torchvision when ``download`` is true and no files are found."""
        if self.download and self.find_files() is None:
            from torchvision.datasets import FashionMNIST

            log.info("downloading Fashion-MNIST into %s", self.root)
            for train in (True, False):
                FashionMNIST(str(self.root), train=train, download=True)

    def _load_train_pool(self) -> ImageDataset:
        return self._load("train")

    def _load_test_set(self) -> ImageDataset:
        return self._load("test")

    def _augmentation(self) -> Transform | None:
        return crop_flip((28, 28), padding=2)

    def _batch_augmentation(self) -> BatchAugment | None:
        return BatchAugment(padding=2, flip=True)

    def _load(self, split: str) -> TensorImageDataset:
        directory = self.find_files()
        if directory is None:
            raise FileNotFoundError(self._missing_message())
        image_file, label_file = (_find(directory, stem) for stem in _FILES[split])
        assert image_file is not None and label_file is not None
        images = read_idx(image_file, IMAGES_MAGIC)
        labels = read_idx(label_file, LABELS_MAGIC)
        if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
            raise ValueError(f"{directory}: images {images.shape} and labels {labels.shape} do not match")
        if labels.size and not 0 <= labels.min() <= labels.max() < len(self.CLASSES):
            raise ValueError(f"{label_file}: labels outside 0..{len(self.CLASSES) - 1}")
        log.info("Fashion-MNIST %s: %d images from %s", split, len(images), directory)
        return TensorImageDataset(
            torch.from_numpy(images.astype(np.uint8)).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))
        )

    def _missing_message(self) -> str:
        env = os.environ.get(ENV_VAR)
        searched = [f"data.data_dir={self.data_dir}"] if self.data_dir is not None else []
        searched.append(f"${ENV_VAR}={env}" if env else f"${ENV_VAR} (not set)")
        searched += [str(DEBIAN_FASHION_MNIST_DIR), str(self.root / "FashionMNIST" / "raw")]
        names = ", ".join(f"{stem}[.gz]" for pair in _FILES.values() for stem in pair)
        return (
            f"Fashion-MNIST files ({names}) not found. Searched:\n  "
            + "\n  ".join(searched)
            + "\nFix: install the Debian package (apt-get install dataset-fashion-mnist), "
            "or set data.download=true to download through torchvision (needs internet)."
        )
