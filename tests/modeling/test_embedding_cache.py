"""The embedding cache: every item embedded once, stored atomically, reused, extended incrementally."""

from __future__ import annotations

import numpy as np
import pytest

from modeling.ml.embeddings import MATRIX, store_for
from modeling.ml.encoders import load_encoder
from modeling.models import EmbeddingJob
from modeling.tasks import embed_project
from projects.models import Item, ItemStatus
from projects.services import do_ingest_directory
from tests.conftest import write_images
from tests.modeling.conftest import make_colour_project, make_text_project

pytestmark = pytest.mark.django_db


def test_it_embeds_every_text_once_on_import_and_reuses_the_cache(tmp_path, alice, loop_on,
                                                                   django_capture_on_commit_callbacks):
    # Importing enqueues the embedding task (run synchronously here, as the worker would).
    with django_capture_on_commit_callbacks(execute=True):
        project, _ = make_text_project(tmp_path, n=30)
    _, store = store_for(project)
    matrix = store.path / MATRIX
    assert matrix.exists() and not list(store.path.glob("chunk-*.npz"))

    job = EmbeddingJob.objects.get(project=project)
    job.refresh_from_db()
    assert (job.total, job.embedded, job.failed, job.complete) == (30, 30, 0, True)
    assert job.claimed_by == "" and job.finished_at is not None

    embeddings = store.load()
    ids = sorted(project.items.values_list("id", flat=True))
    assert embeddings.ids.tolist() == ids
    # The cached vectors are the encoder's own (float16 storage: within rounding).
    items = list(project.items.order_by("id")[:3])
    fresh = load_encoder("minilm_ngrams").embed([i.text for i in items])
    np.testing.assert_allclose(embeddings.vectors[:3], fresh, atol=2e-3)

    # A second run finds nothing to do and leaves the file alone.
    before = matrix.stat().st_mtime_ns
    assert embed_project(project.pk) == "up to date"
    assert matrix.stat().st_mtime_ns == before


def test_it_embeds_only_new_items_after_a_rescan(tmp_path, alice, loop_on, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        project, _ = make_colour_project(tmp_path, n=6)
    _, store = store_for(project)
    first = store.load()
    assert len(first.ids) == 6

    write_images(tmp_path / "colours", 3, prefix="green", color=(30, 200, 40))
    with django_capture_on_commit_callbacks(execute=True):
        result = do_ingest_directory(project)
    assert result.items_added == 3

    second = store.load()
    assert len(second.ids) == 9
    # The six old vectors were kept as they were, not recomputed.
    pos, found = second.rows_for(first.ids)
    assert found.all()
    np.testing.assert_array_equal(second.vectors[pos], first.vectors)
    job = EmbeddingJob.objects.get(project=project)
    assert (job.total, job.embedded) == (9, 9)


def test_it_records_files_that_vanished_and_goes_on(tmp_path, alice, loop_on, django_capture_on_commit_callbacks):
    project, _ = make_colour_project(tmp_path, n=6)
    gone = Item.objects.filter(project=project).order_by("id").first()
    project.item_file_path(gone).unlink()
    result = embed_project(project.pk)
    assert "failed 1" in result
    job = EmbeddingJob.objects.get(project=project)
    assert (job.embedded, job.failed, job.complete) == (5, 1, True)
    embeddings = store_for(project)[1].load()
    assert gone.pk in embeddings.failed.tolist() and gone.pk not in embeddings.ids.tolist()
    # Rejected files are never embedded at all.
    assert not Item.objects.filter(project=project, status=ItemStatus.REJECTED).exists()


def test_it_does_nothing_while_the_loop_is_off(tmp_path, alice, settings, django_capture_on_commit_callbacks):
    settings.LIGHTBULB_MODEL_IN_THE_LOOP = False
    with django_capture_on_commit_callbacks(execute=True):
        project, _ = make_text_project(tmp_path, n=4)
    assert not EmbeddingJob.objects.filter(project=project).exists()


def test_a_project_can_name_its_encoder_and_unknown_names_are_clear_errors(tmp_path, alice):
    from interchange.config import ConfigError, load_config

    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a.txt").write_text("hello", encoding="utf-8")
    base = "task: {title: T}\ndataset: {directory: t, data_type: text}\nlabel: {type: binary}\nuser: alice\n"
    cfg = tmp_path / "ok.yml"
    cfg.write_text(base + "model: {directory: out, encoder: minilm_l6}\n", encoding="utf-8")
    assert load_config(cfg).encoder == "minilm_l6"
    bad = tmp_path / "bad.yml"
    bad.write_text(base + "model: {directory: out, encoder: resnet9000}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="model.encoder: unknown encoder 'resnet9000'"):
        load_config(bad)
    wrong = tmp_path / "wrong.yml"
    wrong.write_text(base + "model: {directory: out, encoder: mobilenet_v2}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="embeds images, not text"):
        load_config(wrong)


def test_the_admin_refuses_an_unknown_or_mismatched_encoder(image_project, admin_client):
    url = f"/admin/projects/project/{image_project.pk}/change/"
    form = admin_client.get(url).context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and not isinstance(v, (list, dict))}
    data |= {"classes": '["Cat", "Not Cat"]', "dataset_options": "{}", "model_options": "{}",
             "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0"}
    for encoder, message in [("resnet9000", "unknown encoder"), ("minilm_l6", "embeds json, text, not images")]:
        response = admin_client.post(url, data | {"encoder": encoder})
        assert response.status_code == 200
        assert message in response.content.decode()
    image_project.refresh_from_db()
    assert image_project.encoder == "" and image_project.encoder_name == "mobilenet_lite0"
