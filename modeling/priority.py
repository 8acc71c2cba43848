"""The deep worker's CPU priority: it takes only what the rest of the machine leaves.

nice 19 alone still lets a fine-tune's threads hold a core for a whole scheduler slice after the fast
worker (or the web process) wakes up; SCHED_IDLE (Linux) makes every other task preempt it at once.
Processes the deep worker forks inherit both.
"""

from __future__ import annotations

import os


def run_in_background() -> str:
    """Lower this process to nice 19 and, where the OS has it, SCHED_IDLE; says what it set."""
    done = []
    try:
        os.nice(19 - os.nice(0))
        done.append("nice 19")
    except OSError:
        pass
    idle = getattr(os, "SCHED_IDLE", None)
    if idle is not None:
        try:
            os.sched_setscheduler(0, idle, os.sched_param(0))
            done.append("SCHED_IDLE")
        except OSError:
            pass
    return ", ".join(done) or "unchanged"
