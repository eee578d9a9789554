"""``python -m lightning_nas.report <multirun folder> [--output DIR]``: the strategy comparison table and plot."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from lightning_nas.results.multirun import write_report


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table and the paths of ``report.csv`` and ``report.png``; 1 when no run is found."""
    parser = argparse.ArgumentParser(prog="python -m lightning_nas.report", description=__doc__)
    parser.add_argument("folder", help="a Hydra multirun folder (searched recursively for summary.json)")
    parser.add_argument("--output", default=None, help="where report.csv and report.png go (default: folder)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        table, csv_path, png_path = write_report(args.folder, args.output)
    except FileNotFoundError as error:
        logging.getLogger("lightning_nas.report").error("%s", error)
        return 1
    print(table)  # the report itself, for the person at the terminal
    print(f"\nwrote {csv_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
