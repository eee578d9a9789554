"""Worker processes end with their parent (lightning_nas.executors.lifetime)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lightning_nas.executors.lifetime import exit_with_parent

POOL_SCRIPT = textwrap.dedent("""
    import os, time
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context
    from lightning_nas.executors.lifetime import exit_with_parent

    if __name__ == "__main__":
        pool = ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=exit_with_parent, initargs=(0.2,))
        print(pool.submit(os.getpid).result(), flush=True)
        pool.submit(time.sleep, 120)  # a long task, as a seed's training
        time.sleep(120)
""")


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped by its new parent, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_pool_worker_exits_when_its_parent_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "pool.py"
    script.write_text(POOL_SCRIPT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        worker = int(parent.stdout.readline())
        assert _alive(worker)
        os.kill(parent.pid, signal.SIGKILL)  # no clean-up: the pool cannot stop its worker
        parent.wait(timeout=10)
        deadline = time.monotonic() + 15
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), "the worker outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_bad_poll_interval_is_named() -> None:
    with pytest.raises(ValueError, match="poll_s must be > 0, got 0"):
        exit_with_parent(0)
