"""The deep tier on tiny real data: real forward/backward passes through MobileNetV2 and MiniLM, the fine-tuned
encoder saved and loaded back, the whole run as the deep worker does it (re-embedding, the paired comparison
on TEST, adoption only when TEST says better), cancellation, a killed worker, and the owner's controls."""

from __future__ import annotations

import signal

import numpy as np
import pytest
from rest_framework.test import APIClient

from modeling.deep import (
    FineTuneError,
    do_cancel_finetune,
    do_request_finetune,
    do_use_pretrained,
    maybe_request_finetune,
    recover_finetunes,
    run_spec,
)
from modeling.ml import finetune as ft
from modeling.ml.embeddings import EmbeddingStore, project_encoder, store_for, store_path
from modeling.ml.encoders import load_encoder
from modeling.models import FineTuneDecision, FineTuneRun, FineTuneState, ModelState, ModelVersion
from modeling.tasks import embed_until_done, finetune_run, settle_finetune, train_project
from projects.models import Role
from projects.services import do_add_member
from tests.conftest import png_bytes
from tests.modeling.conftest import bundle_bytes, make_colour_project, make_text_project
from tests.modeling.test_recovery import _wait_for, _worker

pytestmark = pytest.mark.django_db


def _changed(before: dict, after: dict) -> float:
    """Largest absolute change over the floating-point tensors of two state dicts."""
    return max(float((after[k].float() - before[k].float()).abs().max())
               for k in before if before[k].is_floating_point())


def test_it_fine_tunes_an_image_network_and_the_encoder_loads_its_weights(tmp_path):
    from modeling.ml.encoders import image_network

    images = [png_bytes((200, 30, 30), seed=i) for i in range(6)] + [png_bytes((30, 40, 210), seed=i) for i in range(6)]
    y = np.array([0] * 6 + [1] * 6)
    seen = []
    result = ft.finetune_images("mobilenet_v2", images, y, 2, epochs=1, frozen_epochs=1, batch_size=6,
                                progress=seen.append)
    assert len(result.losses) == 2 and all(np.isfinite(result.losses))
    assert [p.epoch for p in seen] == [1, 1, 2, 2] and seen[-1].fraction == pytest.approx(1.0)
    pretrained = image_network("mobilenet_v2").state_dict()
    assert _changed(pretrained, result.states["mobilenet_v2"]) > 1e-4  # a real backward pass moved the weights
    folder = ft.save_encoder(result, tmp_path / "run")
    assert (folder / "networks.pt").exists() and not list(tmp_path.glob(".*.tmp"))
    tuned = load_encoder("mobilenet_v2", finetuned=str(folder)).embed(images[:2])
    base = load_encoder("mobilenet_v2").embed(images[:2])
    assert tuned.shape == base.shape == (2, 1280) and not np.allclose(tuned, base)


def test_it_fine_tunes_minilm_on_contrastive_pairs(tmp_path):
    from modeling.ml.provisioning import minilm_model_dir

    texts = ["the striker scored a goal", "our team won the final", "a marathon runner finished first",
             "simmer the tomato sauce", "knead the bread dough", "roast the vegetables"]
    y = np.array([0, 0, 0, 1, 1, 1])
    pairs = ft.contrastive_pairs(y, max_pairs=40)
    assert all((y[i] == y[j]) == (t == 1.0) for i, j, t in pairs) and len(pairs) <= 40
    result = ft.finetune_text(texts, y, model_dir=minilm_model_dir(), max_pairs=16)
    assert result.pairs == len(ft.contrastive_pairs(y, max_pairs=16)) == 12 and np.isfinite(result.losses[0])
    folder = ft.save_encoder(result, tmp_path / "run")
    tuned = load_encoder("minilm_ngrams", finetuned=str(folder)).embed(texts[:2])
    base = load_encoder("minilm_ngrams").embed(texts[:2])
    assert tuned.shape == base.shape and not np.allclose(tuned[:, :384], base[:, :384])
    assert np.allclose(tuned[:, 384:], base[:, 384:])  # the hashed n-grams have nothing to fit


def test_mcnemar_is_exact_and_one_sided():
    assert ft.mcnemar_p(0, 0) == 1.0
    assert ft.mcnemar_p(5, 0) == pytest.approx(1 / 32)
    assert ft.mcnemar_p(8, 2) == pytest.approx(56 / 1024)  # P(X >= 8), X ~ Bin(10, 1/2)
    current = np.array([True] * 80 + [False] * 20)
    candidate = current.copy()
    candidate[80:92] = True  # 12 more right, 1 fewer
    candidate[0] = False
    c = ft.compare(current, candidate)
    assert (c.only_candidate_right, c.only_current_right, c.better) == (12, 1, True) and c.p_value < 0.01
    assert not ft.compare(candidate, current).better  # the other way round
    assert not ft.compare(current, current).better  # no disagreement is no evidence


@pytest.fixture
def text_model(tmp_path, alice, settings):
    settings.LIGHTBULB_MODEL_IN_THE_LOOP = False
    project, truth = make_text_project(tmp_path, n=40)
    from labeling.services import do_record_judgement

    for item in sorted(project.items.all(), key=lambda i: i.key)[:32]:
        do_record_judgement(project, item=item, user=alice, label=truth[item.key])
    settings.LIGHTBULB_MODEL_IN_THE_LOOP = True
    settings.LIGHTBULB_TRAIN_DEBOUNCE_SECONDS = 0
    embed_until_done(project.pk)
    train_project(project.pk)
    project.refresh_from_db()
    return project


def test_a_whole_run_re_embeds_compares_on_test_and_adopts_only_if_better(text_model, alice, settings, monkeypatch):
    project = text_model
    monkeypatch.setattr(ft, "TEXT_MAX_PAIRS", 32)
    before = ModelState.objects.get(project=project).current_version
    run = do_request_finetune(project, user=alice)
    assert (run.number, run.state, run.trigger, run.encoder) == (1, FineTuneState.QUEUED, "owner", "minilm_ngrams")
    with pytest.raises(Exception, match="already queued or running"):
        do_request_finetune(project, user=alice)
    result = finetune_run(run.pk)
    run.refresh_from_db()
    assert run.state == FineTuneState.DONE and run.progress == 1.0 and run.train_count > 0 and run.test_count > 0
    comparison = run.comparison
    assert comparison["test_items"] == run.test_count and comparison["test"] == "exact McNemar, one-sided"
    assert (run.decision == FineTuneDecision.ADOPTED) == comparison["better"], result
    state = ModelState.objects.get(project=project)
    if comparison["better"]:
        assert state.finetune_id == run.pk
    else:
        # Two separable topics: the pretrained head is already right on TEST, so nothing can be shown better.
        assert state.finetune_id is None and state.current_version_id == before.pk
        assert "not shown better" in run.reason
        # Kept for the record (numbers, reason), not its files: nothing reads its weights or vectors.
        assert not (project.model_path / run.folder).exists()
        assert not store_path(project, run_spec(run)).exists()
        spec = project_encoder(project).spec
        assert "+ft-" not in spec.version  # the model still reads the pretrained encoder
    assert finetune_run(run.pk) == "not queued (taken, cancelled or finished)"  # a second copy of the task


def test_an_adopted_fine_tune_becomes_the_model_the_loop_serves_and_exports(text_model, alice, monkeypatch):
    project = text_model
    run = _adopt(project, alice, monkeypatch, on_commit=None)  # its forced training is left to this test
    assert run.reason.startswith("better on 100 TEST items")
    assert ModelState.objects.get(project=project).finetune_id == run.pk
    spec, store = store_for(project)
    assert spec.version.endswith(f"+ft-p{project.pk}-r1") and store.load().ids.size == project.items.count()
    # The forced training (on commit in production) reads the fine-tuned cache.
    train_project(project.pk)
    version = ModelState.objects.get(project=project).current_version
    assert version.encoder_version == spec.version and version.number == 2
    data = bundle_bytes(project)
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
    assert any(n.startswith("finetuned/minilm/") for n in names)
    from modeling.ml.bundle import Bundle

    bundle = Bundle.load(io.BytesIO(data))
    text = project.items.order_by("id").first().text
    tuned = load_encoder("minilm_ngrams", finetuned=str(project.model_path / run.folder)).embed([text])
    from modeling.ml.head import Head

    head = Head.load(project.model_path / version.file)
    assert np.allclose(bundle.predict_proba([text]), head.predict_proba(tuned), atol=1e-5)


def test_it_starts_by_itself_when_train_has_grown_by_half(text_model, settings):
    project = text_model
    settings.LIGHTBULB_FINETUNE_AUTO = True
    train = ModelVersion.objects.filter(project=project).first().train_count
    settings.LIGHTBULB_FINETUNE_MIN_TRAIN = train + 1
    assert maybe_request_finetune(project) is None  # too few TRAIN labels
    settings.LIGHTBULB_FINETUNE_MIN_TRAIN = train
    first = maybe_request_finetune(project)
    assert first is not None and first.trigger == "auto"
    assert maybe_request_finetune(project) is None  # one at a time
    FineTuneRun.objects.filter(pk=first.pk).update(state=FineTuneState.DONE)
    assert maybe_request_finetune(project) is None  # TRAIN has not grown by half since


def test_cancel_stops_a_queued_or_running_run_and_removes_its_files(text_model, alice, monkeypatch):
    project = text_model
    run = do_request_finetune(project, user=alice)
    do_cancel_finetune(project, run=run)
    run.refresh_from_db()
    assert run.state == FineTuneState.CANCELLED
    assert finetune_run(run.pk).startswith("not queued")
    second = do_request_finetune(project, user=alice)
    # Cancelled while running: the task sees the flag at its next batch.
    monkeypatch.setattr("modeling.tasks.FINETUNE_HEARTBEAT_SECONDS", 0.0)
    real = ft.finetune_text

    def cancelled_midway(*args, **kwargs):
        FineTuneRun.objects.filter(pk=second.pk).update(cancel_requested=True)
        return real(*args, **kwargs)

    monkeypatch.setattr(ft, "finetune_text", cancelled_midway)
    assert finetune_run(second.pk) == "fine-tune 2 cancelled"
    second.refresh_from_db()
    assert second.state == FineTuneState.CANCELLED and second.reason == "cancelled by an owner"
    assert not (project.model_path / second.folder).exists()
    assert ModelState.objects.get(project=project).finetune_id is None


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_fine_tune_leaves_the_last_model_and_the_next_run_starts_clean(tmp_path, alice, settings):
    settings.LIGHTBULB_MODEL_IN_THE_LOOP = False
    project, truth = make_colour_project(tmp_path, n=24)
    from labeling.services import do_record_judgement

    for item in project.items.all():
        do_record_judgement(project, item=item, user=alice, label=truth[item.key])
    settings.LIGHTBULB_MODEL_IN_THE_LOOP = True
    embed_until_done(project.pk)
    train_project(project.pk)
    before = ModelState.objects.get(project=project).current_version_id
    settings.LIGHTBULB_MODEL_IN_THE_LOOP = False  # the request's own enqueue: the killed worker runs it instead
    run = do_request_finetune(project, user=alice)
    proc = _worker(f"from modeling.tasks import finetune_run\nprint(finetune_run({run.pk}))\n",
                   LIGHTBULB_FINETUNE_EPOCHS="200")
    try:
        assert _wait_for(lambda: FineTuneRun.objects.filter(pk=run.pk, epoch__gte=2).exists(), proc=proc,
                         timeout=300), proc.stdout.read()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    run.refresh_from_db()
    assert run.state == FineTuneState.RUNNING  # nobody said otherwise: the worker is simply gone
    assert recover_finetunes() == [f"fine-tune {project.slug} #1 failed (worker stopped)"]
    run.refresh_from_db()
    assert run.state == FineTuneState.FAILED and "worker stopped" in run.last_error
    assert not (project.model_path / run.folder).exists()
    state = ModelState.objects.get(project=project)
    assert state.current_version_id == before and state.finetune_id is None
    settings.LIGHTBULB_FINETUNE_EPOCHS = 1
    again = do_request_finetune(project, user=alice)
    assert again.number == 2 and finetune_run(again.pk).startswith("fine-tune 2: ")
    again.refresh_from_db()
    assert again.state == FineTuneState.DONE
    spec = store_for(project)[0]
    stale = EmbeddingStore(store_path(project, spec.__class__(**{**spec.__dict__, "version": run.encoder_version})),
                           spec.dim)
    assert not stale.path.exists()  # the killed run's vectors are gone too


def test_the_owner_controls_it_from_the_card_and_the_api(text_model, alice, bob, charlie, client):
    project = text_model
    do_add_member(project, user=bob, role=Role.ANNOTATOR)
    client.force_login(alice)
    card = client.get(f"/projects/{project.pk}/model/card/").content.decode()
    assert 'id="finetune-now"' in card and "In use: the pretrained encoder" in card
    response = client.post(f"/projects/{project.pk}/model/finetune/", follow=True)
    assert "Fine-tune 1 is queued" in response.content.decode()
    card = client.get(f"/projects/{project.pk}/model/card/").content.decode()
    assert 'id="finetune-live"' in card and "queued, waiting for the deep worker" in card
    client.post(f"/projects/{project.pk}/model/finetune/cancel/", {"run": "1"})
    assert FineTuneRun.objects.get(project=project, number=1).state == FineTuneState.CANCELLED
    client.force_login(bob)
    assert client.post(f"/projects/{project.pk}/model/finetune/").status_code == 403
    assert 'id="finetune-now"' not in client.get(f"/projects/{project.pk}/model/card/").content.decode()
    client.force_login(charlie)
    assert client.post(f"/projects/{project.pk}/model/finetune/").status_code == 404
    api = APIClient()
    api.force_authenticate(alice)
    created = api.post(f"/api/projects/{project.pk}/finetune/", format="json")
    assert created.status_code == 201 and created.json()["number"] == 2 and created.json()["state"] == "queued"
    listed = api.get(f"/api/projects/{project.pk}/finetune/").json()
    assert [r["number"] for r in listed["runs"]] == [2, 1] and listed["adopted"] is None
    assert api.post(f"/api/projects/{project.pk}/finetune/", format="json").status_code == 409
    cancelled = api.post(f"/api/projects/{project.pk}/finetune/cancel/", {"run": 2}, format="json")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert api.post(f"/api/projects/{project.pk}/finetune/cancel/", {"run": 2}, format="json").status_code == 409
    assert api.post(f"/api/projects/{project.pk}/finetune/cancel/", {"run": 99}, format="json").status_code == 404
    api.force_authenticate(bob)
    assert api.post(f"/api/projects/{project.pk}/finetune/", format="json").status_code == 403
    api.force_authenticate(charlie)
    assert api.get(f"/api/projects/{project.pk}/finetune/").status_code == 404


def test_a_run_whose_worker_is_gone_never_blocks_the_next_nor_comes_back(text_model, alice):
    import socket

    from modeling.tasks import LostRun

    project = text_model
    run = do_request_finetune(project, user=alice)
    # A worker that claimed it and died (its process no longer exists), with its weights half written.
    dead = f"{socket.gethostname()}:999999999:x"
    FineTuneRun.objects.filter(pk=run.pk).update(state=FineTuneState.RUNNING, claimed_by=dead)
    (project.model_path / run.folder).mkdir(parents=True)
    second = do_request_finetune(project, user=alice)  # not "already running": the dead one was failed first
    run.refresh_from_db()
    assert run.state == FineTuneState.FAILED and not (project.model_path / run.folder).exists()
    assert second.number == 2
    # Should the first worker still report, it can no longer settle (let alone be adopted).
    current = np.array([False] * 10)
    with pytest.raises(LostRun):
        settle_finetune(run, ft.compare(current, ~current), token="host:1:x")
    assert ModelState.objects.get(project=project).finetune_id is None
    # An owner's cancel of a silent run fails it at once (nobody would read the flag).
    FineTuneRun.objects.filter(pk=second.pk).update(state=FineTuneState.RUNNING, claimed_by="", heartbeat_at=None)
    second.refresh_from_db()
    assert do_cancel_finetune(project, run=second).state == FineTuneState.FAILED


def _adopt(project, alice, monkeypatch, *, on_commit):
    """A run taken through the real task up to its comparison, then settled as TEST would settle a better one
    (12 wins, none lost); its adoption's follow-up (forced training, embedding) runs at commit when `on_commit`
    (django_capture_on_commit_callbacks) is given."""
    monkeypatch.setattr(ft, "TEXT_MAX_PAIRS", 32)
    run = do_request_finetune(project, user=alice)
    captured = {}
    real_settle = settle_finetune

    def capture(run_, comparison, **kwargs):
        captured["kwargs"] = kwargs
        return "captured"

    monkeypatch.setattr("modeling.tasks.settle_finetune", capture)
    assert finetune_run(run.pk) == "captured"
    monkeypatch.setattr("modeling.tasks.settle_finetune", real_settle)
    current = np.array([True] * 80 + [False] * 20)
    candidate = current.copy()
    candidate[80:92] = True
    if on_commit is None:
        real_settle(FineTuneRun.objects.get(pk=run.pk), ft.compare(current, candidate), **captured["kwargs"])
    else:
        with on_commit(execute=True):
            real_settle(FineTuneRun.objects.get(pk=run.pk), ft.compare(current, candidate), **captured["kwargs"])
    run.refresh_from_db()
    assert run.decision == FineTuneDecision.ADOPTED
    return run


def test_an_owner_goes_back_to_the_pretrained_encoder_and_a_new_adoption_drops_the_old_vectors(
    text_model, alice, monkeypatch, django_capture_on_commit_callbacks
):
    project = text_model
    first = _adopt(project, alice, monkeypatch, on_commit=django_capture_on_commit_callbacks)
    state = ModelState.objects.select_related("current_version").get(project=project)
    assert state.finetune_id == first.pk and state.current_version.encoder_version == first.encoder_version
    first_vectors = store_path(project, run_spec(first))
    assert first_vectors.is_dir()

    # A second run adopted in its place: the first's vectors go (nobody reads them), its weights stay.
    second = _adopt(project, alice, monkeypatch, on_commit=django_capture_on_commit_callbacks)
    assert ModelState.objects.get(project=project).finetune_id == second.pk
    assert not first_vectors.exists() and (project.model_path / first.folder / "minilm").is_dir()
    card = ModelState.objects.get(project=project).current_version
    assert card.encoder_version == second.encoder_version

    # "Use the pretrained encoder": the run is set aside, its vectors go, a version is trained on the pretrained.
    with django_capture_on_commit_callbacks(execute=True):
        returned = do_use_pretrained(project, user=alice)
    assert returned.pk == second.pk
    second.refresh_from_db()
    state = ModelState.objects.select_related("current_version").get(project=project)
    assert state.finetune_id is None
    assert second.set_aside_at is not None and second.set_aside_by_id == alice.pk
    assert not store_path(project, run_spec(second)).exists()
    assert (project.model_path / second.folder / "minilm").is_dir()  # the versions trained on it still export
    pretrained = project_encoder(project).spec
    assert "+ft-" not in pretrained.version
    assert state.current_version.encoder_version == pretrained.version and state.current_version.number > card.number
    data = bundle_bytes(project, number=card.number)  # a version of the set-aside run: still whole
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert any(n.startswith("finetuned/minilm/") for n in archive.namelist())
    with pytest.raises(FineTuneError, match="already uses the pretrained encoder"):
        do_use_pretrained(project, user=alice)


def test_going_back_to_the_pretrained_encoder_is_for_owners_on_the_card_and_the_api(
    text_model, alice, bob, charlie, client, monkeypatch, django_capture_on_commit_callbacks
):
    from django.contrib.auth.models import User

    project = text_model
    dana = User.objects.create_user("dana", password="pw-dana-123456")
    do_add_member(project, user=bob, role=Role.ANNOTATOR)
    do_add_member(project, user=dana, role=Role.VIEWER)
    url, api_url = (f"/projects/{project.pk}/model/finetune/pretrained/",
                    f"/api/projects/{project.pk}/finetune/pretrained/")
    client.force_login(alice)
    assert 'id="finetune-pretrained"' not in client.get(f"/projects/{project.pk}/model/card/").content.decode()
    page = client.post(url, follow=True).content.decode()
    assert "already uses the pretrained encoder" in page
    run = _adopt(project, alice, monkeypatch, on_commit=django_capture_on_commit_callbacks)
    card = client.get(f"/projects/{project.pk}/model/card/").content.decode()
    assert 'id="finetune-pretrained"' in card and f"In use: <strong>fine-tune {run.number}" in card
    api = APIClient()
    for user, code in ((charlie, 404), (dana, 403), (bob, 403)):
        client.force_login(user)
        assert client.post(url).status_code == code
        assert 'id="finetune-pretrained"' not in (client.get(f"/projects/{project.pk}/model/card/").content.decode()
                                                  if code == 403 else "")
        api.force_authenticate(user)
        response = api.post(api_url, format="json")
        assert response.status_code == code and response["Content-Type"] == "application/json"
        assert ModelState.objects.get(project=project).finetune_id == run.pk  # refused: nothing changed
    assert api.post("/api/projects/999999/finetune/pretrained/", format="json").status_code == 404
    api.force_authenticate(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(api_url, format="json")
    assert response.status_code == 200 and response.json()["number"] == run.number
    assert response.json()["set_aside_at"] is not None
    assert ModelState.objects.get(project=project).finetune_id is None
    again = api.post(api_url, format="json")
    assert again.status_code == 409 and "pretrained" in again.json()["detail"]
    client.force_login(alice)
    card = client.get(f"/projects/{project.pk}/model/card/").content.decode()
    assert "In use: the pretrained encoder" in card and "set aside" in card and 'id="finetune-pretrained"' not in card
