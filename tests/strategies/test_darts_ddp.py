"""DartsModule under 2-process CPU DDP (gloo): every rank ends with the same alphas; files come from rank zero.

Runs a small script in a subprocess (Lightning's DDP launcher re-executes it once per rank), so pytest
itself is never forked. Each rank sees different batches (distributed samplers), so identical alphas can
only come from the architecture gradient being averaged over ranks and the weight gradients all-reduced.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

SCRIPT = textwrap.dedent('''
    import json, os, sys
    from pathlib import Path

    import lightning as L
    import torch
    from lightning.pytorch.callbacks import Callback
    from lightning.pytorch.strategies import DDPStrategy
    from torch.utils.data import DataLoader, TensorDataset

    import lightning_nas.strategies.darts as darts
    from lightning_nas.spaces.darts_cell import DartsCellSpace
    from lightning_nas.strategies.darts import BilevelDataModule, DartsModule

    out = Path(sys.argv[1])
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch.set_num_threads(1)
    plot = darts.plot_alphas


    def counted_plot(*args, **kwargs):
        with (out / "plot_calls.txt").open("a") as handle:
            handle.write(f"{rank}\\n")
        return plot(*args, **kwargs)


    darts.plot_alphas = counted_plot


    class Data(L.LightningDataModule):
        def __init__(self):
            super().__init__()
            g = torch.Generator().manual_seed(0)  # the same tensors on both ranks; the samplers split them
            self.train = TensorDataset(torch.randn(32, 1, 8, 8, generator=g), torch.randint(0, 3, (32,), generator=g))
            self.val = TensorDataset(torch.randn(32, 1, 8, 8, generator=g), torch.randint(0, 3, (32,), generator=g))

        def train_dataloader(self):
            return DataLoader(self.train, batch_size=4)

        def val_dataloader(self):
            return DataLoader(self.val, batch_size=4)


    class RecordBatches(Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            with (out / f"batches_rank{trainer.global_rank}.jsonl").open("a") as handle:
                handle.write(json.dumps([batch["train"][1].tolist(), batch["val"][1].tolist()]) + "\\n")


    space = DartsCellSpace((1, 8, 8), 3, num_cells=3, channels=4)
    module = DartsModule(space, order="second", partial_channels=2, arch_lr=0.05, output_dir=out / "darts")
    before = {name: p.detach().clone() for name, p in module.named_parameters()}
    trainer = L.Trainer(
        max_epochs=1, accelerator="cpu", devices=2, strategy=DDPStrategy(process_group_backend="gloo"),
        logger=False, enable_checkpointing=False, num_sanity_val_steps=0, limit_val_batches=0,
        callbacks=[RecordBatches()], enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=out,
    )
    trainer.fit(module, datamodule=BilevelDataModule(Data()))
    after = {name: p.detach().clone() for name, p in module.named_parameters()}
    torch.save({"before": before, "after": after}, out / f"params_rank{rank}.pt")
''')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_ddp_ranks_end_with_identical_alphas_and_rank_zero_writes_once(tmp_path: Path) -> None:
    script = tmp_path / "ddp_darts.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}
    env.pop("LOCAL_RANK", None)
    done = subprocess.run([sys.executable, str(script), str(out)], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-4000:]

    batches = [(out / f"batches_rank{rank}.jsonl").read_text().splitlines() for rank in (0, 1)]
    assert len(batches[0]) == len(batches[1]) == 4  # 32 samples / 2 ranks / batch 4
    assert batches[0] != batches[1]  # each rank trains and steps the alphas on its own shard

    rank0, rank1 = (torch.load(out / f"params_rank{rank}.pt") for rank in (0, 1))
    arch_names = {"alpha_normal", "alpha_reduce", "beta_normal", "beta_reduce"}
    assert arch_names <= set(rank0["after"])
    for name in arch_names:
        assert not torch.equal(rank0["before"][name], rank0["after"][name]), f"{name} never stepped"
    for name, value in rank0["after"].items():
        assert torch.equal(value, rank1["after"][name]), f"{name} differs between ranks"

    assert (out / "plot_calls.txt").read_text().split() == ["0"]  # one heatmap, written by rank zero only
    assert (out / "darts" / "alphas" / "epoch_000.png").stat().st_size > 0
    genotype = json.loads((out / "darts" / "genotype.json").read_text())
    assert genotype == json.loads((out / "darts" / "genotypes" / "epoch_000.json").read_text())
