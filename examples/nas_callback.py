"""Weight-sharing NAS in a plain Lightning project: put choices in your network, add ``NASCallback``.

The LightningModule below is ordinary Lightning code; only its network is written with
``lightning_nas.nn`` choice modules. ``NASCallback`` trains it as a supernet (a random path
per batch) and, at the end of ``fit``, runs an evolutionary search over its subnets scored
with the trained shared weights. ``callback.best_model(data)`` hands the best subnet over as a plain
``nn.Module`` with its BatchNorm statistics re-estimated, ready to use; a checkpoint can monitor
``search/best_path_val_acc``.

Run::

    python examples/nas_callback.py                    # under a minute on 2 CPU cores
    python examples/nas_callback.py --epochs 1 --population 4 --generations 2   # smoke test
"""

from __future__ import annotations

import argparse
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_nas.callbacks.nas_callback import NASCallback
from lightning_nas.nn import ElasticBatchNorm2d, ElasticConv2d, ElasticLinear, LayerChoice, ValueChoice, freeze
from lightning_nas.strategies import EvolutionStrategy


def searchable_net(num_classes: int = 10) -> nn.Module:
    """A small CNN with 3 widths x 2 kernels x 4 x 4 ops = 96 candidate architectures."""
    width = ValueChoice([16, 32, 48], label="width")

    def op(label: str) -> nn.Module:
        return LayerChoice({
            "conv3x3": lambda: nn.Sequential(ElasticConv2d(width, width, 3), ElasticBatchNorm2d(width), nn.ReLU()),
            "sep_conv": lambda: nn.Sequential(ElasticConv2d(width, width, 3, depthwise=True),
                                              ElasticConv2d(width, width, 1), ElasticBatchNorm2d(width), nn.ReLU()),
            "max_pool": lambda: nn.MaxPool2d(3, stride=1, padding=1),
            "skip": nn.Identity,
        }, label=label)

    return nn.Sequential(
        ElasticConv2d(1, width, ValueChoice([3, 5], label="stem_kernel")),
        ElasticBatchNorm2d(width),
        nn.ReLU(),
        op("op1"),
        op("op2"),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        ElasticLinear(width, num_classes),
    )


class LitClassifier(L.LightningModule):
    """A plain LightningModule: nothing in it knows about the search."""

    def __init__(self, lr: float = 3e-3) -> None:
        super().__init__()
        self.lr = lr
        self.net = searchable_net()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_acc", (self(x).argmax(-1) == y).float().mean(), prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.lr)


class DigitsData(L.LightningDataModule):
    """scikit-learn's 8x8 digits: 1500 training and 297 validation images."""

    def __init__(self, batch_size: int = 64, seed: int = 0) -> None:
        super().__init__()
        self.batch_size, self.seed = batch_size, seed

    def setup(self, stage: str | None = None) -> None:
        x, y = load_digits(return_X_y=True)
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(self.seed))
        images = torch.tensor(x, dtype=torch.float32).view(-1, 1, 8, 8)[order] / 8.0 - 1.0
        labels = torch.tensor(y)[order]
        self.train_set = TensorDataset(images[:1500], labels[:1500])
        self.val_set = TensorDataset(images[1500:], labels[1500:])

    def train_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True,
                          generator=torch.Generator().manual_seed(self.seed))

    def val_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.val_set, batch_size=256)


def accuracy(model: nn.Module, data: DigitsData) -> float:
    """Top-1 accuracy of ``model`` on the validation split."""
    with torch.no_grad():
        hits = [(model(x).argmax(-1) == y).float() for x, y in data.val_dataloader()]
    return float(torch.cat(hits).mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15, help="supernet training epochs")
    parser.add_argument("--population", type=int, default=16, help="evolution population size")
    parser.add_argument("--generations", type=int, default=4, help="evolution generations (budget = pop x gen)")
    parser.add_argument("--sampling", choices=["uniform", "sandwich"], default="uniform")
    parser.add_argument("--output-dir", default=None, help="write history.jsonl and best/arch.json here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (8x8 images: 1 is fastest)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    L.seed_everything(args.seed, verbose=False)
    strategy = EvolutionStrategy(population_size=args.population, generations=args.generations,
                                 tournament_size=min(5, args.population), elitism=min(2, args.population - 1),
                                 seed=args.seed)
    callback = NASCallback(strategy=strategy, sampling=args.sampling, output_dir=args.output_dir, seed=args.seed)
    trainer = L.Trainer(max_epochs=args.epochs, accelerator="cpu", devices=1, callbacks=[callback], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    # with checkpoints: ModelCheckpoint(monitor="search/best_path_val_acc", mode="max")
    model = LitClassifier()
    trainer.fit(model, datamodule=DigitsData(seed=args.seed))

    assert callback.best_arch is not None and callback.history is not None
    best = next(r for r in callback.history if r.arch == callback.best_arch)
    print(f"searched {len(callback.history)} subnets at {callback.subnets_per_second:.0f} subnets/s")
    print(f"best architecture: {callback.best_arch.to_json()}")
    print(f"best val acc (inherited weights, BN recalibrated): {best.result.metrics['search/val_acc']:.4f}")
    print("Pareto front (val acc vs params):")
    for record in callback.front:
        metrics = record.result.metrics
        print(f"  acc={metrics['search/val_acc']:.4f} params={metrics['model/params']:.0f} {record.arch.to_json()}")
    data = DigitsData(seed=args.seed)
    ready = callback.best_model(data)  # a plain nn.Module: shared weights, BatchNorm re-estimated
    stale = freeze(model.net, callback.best_arch).eval()  # the same path, supernet's BatchNorm statistics
    print(f"best subnet: {sum(p.numel() for p in ready.parameters())} parameters; val acc "
          f"{accuracy(ready, data):.4f} with best_model() vs {accuracy(stale, data):.4f} frozen as is")


if __name__ == "__main__":
    main()
