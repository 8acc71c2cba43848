"""Tasks the worker tests enqueue (importable by the qcluster processes they start)."""

from __future__ import annotations

import os
import time


def record(n: int, path: str) -> int:
    """Note which process ran task `n` (one short O_APPEND write per task: lines never interleave)."""
    time.sleep(0.3)  # long enough that one process alone cannot drain the queue before the other polls
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{n} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    return n
