"""Restart safety: a worker killed (SIGKILL) in the middle loses nothing and leaves no half-written
model; the next run takes over the dead worker's claim and carries on from the last file written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from modeling.ml.embeddings import store_for
from modeling.ml.head import Head
from modeling.models import EmbeddingJob, ModelState, ModelVersion
from modeling.tasks import embed_project, embed_until_done
from tests.conftest import REPO, database_url
from tests.modeling.conftest import make_colour_project, make_text_project
from tests.modeling.test_training import label_from_queue

pytestmark = pytest.mark.django_db(transaction=True)


def _worker(code: str, **env) -> subprocess.Popen:
    """A separate worker process on the same (test) database, as a qcluster worker would be."""
    environment = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "lightbulb_site.settings",
        **env,
    }
    script = "import django\ndjango.setup()\n" + textwrap.dedent(code)
    return subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_for(predicate, timeout=120.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            return predicate()
        time.sleep(0.02)
    return False


def test_it_resumes_embedding_after_the_worker_is_killed(tmp_path, alice, loop_on):
    loop_on.LIGHTBULB_MODEL_IN_THE_LOOP = False  # import without embedding: the killed worker does it
    project, _ = make_colour_project(tmp_path, n=40)
    _, store = store_for(project)
    proc = _worker(
        f"from modeling.tasks import embed_project\nprint(embed_project({project.pk}))\n", LIGHTBULB_EMBED_CHUNK="2"
    )
    try:
        assert _wait_for(lambda: len(list(store.path.glob("chunk-*.npz"))) >= 3, proc=proc), proc.stdout.read()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    survived = store.load()
    assert 0 < len(survived.ids) < 40  # killed in the middle, with whole chunks on disk
    job = EmbeddingJob.objects.get(project=project)
    assert job.claimed_by  # the dead worker's claim is still there...

    result = embed_project(project.pk)  # ...and the next run takes it over at once (its pid is gone)
    assert result.startswith(f"embedded {40 - len(survived.ids)},"), result
    final = store.load()
    assert sorted(final.ids.tolist()) == sorted(project.items.values_list("id", flat=True))
    job.refresh_from_db()
    assert (job.embedded, job.complete, job.claimed_by) == (40, True, "")
    assert (store.path / "matrix.json").exists() and not list(store.path.glob("chunk-*.npz"))


def test_a_worker_killed_while_training_leaves_the_last_good_version(tmp_path, alice, loop_on,
                                                                     django_capture_on_commit_callbacks):
    project, truth = make_text_project(tmp_path, n=40)
    embed_until_done(project.pk)
    label_from_queue(project, alice, truth, 20, django_capture_on_commit_callbacks)
    good = ModelState.objects.get(project=project).current_version
    assert good is not None

    # One more label, trained by a worker that dies in the middle of fitting.
    loop_on.LIGHTBULB_MODEL_IN_THE_LOOP = False
    label_from_queue(project, alice, truth, 1, django_capture_on_commit_callbacks)
    loop_on.LIGHTBULB_MODEL_IN_THE_LOOP = True
    proc = _worker(
        f"""
        import time
        import modeling.ml.training as training
        def stuck(*args, **kwargs):
            print("fitting", flush=True)
            time.sleep(600)
        training.fit_logistic = stuck
        from modeling.tasks import train_project
        train_project({project.pk})
        """,
        LIGHTBULB_TRAIN_DEBOUNCE_SECONDS="0",
    )
    try:
        assert _wait_for(lambda: ModelState.objects.get(project=project).claimed_by != "", proc=proc)
        time.sleep(1.0)  # inside the fit by now (it loads nothing heavy before)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    state = ModelState.objects.get(project=project)
    assert state.current_version_id == good.pk  # nothing half-made became current
    assert ModelVersion.objects.filter(project=project).count() == good.number
    assert Head.load(project.model_path / good.file).classes == ["sport", "food"]

    # A half-written file from a killed save is never read, and the next run takes over the claim.
    (project.model_path / "versions" / f".v{good.number + 1:05d}.npz.abc.tmp").write_bytes(b"half a model")
    from modeling.tasks import train_project

    result = train_project(project.pk)
    assert result.startswith(f"v{good.number + 1}:"), result
    state.refresh_from_db()
    assert state.current_version.number == good.number + 1 and state.claimed_by == ""
    assert state.current_version.labels_count == 21
    assert Head.load(project.model_path / state.current_version.file).weight.shape == (2, 384 + 2048)


def test_resume_enqueues_what_a_stopped_worker_left(tmp_path, alice, loop_on, django_capture_on_commit_callbacks):
    from modeling.services import resume_pending_work

    loop_on.LIGHTBULB_MODEL_IN_THE_LOOP = False
    project, truth = make_text_project(tmp_path, n=30)
    label_from_queue(project, alice, truth, 20, django_capture_on_commit_callbacks)
    ModelState.objects.create(project=project, requested_revision=project.judgement_revision + 20)
    loop_on.LIGHTBULB_MODEL_IN_THE_LOOP = True
    done = resume_pending_work()  # sync mode: the enqueued tasks run right here
    assert done == [f"embed {project.slug}", f"train {project.slug}"]
    assert EmbeddingJob.objects.get(project=project).complete
    assert ModelState.objects.get(project=project).current_version is not None
