"""The exported model: one self-contained file, loadable without Django, scoring like the server."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from modeling.ml.bundle import Bundle, BundleError
from modeling.ml.embeddings import text_of
from modeling.ml.encoders import load_encoder
from modeling.ml.head import Head
from modeling.models import ModelState
from projects.models import Role
from projects.services import do_add_member
from tests.modeling.conftest import make_proposing_project

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def trained(tmp_path, alice, settings):
    project, truth = make_proposing_project(tmp_path, alice, settings, n=200, test=60, train=30)
    return project, truth


def test_export_model_writes_a_bundle_that_scores_exactly_like_the_server(trained, tmp_path):
    project, truth = trained
    version = ModelState.objects.get(project=project).current_version
    out = tmp_path / "topics.lbmodel"
    call_command("export_model", project.slug, str(out))
    with zipfile.ZipFile(out) as archive:
        assert sorted(archive.namelist()) == ["bundle.json", "head.npz"]
    bundle = Bundle.load(out)
    meta = bundle.meta
    assert meta["format"] == "lightbulb-bundle/1" and meta["classes"] == ["sport", "food"]
    assert meta["model_version"] == version.number and meta["project"]["slug"] == project.slug
    assert meta["encoder"]["name"] == "minilm_ngrams"
    assert meta["encoder"]["version"] == "all-minilm-l6-v2+hashed-w1-2-c3-5-1024x2-logtf"
    assert "then text_ngrams (2048-d), concatenated: 2432-d" in meta["encoder"]["preprocessing"]
    assert meta["calibration"]["temperature"] == pytest.approx(version.temperature)
    assert meta["metrics"]["accuracy"] == version.accuracy
    assert set(meta["thresholds"]["per_class"]) == {"sport", "food"}

    # The server's arithmetic: the same encoder code, the stored head.
    items = list(project.items.order_by("id")[:12])
    texts = [text_of(i) for i in items]
    head = Head.load(project.model_path / version.file)
    server = head.predict_proba(load_encoder("minilm_ngrams").embed(texts))
    exported = bundle.predict_proba(texts)
    assert np.array_equal(exported, server)
    assert np.allclose(exported.sum(axis=1), 1.0, atol=1e-6)
    assert bundle.predict(texts) == [bundle.classes[i] for i in server.argmax(axis=1)]
    assert np.mean([p == truth[i.key] for p, i in zip(bundle.predict(texts), items, strict=True)]) >= 0.8


def test_the_loader_runs_without_django(trained, tmp_path):
    project, _ = trained
    out = tmp_path / "m.lbmodel"
    call_command("export_model", str(project.pk), str(out))
    script = (
        "import sys; from modeling.ml.bundle import Bundle; b = Bundle.load(sys.argv[1]);"
        "print(b.predict(['The striker scored a goal', 'Bake the bread for an hour']));"
        "print('django.conf' in sys.modules)"
    )
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["['sport', 'food']", "False"]


def test_bad_files_and_missing_models_get_clear_errors(tmp_path, alice, settings):
    (tmp_path / "junk.lbmodel").write_bytes(b"not a zip")
    with pytest.raises(BundleError, match="not a Light Bulb model bundle"):
        Bundle.load(tmp_path / "junk.lbmodel")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("bundle.json", '{"format": "something-else/9"}')
        archive.writestr("head.npz", b"")
    with pytest.raises(BundleError, match="unsupported bundle format"):
        Bundle.load(io.BytesIO(buffer.getvalue()))
    from tests.modeling.conftest import make_text_project

    project, _ = make_text_project(tmp_path / "p", n=4)
    with pytest.raises(CommandError, match="no model version"):
        call_command("export_model", project.slug, str(tmp_path / "x.lbmodel"))
    with pytest.raises(CommandError, match="no project"):
        call_command("export_model", "nope", str(tmp_path / "x.lbmodel"))
    assert not (tmp_path / "x.lbmodel").exists()


def test_owners_download_the_model_others_cannot(trained, client, bob, charlie):
    project, _ = trained
    do_add_member(project, user=bob, role=Role.ANNOTATOR)
    client.force_login(project.memberships.get(role=Role.OWNER).user)
    page = client.get(f"/projects/{project.pk}/").content.decode()
    assert 'id="export-model"' in page
    response = client.get(f"/projects/{project.pk}/model/export/")
    assert response.status_code == 200 and response["Content-Disposition"].endswith('.lbmodel"')
    assert response.streaming  # written to a temporary file and streamed from it, not built in memory
    bundle = Bundle.load(io.BytesIO(b"".join(response.streaming_content)))
    assert bundle.classes == ["sport", "food"]
    client.force_login(bob)
    assert client.get(f"/projects/{project.pk}/model/export/").status_code == 403
    assert 'id="export-model"' not in client.get(f"/projects/{project.pk}/").content.decode()
    client.force_login(charlie)
    assert client.get(f"/projects/{project.pk}/model/export/").status_code == 404
