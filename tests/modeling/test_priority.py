"""The deep worker's priority: nice 19 and SCHED_IDLE, set in its own process and inherited by what it forks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_it_lowers_the_deep_worker_and_its_children_to_idle_priority():
    script = (
        "import os\n"
        "from modeling.priority import run_in_background\n"
        "print(run_in_background())\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    print(os.nice(0), os.sched_getscheduler(0) == os.SCHED_IDLE, flush=True)\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60,
                         check=True).stdout.split("\n")
    assert out[0] == "nice 19, SCHED_IDLE"
    assert out[1] == "19 True"  # a forked worker process runs at the same priority
    # This test process itself is untouched (the helper is only ever called in the deep worker's own process).
    assert os.sched_getscheduler(0) != os.SCHED_IDLE
