"""``python -m lightning_nas.export``: see lightning_nas.export.cli."""

from lightning_nas.export.cli import main

if __name__ == "__main__":
    main()
