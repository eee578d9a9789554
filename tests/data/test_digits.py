"""The default data set: scikit-learn's bundled 8x8 digits."""

from __future__ import annotations

import pytest
import torch

from lightning_nas.data import DigitsDataModule


def test_sizes_and_fixed_stratified_test_split() -> None:
    dm = DigitsDataModule(val_fraction=0.2, test_fraction=0.2)
    dm.setup()
    n_test = round(0.2 * 1797)
    assert len(dm.test_dataset) == n_test
    assert len(dm.train_dataset) + len(dm.val_dataset) == 1797 - n_test
    assert len(dm.val_dataset) == round(0.2 * (1797 - n_test))
    counts = torch.bincount(dm.test_dataset.targets, minlength=10)
    assert int(counts.min()) >= 34 and int(counts.max()) <= 38  # about 20% of each ~180-image class
    other_seed = DigitsDataModule(seed=7)
    assert torch.equal(dm.test_dataset.indices, other_seed.test_dataset.indices)
    # test images never leak into train/val: compare the raw pixels
    pool = dm.train_dataset.base
    test_set = dm.test_dataset.base
    assert pool.base is test_set.base  # type: ignore[attr-defined]
    assert not set(pool.indices.tolist()) & set(test_set.indices.tolist())  # type: ignore[attr-defined]


def test_pixels_scaled_from_0_16_to_unit_range_and_labels_match_sklearn() -> None:
    from sklearn.datasets import load_digits

    dm = DigitsDataModule(normalize=False)
    images = dm.train_dataset.base.base.images  # type: ignore[attr-defined]
    assert images.shape == (1797, 1, 8, 8)
    raw = load_digits()
    x, y = dm.train_dataset[0]
    position = int(dm.train_dataset.base.indices[dm.train_dataset.indices[0]])  # type: ignore[attr-defined]
    torch.testing.assert_close(x[0], torch.tensor(raw.images[position] / 16.0, dtype=torch.float32))
    assert y == int(raw.target[position])
    assert dm.class_names == [str(d) for d in range(10)]
    assert dm.input_shape == (1, 8, 8) and dm.num_classes == 10


def test_digits_specific_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match=r"data\.test_fraction.*1\.5"):
        DigitsDataModule(test_fraction=1.5)
    with pytest.raises(ValueError, match=r"data\.augment"):
        DigitsDataModule(augment=True)


def test_lightning_trainer_drives_the_datamodule() -> None:
    import lightning as L
    from torch import nn

    class Probe(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
            x, y = batch
            return nn.functional.cross_entropy(self.net(x), y)

        def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
            x, y = batch
            self.log("test/acc", (self.net(x).argmax(1) == y).float().mean())

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = DigitsDataModule(batch_size=32, max_test_samples=64)
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    probe = Probe()
    trainer.fit(probe, datamodule=dm)
    (result,) = trainer.test(probe, datamodule=dm, verbose=False)
    assert trainer.global_step == 3 and 0.0 <= result["test/acc"] <= 1.0
