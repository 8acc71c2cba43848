"""The worker serves people first (issue 21): a burst of labels enqueues one training task, embedding gives the
worker up between small chunks when another task waits or a stop is asked, the time budget holds inside what
used to be one big chunk, `manage.py worker` stops at once, and the model card says what blocks the first
model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.models import OrmQ

from modeling import stopping
from modeling.models import EmbeddingJob, ModelState
from modeling.services import model_summary, request_training
from modeling.tasks import embed_project
from modeling.views import first_model_status
from tests.conftest import REPO, database_url
from tests.modeling.conftest import make_text_project

pytestmark = pytest.mark.django_db


def test_it_enqueues_one_training_task_per_burst_of_labels(tmp_path, alice, loop_on, monkeypatch):
    loop_on.LIGHTBULB_MODEL_IN_THE_LOOP = False
    project, _ = make_text_project(tmp_path, n=10)
    loop_on.LIGHTBULB_MODEL_IN_THE_LOOP = True
    enqueued = []
    monkeypatch.setattr("modeling.services._enqueue", lambda func, pid, group: enqueued.append(func))
    for _ in range(5):
        request_training(project.pk)
    assert enqueued == ["modeling.tasks.train_project"]
    # The task clears the mark when it starts: a label after that needs (and gets) a task of its own.
    ModelState.objects.filter(project=project).update(train_queued_at=None)
    request_training(project.pk)
    assert len(enqueued) == 2
    # A mark older than the claim timeout is a lost task (a flushed queue): enqueued again.
    ModelState.objects.filter(project=project).update(train_queued_at=timezone.now() - timedelta(hours=1))
    request_training(project.pk)
    assert len(enqueued) == 3


def _fresh_project(tmp_path, loop_on, n):
    loop_on.LIGHTBULB_MODEL_IN_THE_LOOP = False
    project, truth = make_text_project(tmp_path, n=n)
    loop_on.LIGHTBULB_MODEL_IN_THE_LOOP = True
    return project, truth


def test_it_gives_the_worker_up_between_chunks_when_another_task_waits(tmp_path, alice, loop_on):
    project, _ = _fresh_project(tmp_path, loop_on, 120)
    loop_on.LIGHTBULB_EMBED_CHUNK = 16  # chunks bounded, whatever speed an earlier test measured
    broker = get_broker()
    OrmQ.objects.create(key=broker.list_key, payload="a training request", lock=timezone.now())
    assert broker.queue_size() == 1
    result = embed_project(project.pk)
    job = EmbeddingJob.objects.get(project=project)
    assert result.endswith("more to do") and 0 < job.embedded < 120, result  # one small chunk, then yield
    OrmQ.objects.all().delete()
    while not embed_project(project.pk).endswith("done"):
        pass
    job.refresh_from_db()
    assert job.embedded == 120 and job.complete


def test_it_stops_embedding_at_the_next_chunk_when_a_stop_is_asked(tmp_path, alice, loop_on, monkeypatch):
    project, _ = _fresh_project(tmp_path, loop_on, 120)
    loop_on.LIGHTBULB_EMBED_CHUNK = 16
    chunks = []
    original = stopping.requested

    def stop_after_the_first_chunk() -> bool:
        chunks.append(1)
        if len(chunks) > 1:
            stopping._requested.set()  # as SIGUSR1 from `manage.py worker` would, mid-run
        return original()

    monkeypatch.setattr("modeling.tasks.stopping.requested", stop_after_the_first_chunk)
    try:
        result = embed_project(project.pk)
        job = EmbeddingJob.objects.get(project=project)
        assert result.endswith("more to do") and 0 < job.embedded < 120 and not job.claimed_by, result
        # A task the worker takes after the stop request embeds nothing and leaves it for the next start.
        assert embed_project(project.pk).startswith("stop requested")
        job.refresh_from_db()
        assert job.embedded < 120
    finally:
        stopping._requested.clear()


def test_it_keeps_the_time_budget_inside_a_chunk(tmp_path, alice, loop_on):
    project, _ = _fresh_project(tmp_path, loop_on, 200)
    loop_on.LIGHTBULB_EMBED_CHUNK = 256  # one chunk would have been the whole pool
    # 200 texts in 0.05 s would be 4,000/s, ten times what MiniLM does on these cores even when an earlier test
    # has loaded it already (at 0.5 s that happened: the whole pool fitted inside the budget).
    loop_on.LIGHTBULB_EMBED_TASK_SECONDS = 0.05
    result = embed_project(project.pk)
    job = EmbeddingJob.objects.get(project=project)
    assert result.endswith("more to do") and job.embedded < 200, result


def test_it_says_what_blocks_the_first_model(tmp_path, alice, loop_on):
    from labeling.services import do_record_judgement

    project, truth = _fresh_project(tmp_path, loop_on, 60)
    project.refresh_from_db()
    assert "now 0 TEST, 0 TRAIN" in first_model_status(project, model_summary(project))
    loop_on.LIGHTBULB_MODEL_IN_THE_LOOP = False  # labels land while the worker is busy elsewhere
    project.test_min_judgements, project.min_train_judgements = 2, 2
    project.save()
    for item in project.items.order_by("id")[:8]:
        do_record_judgement(project, item=item, user=alice, label=truth[item.key])
    from projects.encoders import spec_for

    spec = spec_for(project.encoder_name, data_type=project.data_type)
    EmbeddingJob.objects.create(project=project, encoder=spec.name, encoder_version=spec.version, total=60,
                                embedded=20, items_per_second=4.0)
    project.refresh_from_db()
    status = first_model_status(project, model_summary(project))
    assert status.startswith("waiting for embeddings (20 of 60, about 10 s left)"), status


@pytest.mark.django_db(transaction=True)
def test_it_stops_the_worker_command_promptly_and_cleanly(tmp_path):
    env = {**os.environ, "DATABASE_URL": database_url(), "LIGHTBULB_Q_SYNC": "0"}
    proc = subprocess.Popen([sys.executable, "manage.py", "worker"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output = b""
        deadline = time.monotonic() + 60
        while b"ready for work" not in output and time.monotonic() < deadline:
            output += proc.stdout.readline()
        assert b"ready for work" in output, output
        assert stopping.descendants(proc.pid)  # the sentinel and its worker, pusher, monitor
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, rest
    assert b"has stopped" in rest
