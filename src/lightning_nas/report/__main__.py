"""``python -m lightning_nas.report <multirun folder> [--output DIR]``: the strategy comparison table and plot."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from lightning_nas.cli_errors import PROG, fail, one_line
from lightning_nas.results.multirun import write_report


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line: ``lightning_nas: error: <argument>: <what> (<usage>)``, exit 2."""

    def error(self, message: str) -> NoReturn:
        fail(f"folder: {message} (usage: python -m lightning_nas.report <multirun folder> [--output DIR])")


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table and the paths of ``report.csv`` and ``report.png``; 2 (and one line on stderr) on error."""
    parser = _Parser(prog="python -m lightning_nas.report", description=__doc__)
    parser.add_argument("folder", help="a Hydra multirun folder (searched recursively for summary.json)")
    parser.add_argument("--output", default=None, help="where report.csv and report.png go (default: folder)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    try:
        table, csv_path, png_path = write_report(args.folder, args.output)
    except FileNotFoundError as error:
        sys.stderr.write(f"{PROG}: error: folder: {one_line(str(error))} (pass a Hydra multirun or run folder)\n")
        return 2
    except OSError as error:
        sys.stderr.write(f"{PROG}: error: output: {one_line(str(error))} (pass --output a writable folder)\n")
        return 2
    print(table)  # the report itself, for the person at the terminal
    print(f"\nwrote {csv_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
