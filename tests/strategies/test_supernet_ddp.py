"""SupernetModule under 2-process CPU DDP (gloo): every rank trains rank zero's sampled paths.

Runs a small script in a subprocess (Lightning's DDP launcher re-executes it once per rank), so
pytest itself is never forked. Each rank seeds its path sampler differently, so identical paths on
both ranks can only come from the broadcast.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent('''
    import json, os, sys
    from pathlib import Path

    import lightning as L
    import numpy as np
    import torch
    from lightning.pytorch.callbacks import Callback, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger
    from lightning.pytorch.strategies import DDPStrategy
    from torch.utils.data import DataLoader, TensorDataset

    sys.path.insert(0, sys.argv[2])
    from conftest import ToySpace
    from lightning_nas.strategies.supernet import PathSampler, SupernetModule

    out = Path(sys.argv[1])
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch.set_num_threads(1)
    torch.manual_seed(0)


    class RecordPaths(Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            with (out / f"paths_rank{trainer.global_rank}.jsonl").open("a") as handle:
                handle.write(json.dumps([p.to_dict() for p in module.last_paths]) + "\\n")


    space = ToySpace(input_shape=(1, 8, 8), num_classes=10)
    module = SupernetModule(space, sampling="sandwich", num_random_paths=1, seed=100 + rank)
    data = TensorDataset(torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,)))
    trainer = L.Trainer(
        max_epochs=1, accelerator="cpu", devices=2,
        strategy=DDPStrategy(process_group_backend="gloo", find_unused_parameters=True),  # one path per step
        logger=CSVLogger(out / "logs", name="supernet"), num_sanity_val_steps=0, limit_val_batches=0,
        callbacks=[RecordPaths(), ModelCheckpoint(dirpath=out / "checkpoints")],
        enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(module, train_dataloaders=DataLoader(data, batch_size=4))
    own = PathSampler(module.supernet, np.random.default_rng(100 + rank))
    (out / f"own_rank{rank}.json").write_text(json.dumps([own.uniform().to_dict() for _ in range(4)]))
''')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_ddp_ranks_train_identical_paths_and_rank_zero_writes_once(tmp_path: Path) -> None:
    script = tmp_path / "ddp_supernet.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    out.mkdir()
    tests_dir = Path(__file__).resolve().parents[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}
    env.pop("LOCAL_RANK", None)
    done = subprocess.run([sys.executable, str(script), str(out), str(tests_dir)], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-4000:]

    rank0 = (out / "paths_rank0.jsonl").read_text().splitlines()
    rank1 = (out / "paths_rank1.jsonl").read_text().splitlines()
    assert len(rank0) == 4 and rank0 == rank1  # 32 samples / 2 ranks / batch 4
    assert len({json.dumps(json.loads(line)[2]) for line in rank0}) > 1  # the random path varies per batch
    own0, own1 = json.loads((out / "own_rank0.json").read_text()), json.loads((out / "own_rank1.json").read_text())
    assert own0 != own1  # the ranks' own generators disagree: equality above is the broadcast's doing

    checkpoints = list((out / "checkpoints").glob("*.ckpt"))
    assert len(checkpoints) == 1
    versions = list((out / "logs" / "supernet").iterdir())
    assert len(versions) == 1 and (versions[0] / "metrics.csv").exists()
