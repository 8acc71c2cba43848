"""Two real qcluster processes sharing one broker and one database, as a scaled-out deployment runs them.

`make test-postgres` runs this on PostgreSQL with the Redis broker (REDIS_URL); on the SQLite run the
broker is the database (django-q2's ORM broker), which two clusters share the same way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, database_url

pytestmark = pytest.mark.django_db(transaction=True)


def _start_clusters(n: int, tmp_path: Path) -> list[subprocess.Popen]:
    env = {**os.environ, "DATABASE_URL": database_url(), "LIGHTBULB_Q_SYNC": "0", "LIGHTBULB_Q_WORKERS": "1",
           "LIGHTBULB_MODEL_IN_THE_LOOP": "1", "LIGHTBULB_TORCH_THREADS": "1"}
    procs = []
    for i in range(n):
        log = open(tmp_path / f"qcluster-{i}.log", "wb")  # noqa: SIM115 (closed with the process)
        procs.append(subprocess.Popen([sys.executable, str(REPO / "manage.py"), "qcluster"], cwd=REPO, env=env,
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    return procs


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_for(predicate, procs, tmp_path: Path, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            logs = "\n".join(f.read_text(errors="replace")[-2000:] for f in tmp_path.glob("qcluster-*.log"))
            pytest.fail(f"a qcluster exited with {dead[0].returncode}:\n{logs}")
        time.sleep(0.5)
    logs = "\n".join(f.read_text(errors="replace")[-2000:] for f in tmp_path.glob("qcluster-*.log"))
    pytest.fail(f"timed out after {timeout:.0f} s; qcluster logs:\n{logs}")


@pytest.fixture
def async_broker(monkeypatch):
    """Enqueue for real: the tests' own process runs tasks inline (sync), the clusters must get them."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", False)


def test_it_runs_each_task_once_across_two_worker_processes(tmp_path, async_broker):
    from django.conf import settings
    from django_q.tasks import async_task

    procs = _start_clusters(2, tmp_path)
    try:
        ledger = tmp_path / "ran.txt"
        for n in range(16):
            async_task("tests.worker_tasks.record", n, str(ledger))

        def lines() -> list[tuple[int, int]]:
            if not ledger.exists():
                return []
            return [tuple(map(int, line.split())) for line in ledger.read_text().splitlines()]  # type: ignore[misc]

        _wait_for(lambda: len(lines()) >= 16, procs, tmp_path)
        time.sleep(1.0)  # a task run twice would show up here
        ran = lines()
        assert sorted(n for n, _ in ran) == list(range(16))
        assert len({pid for _, pid in ran}) == 2, "both clusters took work"
    finally:
        _stop(procs)
    assert ("redis" in settings.Q_CLUSTER) == bool(os.environ.get("REDIS_URL"))


def test_two_clusters_embed_and_train_a_project_without_doing_a_revision_twice(
    tmp_path, alice, settings, async_broker, django_capture_on_commit_callbacks
):
    from django_q.models import Failure

    from labeling.services import do_record_judgement, next_items
    from modeling.models import ModelState, ModelVersion
    from tests.modeling.conftest import make_text_project

    settings.LIGHTBULB_MODEL_IN_THE_LOOP = True
    procs = _start_clusters(2, tmp_path)
    try:
        with django_capture_on_commit_callbacks(execute=True):  # the import enqueues the pool's embedding
            project, truth = make_text_project(tmp_path / "p", n=40)
        for _ in range(24):  # label as annotators do; each judgement enqueues training on commit
            with django_capture_on_commit_callbacks(execute=True):
                leased = next_items(project, user=alice)
                item = leased[0].item
                do_record_judgement(project, item=item, user=alice, label=truth[item.key], time_taken=1.0)
        project.refresh_from_db()

        def trained_up_to_date() -> bool:
            state = ModelState.objects.filter(project=project).select_related("current_version").first()
            return bool(state and state.current_version
                        and state.current_version.judgement_revision == project.judgement_revision)

        _wait_for(trained_up_to_date, procs, tmp_path)
    finally:
        _stop(procs)
    versions = list(ModelVersion.objects.filter(project=project).values_list("number", "judgement_revision"))
    assert versions, "a model was trained"
    revisions = [rev for _, rev in versions]
    assert len(revisions) == len(set(revisions)), f"a revision was trained twice: {versions}"
    assert sorted(n for n, _ in versions) == list(range(1, len(versions) + 1))
    assert Failure.objects.count() == 0
