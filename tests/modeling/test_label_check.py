"""Checking a team's labels with the model: out-of-fold probabilities, top losses, confident learning's
label-error candidates, found on a real project by the real worker task, and the actions in place (relabel,
keep as is, exclude) for every role that may or may not take them."""

from __future__ import annotations

import numpy as np
import pytest
from rest_framework.test import APIClient

from labeling.models import Judgement, JudgementSource, Stage
from modeling.label_check import open_findings
from modeling.ml.label_errors import (
    calibrate_joint,
    confident_joint,
    label_error_candidates,
    out_of_fold_probs,
    top_losses,
)
from modeling.models import LabelCheck, LabelCheckKept
from modeling.services import training_data
from modeling.tasks import check_labels, train_project
from projects.models import ItemStatus, Role
from projects.services import do_add_member
from tests.modeling.conftest import WRONG, make_checked_project

pytestmark = pytest.mark.django_db

def test_it_scores_each_label_with_a_head_that_never_saw_it():
    # One far-away item labelled B among A's: a head fitted with it would give it B; out of fold it cannot.
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (40, 5)), rng.normal(6, 1, (40, 5)), [[0.2, 0.1, 0, 0, 0]]])
    y = np.array([0] * 40 + [1] * 40 + [1])
    probs = out_of_fold_probs(x, y, 2, l2=1e-3)
    assert probs.shape == (81, 2) and np.allclose(probs.sum(axis=1), 1)
    assert probs[80, 1] < 0.05  # its own label is what the fitted-without-it model doubts most
    assert probs[:40, 0].mean() > 0.9 and probs[40:80, 1].mean() > 0.9
    assert top_losses(probs, y, limit=1)[0].row == 80


def test_it_finds_planted_label_errors_by_confident_learning():
    rng = np.random.default_rng(1)
    n, k = 300, 3
    truth = rng.integers(0, k, n)
    # A model that is mostly right and sure, sometimes confused between classes 0 and 1.
    probs = np.full((n, k), 0.05)
    probs[np.arange(n), truth] = 0.9
    confused = rng.choice(n, 30, replace=False)
    probs[confused] = [0.45, 0.45, 0.1]
    probs /= probs.sum(axis=1, keepdims=True)
    given = truth.copy()
    planted = rng.choice(np.setdiff1d(np.arange(n), confused), 15, replace=False)
    given[planted] = (truth[planted] + 1) % k
    joint, confident = confident_joint(probs, given, k)
    assert joint.sum() == (confident >= 0).sum() and np.diag(joint).sum() > 250
    calibrated = calibrate_joint(joint, given, k)
    assert np.allclose(calibrated.sum(axis=1), np.bincount(given, minlength=k))
    found = label_error_candidates(probs, given, k)
    rows = [f.row for f in found]
    assert set(planted) <= set(rows[: 2 * len(planted)])  # every planted error in the top 2x
    assert all(f.suggested == truth[f.row] for f in found if f.row in set(planted))
    assert [f.p_given for f in found] == sorted(f.p_given for f in found)  # least likely first
    assert not set(rows) & set(np.flatnonzero(probs.argmax(axis=1) == given))  # the model agrees: no issue


@pytest.fixture
def checked(tmp_path, alice, settings):
    return make_checked_project(tmp_path, alice, settings)


def test_it_finds_the_wrong_labels_of_a_real_project(checked):
    project, truth, wrong = checked
    check = LabelCheck.objects.get(project=project)
    assert (check.version, check.labels, check.judgement_revision) == (1, 44, project.judgement_revision)
    flagged = {f["item"] for f in check.candidates}
    assert set(wrong) <= flagged and len(flagged) <= 2 * WRONG
    for f in check.candidates:
        if f["item"] in wrong:
            assert f["given"] == wrong[f["item"]] and f["suggested"] != f["given"] and f["p_given"] < 0.5
    assert {f["item"] for f in check.top_losses[:WRONG * 2]} >= set(wrong)
    losses = [f["loss"] for f in check.top_losses]
    assert losses == sorted(losses, reverse=True) and len(check.top_losses) == 44
    stages = {f["stage"] for f in check.top_losses}
    assert stages == {Stage.TRAIN, Stage.TEST}  # every human label is checked, TEST too


def _ids(page: str, project) -> set[int]:
    import re

    return {int(x) for x in re.findall(r'id="finding-(\d+)"', page)}


def test_an_owner_relabels_keeps_and_excludes_in_place_and_the_check_remembers(checked, client, alice, bob):
    project, truth, wrong = checked
    client.force_login(alice)
    page = client.get(f"/projects/{project.pk}/model/labels/").content.decode()
    assert set(wrong) <= _ids(page, project)
    first, second, third = list(wrong)[:3]

    # Relabel: a new judgement, the old one kept in the history.
    old = Judgement.objects.get(item_id=first, is_current=True)
    right = truth[old.item.key]
    response = client.post(f"/projects/{project.pk}/model/labels/{first}/relabel/",
                           {"label": right, "show": "candidates"})
    assert response.status_code == 302 and response["Location"].endswith("/model/labels/?show=candidates")
    old.refresh_from_db()
    new = Judgement.objects.get(item_id=first, is_current=True)
    assert (new.label, new.stage, new.labelled_by, old.is_current) == (right, old.stage, "alice", False)
    assert new.source == JudgementSource.HUMAN  # alice's own label: no adjudication needed

    # Keep as is: remembered, not shown again.
    client.post(f"/projects/{project.pk}/model/labels/{second}/keep/")
    kept = LabelCheckKept.objects.get(item_id=second)
    assert kept.judgement == Judgement.objects.get(item_id=second, is_current=True) and kept.kept_by == "alice"

    # Exclude: out of the project, its label no longer counts.
    client.post(f"/projects/{project.pk}/model/labels/{third}/exclude/", {"reason": "unreadable"})
    item = project.items.get(pk=third)
    assert item.status == ItemStatus.REJECTED and item.rejection_reason == "excluded by alice: unreadable"
    assert not Judgement.objects.filter(item=item, is_current=True).exists()
    assert Judgement.objects.filter(item=item).count() == 1  # in the history
    data = training_data(project)
    assert third not in {i for i, _ in data.train + data.test}

    page = client.get(f"/projects/{project.pk}/model/labels/").content.decode()
    shown = _ids(page, project)
    assert not {first, second, third} & shown and (set(wrong) - {first, second, third}) <= shown
    # The labels changed: the page says a new check runs, and one is queued (once, however often it is asked) ...
    assert "a new check is running" in page
    assert LabelCheck.objects.get(project=project).queued_at is not None
    train_project(project.pk)
    assert check_labels(project.pk).startswith("checked 43 labels with v2")  # the excluded item is out
    check = LabelCheck.objects.get(project=project)
    assert check.judgement_revision == project.__class__.objects.get(pk=project.pk).judgement_revision
    assert check.queued_at is None
    # ... and what was kept stays kept in it, whatever the model now says.
    assert second not in {f.item.pk for f in open_findings(project, check, show="candidates")}


def test_a_reviewer_changes_someone_elses_label_as_an_adjudication(checked, client, django_user_model):
    project, truth, wrong = checked
    rita = django_user_model.objects.create_user("rita", password="x")
    do_add_member(project, user=rita, role=Role.REVIEWER)
    client.force_login(rita)
    item_id = next(iter(wrong))
    label = truth[project.items.get(pk=item_id).key]
    client.post(f"/projects/{project.pk}/model/labels/{item_id}/relabel/", {"label": label})
    new = Judgement.objects.get(item_id=item_id, is_current=True)
    assert (new.label, new.source, new.labelled_by) == (label, JudgementSource.ADJUDICATED, "rita")
    assert new.reason.startswith("label check")
    # Reviewers may not exclude.
    assert client.post(f"/projects/{project.pk}/model/labels/{item_id}/exclude/").status_code == 403


def test_the_confusion_cells_open_their_test_items_for_reviewers_only(checked, client, bob):
    project, truth, wrong = checked
    do_add_member(project, user=bob, role=Role.ANNOTATOR)
    client.force_login(project.memberships.get(role=Role.OWNER).user)
    card = client.get(f"/projects/{project.pk}/model/card/").content.decode()
    assert f"/projects/{project.pk}/model/labels/?actual=sport&amp;predicted=food" in card or (
        f"/projects/{project.pk}/model/labels/?actual=food&amp;predicted=sport" in card
    )
    from modeling.models import ItemPrediction, ModelState

    version = ModelState.objects.get(project=project).current_version
    expected = {
        j.item_id for j in Judgement.objects.filter(project=project, is_current=True, stage=Stage.TEST, label="food")
        if ItemPrediction.objects.get(item_id=j.item_id).label == "sport"
    }
    assert version.metrics["confusion"]  # the card's cell counts come from the version
    page = client.get(f"/projects/{project.pk}/model/labels/?actual=food&predicted=sport").content.decode()
    assert _ids(page, project) == expected
    client.force_login(bob)
    card = client.get(f"/projects/{project.pk}/model/card/").content.decode()
    assert "/model/labels/" not in card  # TEST labels are blind below reviewer
    assert client.get(f"/projects/{project.pk}/model/labels/?actual=food&predicted=sport").status_code == 403


def test_the_api_lists_keeps_and_excludes(checked, alice, bob, charlie):
    project, truth, wrong = checked
    do_add_member(project, user=bob, role=Role.ANNOTATOR)
    api = APIClient()
    api.force_authenticate(alice)
    body = api.get(f"/api/projects/{project.pk}/label-check/").json()
    assert body["version"] == 1 and body["labels"] == 44 and not body["stale"]
    assert set(wrong) <= {f["item"] for f in body["findings"]}
    losses = api.get(f"/api/projects/{project.pk}/label-check/?show=losses").json()["findings"]
    assert len(losses) == 44
    assert api.get(f"/api/projects/{project.pk}/label-check/?actual=nope&predicted=food").status_code == 400
    item_id = next(iter(wrong))
    assert api.post(f"/api/projects/{project.pk}/label-check/keep/", {"item": item_id}, format="json").json() == {
        "item": item_id, "status": "kept"}
    assert item_id not in {f["item"] for f in api.get(f"/api/projects/{project.pk}/label-check/").json()["findings"]}
    other = list(wrong)[1]
    response = api.post(f"/api/projects/{project.pk}/label-check/exclude/", {"item": other}, format="json")
    assert response.json() == {"item": other, "status": "excluded"}
    again = api.post(f"/api/projects/{project.pk}/label-check/exclude/", {"item": other}, format="json")
    assert again.status_code == 400 and "already out of the project" in again.json()["detail"]
    # Another project's item, or none: the same 404.
    missing = api.post(f"/api/projects/{project.pk}/label-check/keep/", {"item": 10**9}, format="json")
    assert missing.status_code == 404
    # Outsiders: 404, the same as for a project that does not exist; annotators 403.
    api.force_authenticate(charlie)
    assert api.get(f"/api/projects/{project.pk}/label-check/").status_code == 404
    assert api.get("/api/projects/999999/label-check/").status_code == 404
    keep = api.post(f"/api/projects/{project.pk}/label-check/keep/", {"item": item_id}, format="json")
    assert keep.status_code == 404
    api.force_authenticate(bob)
    assert api.get(f"/api/projects/{project.pk}/label-check/").status_code == 403
    assert api.post(f"/api/projects/{project.pk}/label-check/exclude/", {"item": item_id},
                    format="json").status_code == 403
