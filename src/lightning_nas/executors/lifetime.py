"""Worker processes that end with their parent."""

from __future__ import annotations

import os
import threading
import time

__all__ = ["exit_with_parent"]


def exit_with_parent(poll_s: float = 1.0) -> None:
    """Start a daemon thread that ends this worker process once its parent process has gone.

    A pool's workers otherwise outlive a parent that was killed (SIGKILL, or SIGTERM without clean-up)
    and go on training their current candidate for minutes on cores nobody reads results from. Call it
    in the worker, e.g. as a process pool's ``initializer``.
    """
    if poll_s <= 0:
        raise ValueError(f"poll_s must be > 0, got {poll_s!r}")
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)  # the parent is gone: nobody waits for this work

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
