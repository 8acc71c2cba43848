"""A stop request reaching the task a worker process is running, so `make run`'s Ctrl-C or `systemctl stop`
ends the worker within seconds instead of after the embedding chunk it is on (issue 21: 5.5 minutes).

`manage.py worker` (django-q2's qcluster with this one addition) ignores SIGUSR1 before it starts the cluster,
so every process of the cluster inherits "ignore"; each worker process re-arms it when it spawns (django-q2's
`post_spawn`, connected in modeling.apps) to set the flag below. On TERM or INT the command sends SIGUSR1 to
its descendants, then stops the cluster as qcluster does; the running task sees `requested()` at its next
batch and returns early, leaving the rest to the next start (`resume_model_work`). Torch-free.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

_requested = threading.Event()


def requested() -> bool:
    return _requested.is_set()


def _on_stop_signal(signum, frame) -> None:
    _requested.set()


def arm(**kwargs) -> None:
    """In a worker process: a SIGUSR1 asks the running task to stop at its next batch (a post_spawn
    receiver; signal handlers can only be set from a process's main thread)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGUSR1, _on_stop_signal)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc), children first."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name is in parentheses and may hold spaces: the ppid is the second field after it.
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
        parents.setdefault(ppid, []).append(int(entry.name))
    found, frontier = [], [pid]
    while frontier:
        children = parents.get(frontier.pop(), [])
        found.extend(children)
        frontier.extend(children)
    return found


def ask_descendants_to_stop(pid: int | None = None) -> int:
    """SIGUSR1 to every process below `pid` (this one by default); how many were asked."""
    asked = 0
    for child in descendants(pid or os.getpid()):
        try:
            os.kill(child, signal.SIGUSR1)
            asked += 1
        except ProcessLookupError:
            continue
    return asked
