"""``python -m lightning_nas``: the Hydra app (see lightning_nas.cli)."""

from lightning_nas.cli import main

main()
