"""``python -m lightning_nas``: the Hydra app (see lightning_nas.cli)."""

from lightning_nas.cli import main

if __name__ == "__main__":  # process-pool workers start with spawn and re-import this file
    main()
