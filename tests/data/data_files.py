"""Writers of small data sets in the real on-disk formats (IDX, CIFAR pickles, image folders)."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C}
CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    """Write ``array`` as an IDX file (big-endian header, as in the original distribution)."""
    header = bytes([0, 0, IDX_CODES[array.dtype], array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)
    return path


def write_fashion(directory: Path, n_train: int = 100, n_test: int = 40, compress: bool = True) -> Path:
    """Fashion-MNIST's four IDX files; image ``i`` is filled with value ``i % 256``, label ``i % 10``."""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = np.broadcast_to((np.arange(n) % 256).astype(np.uint8)[:, None, None], (n, 28, 28)).copy()
        write_idx(directory / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8), compress)
    return directory


def _cifar_batch(n: int, start: int) -> dict[str, object]:
    """A batch in the CIFAR python format: rows are R plane, G plane, B plane (1024 bytes each)."""
    data = np.zeros((n, 3, 1024), dtype=np.uint8)
    data[:, 0], data[:, 1], data[:, 2] = 10, 128, 250  # distinct channels to check the CHW order
    data[:, 0, 0] = (np.arange(start, start + n) % 256).astype(np.uint8)  # unique-ish first pixel
    labels = [int(i % 10) for i in range(start, start + n)]
    return {
        "batch_label": f"batch starting at {start}",
        "labels": labels,
        "data": data.reshape(n, 3072),
        "filenames": [f"img_{i}.png" for i in range(start, start + n)],
    }


def write_cifar(root: Path, per_batch: int = 20, n_test: int = 30, names: list[str] | None = None) -> Path:
    """``root/cifar-10-batches-py`` with ``data_batch_1..5``, ``test_batch`` and ``batches.meta``."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for b in range(5):
        with open(folder / f"data_batch_{b + 1}", "wb") as f:
            pickle.dump(_cifar_batch(per_batch, b * per_batch), f, protocol=2)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(_cifar_batch(n_test, 1000), f, protocol=2)
    meta = {"num_cases_per_batch": per_batch, "label_names": names or CIFAR_NAMES, "num_vis": 3072}
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return root


def write_images(
    root: Path, classes: dict[str, int], size: tuple[int, int] = (12, 10), ext: str = "png"
) -> Path:
    """``root/<class>/<i>.<ext>`` RGB images; class ``k`` (sorted) has red channel ``20 * k``."""
    for k, (name, count) in enumerate(sorted(classes.items())):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
            pixels[..., 0], pixels[..., 1], pixels[..., 2] = 20 * k, 5 * i, 255
            Image.fromarray(pixels).save(root / name / f"{i}.{ext}")
    return root
