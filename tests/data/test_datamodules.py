"""Behaviour shared by every data module of the registry (run on small files in the real formats)."""

from __future__ import annotations

import pytest
import torch

from lightning_nas.data import DATAMODULES, NASDataModule, stratified_split
from lightning_nas.registry import Registry


def _indices(view: object) -> set[int]:
    return set(view.indices.tolist())  # type: ignore[attr-defined]


def test_registry_holds_every_hydra_name() -> None:
    assert isinstance(DATAMODULES, Registry)
    assert DATAMODULES.names() == ["cifar10", "digits", "fashion_mnist", "image_folder"]
    for name in DATAMODULES:
        cls = DATAMODULES.get(name)
        assert issubclass(cls, NASDataModule) and cls.name == name


def test_description_is_available_before_setup(make_dm) -> None:
    dm = make_dm()
    channels = dm.input_shape[0]
    assert len(dm.input_shape) == 3 and channels in (1, 3)
    assert dm.num_classes == len(dm.class_names) >= 2
    assert all(isinstance(n, str) and n for n in dm.class_names)
    assert len(dm.mean) == len(dm.std) == channels and min(dm.std) > 0
    assert dm._train is None and dm._test is None  # nothing was loaded


def test_splits_are_disjoint_and_sized(make_dm) -> None:
    dm = make_dm(val_fraction=0.25)
    dm.setup("fit")
    train, val = dm.train_dataset, dm.val_dataset
    assert train.base is val.base
    assert not _indices(train) & _indices(val)
    assert _indices(train) | _indices(val) == set(range(len(train.base)))
    assert len(val) == round(0.25 * len(train.base))
    # stratified: every class of the pool is in both parts when it has at least 4 members
    assert set(val.targets.tolist()) == set(train.targets.tolist())
    dm.setup("test")
    assert len(dm.test_dataset) > 0


def test_batches_have_the_declared_shape_dtype_and_range(make_dm) -> None:
    dm = make_dm(batch_size=5, normalize=False)
    dm.setup()
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        x, y = next(iter(loader))
        assert x.shape == (5, *dm.input_shape) and x.dtype == torch.float32
        assert y.dtype == torch.int64 and 0 <= int(y.min()) <= int(y.max()) < dm.num_classes
        assert 0.0 <= float(x.min()) <= float(x.max()) <= 1.0


def test_normalize_uses_mean_and_std(make_dm) -> None:
    raw, norm = make_dm(normalize=False), make_dm(normalize=True)
    x_raw, x_norm = raw.val_dataset[0][0], norm.val_dataset[0][0]
    mean = torch.tensor(raw.mean).view(-1, 1, 1)
    std = torch.tensor(raw.std).view(-1, 1, 1)
    torch.testing.assert_close(x_norm, (x_raw - mean) / std)


def test_splits_are_deterministic_for_a_seed(make_dm) -> None:
    a, b, c = make_dm(seed=3), make_dm(seed=3), make_dm(seed=4)
    assert torch.equal(a.val_dataset.indices, b.val_dataset.indices)
    assert torch.equal(a.train_dataset.indices, b.train_dataset.indices)
    assert not torch.equal(a.val_dataset.indices, c.val_dataset.indices)
    xa = torch.cat([x for x, _ in a.train_dataloader()])
    xb = torch.cat([x for x, _ in b.train_dataloader()])
    assert torch.equal(xa, xb)  # same shuffled order, no global RNG involved
    assert torch.equal(a.test_dataset.indices, c.test_dataset.indices)  # the test split never moves


def test_caps_take_seeded_subsets(make_dm) -> None:
    full = make_dm()
    capped = make_dm(max_train_samples=10, max_val_samples=4, max_test_samples=6)
    again = make_dm(max_train_samples=10, max_val_samples=4, max_test_samples=6)
    assert (len(capped.train_dataset), len(capped.val_dataset), len(capped.test_dataset)) == (10, 4, 6)
    assert _indices(capped.train_dataset) <= _indices(full.train_dataset)
    assert _indices(capped.val_dataset) <= _indices(full.val_dataset)
    assert _indices(capped.test_dataset) <= _indices(full.test_dataset)
    assert torch.equal(capped.train_dataset.indices, again.train_dataset.indices)
    big = make_dm(max_train_samples=10**6)
    assert len(big.train_dataset) == len(full.train_dataset)


def test_setup_is_idempotent(make_dm) -> None:
    dm = make_dm()
    dm.setup("fit")
    train, val = dm.train_dataset, dm.val_dataset
    dm.setup("fit")
    dm.setup("validate")
    dm.setup(None)
    assert dm.train_dataset is train and dm.val_dataset is val
    test = dm.test_dataset
    dm.setup("test")
    assert dm.test_dataset is test


def test_calibration_batch_is_unaugmented_and_deterministic(make_dm) -> None:
    kwargs = {} if make_dm.name == "digits" else {"augment": True}
    dm = make_dm(**kwargs)
    batch = dm.calibration_batch(6)
    assert batch.shape == (6, *dm.input_shape) and batch.dtype == torch.float32
    assert torch.equal(batch, dm.calibration_batch(6))
    plain = make_dm()
    assert torch.equal(batch, plain.calibration_batch(6))
    expected = torch.stack([plain.train_dataset[i][0] for i in range(6)])
    assert torch.equal(batch, expected)


def test_augment_changes_train_images_only(make_dm) -> None:
    if make_dm.name == "digits":
        with pytest.raises(ValueError, match=r"data\.augment"):
            make_dm(augment=True)
        return
    dm, plain = make_dm(augment=True, normalize=False), make_dm(normalize=False)
    torch.manual_seed(0)
    changed = [not torch.equal(dm.train_dataset[i][0], plain.train_dataset[i][0]) for i in range(10)]
    assert any(changed)
    assert torch.equal(dm.val_dataset[0][0], plain.val_dataset[0][0])
    assert dm.train_dataset[0][0].shape == dm.input_shape


BAD_ARGUMENTS = [
    ("batch_size", -1),
    ("batch_size", 0),
    ("batch_size", 2.5),
    ("num_workers", -1),
    ("val_fraction", 0.0),
    ("val_fraction", 1.0),
    ("val_fraction", "half"),
    ("seed", -2),
    ("seed", True),
    ("max_train_samples", 0),
    ("max_val_samples", -5),
    ("max_test_samples", 1.5),
    ("augment", "yes"),
    ("normalize", 1),
]


@pytest.mark.parametrize(("arg", "value"), BAD_ARGUMENTS)
def test_bad_common_arguments_are_named(make_dm, arg: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"data\.{arg}\b.*{value!r}"):
        make_dm(**{arg: value})


def test_stratified_split_is_exact_balanced_and_seeded() -> None:
    targets = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    first, rest = stratified_split(targets, 10, torch.Generator().manual_seed(1))
    assert len(first) == 10 and len(rest) == 90
    assert sorted(first.tolist() + rest.tolist()) == list(range(100))
    assert torch.bincount(targets[first]).tolist() == [5, 3, 2]
    again, _ = stratified_split(targets, 10, torch.Generator().manual_seed(1))
    other, _ = stratified_split(targets, 10, torch.Generator().manual_seed(2))
    assert torch.equal(first, again) and not torch.equal(first, other)
    odd, _ = stratified_split(targets, 7, torch.Generator().manual_seed(1))  # largest remainders
    assert len(odd) == 7 and torch.bincount(targets[odd], minlength=3).tolist() == [4, 2, 1]
    with pytest.raises(ValueError, match="n_first"):
        stratified_split(targets, 101, torch.Generator())
