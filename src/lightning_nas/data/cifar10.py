"""CIFAR-10 from torchvision's ``cifar-10-batches-py`` folder, read with a restricted unpickler."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightning_nas.data.base import DATAMODULES, NASDataModule
from lightning_nas.data.datasets import ImageDataset, TensorImageDataset, Transform, crop_flip
from lightning_nas.data.validation import check_bool, check_optional_path

__all__ = ["CIFAR10DataModule", "read_cifar_batch"]

log = logging.getLogger(__name__)

ENV_VAR = "CIFAR10_DIR"
BASE_FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
META_FILE = "batches.meta"

# What a CIFAR pickle may reference: numpy arrays and dtypes, nothing else (``_codecs.encode``
# rebuilds ``bytes`` in protocol-2 pickles written by Python 3).
_ALLOWED_GLOBALS = {
    ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that refuses any global except numpy's array reconstruction helpers."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")
        return super().find_class(module, name)


def read_cifar_batch(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load one file of the CIFAR python format (a pickled dict; Python 2 files read as latin-1).

    Args:
        path: ``data_batch_N``, ``test_batch`` or ``batches.meta``.

    Raises:
        ValueError: the file is not a pickled dict.
    """
    with open(path, "rb") as f:
        entry = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    if not isinstance(entry, dict):
        raise ValueError(f"{path} is not a CIFAR batch file (holds {type(entry).__name__})")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in entry.items()}


def _load_batches(folder: Path, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    images: list[np.ndarray] = []
    labels: list[int] = []
    for name in names:
        entry = read_cifar_batch(folder / name)
        data = np.asarray(entry.get("data"))
        targets = entry.get("labels", entry.get("fine_labels"))
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or targets is None or len(targets) != len(data):
            raise ValueError(f"{folder / name}: expected 'data' (N, 3072) and N 'labels', got {data.shape}")
        images.append(data.astype(np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(int(t) for t in targets)
    return np.concatenate(images), np.asarray(labels, dtype=np.int64)


@DATAMODULES.register("cifar10")
class CIFAR10DataModule(NASDataModule):
    """CIFAR-10 (3x32x32 colour, 10 classes, 50000 train / 10000 test).

    Reads torchvision's extracted layout ``<root>/cifar-10-batches-py/`` (``data_batch_1..5``,
    ``test_batch``, ``batches.meta``) with its own loader: no md5 check, and a pickle loader
    that only accepts numpy arrays. ``root`` is ``data_dir``, else ``$CIFAR10_DIR``, else
    ``~/.cache/lightning_nas/datasets``; ``data_dir`` may also be the batches folder itself.
    Nothing is downloaded unless ``download`` is true (torchvision, in :meth:`prepare_data`).

    Args:
        data_dir: directory holding ``cifar-10-batches-py`` (or that folder), or None.
        download: allow torchvision to download the archive when the files are missing.
        batch_size: samples per batch.
        num_workers: ``DataLoader`` worker processes.
        val_fraction: fraction of the 50000 training images used for validation.
        seed: seed of the validation split, the caps and the training order.
        max_train_samples: cap on the training split, or None.
        max_val_samples: cap on the validation split, or None.
        max_test_samples: cap on the test split, or None.
        augment: random crop (padding 4) and horizontal flip of training images.
        normalize: standardize with the dataset mean/std.
    """

    name = "cifar10"
    CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

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
        self.data_dir = check_optional_path("data_dir", data_dir)
        self.download = check_bool("download", download)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, 32, 32)

    @property
    def class_names(self) -> list[str]:
        return list(self.CLASSES)

    @property
    def mean(self) -> tuple[float, ...]:
        return (0.4914, 0.4822, 0.4465)

    @property
    def std(self) -> tuple[float, ...]:
        return (0.2470, 0.2435, 0.2616)

    @property
    def root(self) -> Path:
        """The directory holding ``cifar-10-batches-py`` (where ``download`` writes)."""
        if self.data_dir is not None:
            return Path(self.data_dir).expanduser()
        if os.environ.get(ENV_VAR):
            return Path(os.environ[ENV_VAR]).expanduser()
        return Path.home() / ".cache" / "lightning_nas" / "datasets"

    def search_paths(self) -> list[Path]:
        """The folders searched for the batch files, in order."""
        return [self.root / BASE_FOLDER, self.root]

    def find_files(self) -> Path | None:
        """The first searched folder holding every batch file and ``batches.meta``, or None."""
        for folder in self.search_paths():
            if all((folder / name).is_file() for name in (*TRAIN_BATCHES, *TEST_BATCHES, META_FILE)):
                return folder
        return None

    def prepare_data(self) -> None:
        """Download through torchvision when ``download`` is true and the files are missing."""
        if self.download and self.find_files() is None:
            from torchvision.datasets import CIFAR10

            log.info("downloading CIFAR-10 into %s", self.root)
            CIFAR10(str(self.root), train=True, download=True)

    def _load_train_pool(self) -> ImageDataset:
        return self._load(TRAIN_BATCHES)

    def _load_test_set(self) -> ImageDataset:
        return self._load(TEST_BATCHES)

    def _augmentation(self) -> Transform | None:
        return crop_flip((32, 32), padding=4)

    def _load(self, names: tuple[str, ...]) -> TensorImageDataset:
        folder = self.find_files()
        if folder is None:
            searched = "\n  ".join(str(p) for p in self.search_paths())
            raise FileNotFoundError(
                f"CIFAR-10 batch files ({', '.join((*TRAIN_BATCHES, *TEST_BATCHES, META_FILE))}) not found. "
                f"Searched:\n  {searched}\nFix: set data.data_dir (or ${ENV_VAR}) to the folder holding "
                f"{BASE_FOLDER}, or set data.download=true to download through torchvision (needs internet)."
            )
        self._check_meta(folder)
        images, labels = _load_batches(folder, names)
        if labels.size and not 0 <= labels.min() <= labels.max() < len(self.CLASSES):
            raise ValueError(f"{folder}: labels outside 0..{len(self.CLASSES) - 1}")
        log.info("CIFAR-10: %d images from %s", len(images), folder)
        return TensorImageDataset(torch.from_numpy(images), torch.from_numpy(labels))

    def _check_meta(self, folder: Path) -> None:
        names = [str(n) for n in read_cifar_batch(folder / META_FILE).get("label_names", [])]
        if names != list(self.CLASSES):
            raise ValueError(
                f"{folder / META_FILE}: label_names {names} are not CIFAR-10's {list(self.CLASSES)}"
            )
