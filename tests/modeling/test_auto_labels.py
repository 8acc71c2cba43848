"""Auto-labels: the owner's "label the rest automatically", from the real loop (embed, train, prove on TEST),
through the page, the API and the admin; what they never do (train, enter TEST, reach the judgements file);
withdrawal; and the guarantee itself by repeated simulation."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from interchange.judgements_file import do_import_judgement_rows, read_judgement_rows, sync_judgements_file
from labeling.models import AutoLabelRun, Judgement, JudgementSource, Proposal, ProposalStatus, Stage
from labeling.services import do_record_judgement, stage_counts
from modeling.autolabels import auto_label_plan, do_auto_label, picks_above
from modeling.ml.thresholds import choose_thresholds
from modeling.models import ItemPrediction, ModelState
from modeling.services import training_data
from modeling.tasks import train_project
from projects.models import Item, ItemStatus, Project, Role
from projects.services import do_add_member
from tests.browser import login
from tests.modeling.conftest import make_proposing_project

pytestmark = pytest.mark.django_db


def _expected_picks(project) -> dict[int, tuple[str, float]]:
    version = ModelState.objects.get(project=project).current_version
    rows = ItemPrediction.objects.filter(
        project=project, version=version.number, item__status=ItemStatus.UNLABELLED
    ).values_list("item_id", "label", "confidence")
    return picks_above(version.thresholds, rows)


def test_it_auto_labels_exactly_what_test_proves_and_nothing_trains_on_it(tmp_path, alice, settings, client):
    project, truth = make_proposing_project(tmp_path, alice, settings)
    plan = auto_label_plan(project)
    assert plan["ready"] and plan["reason"] == "" and plan["target"] == pytest.approx(0.95)
    expected = _expected_picks(project)
    assert plan["items"] == len(expected) > 50
    before = training_data(project)
    counts_before = stage_counts(project)
    revision = Project.objects.get(pk=project.pk).judgement_revision
    pending_on_picked = set(
        Proposal.objects.filter(item_id__in=list(expected), status=ProposalStatus.PENDING).values_list("pk", flat=True)
    )

    client.force_login(alice)
    response = client.post(f"/projects/{project.pk}/model/auto-label/", follow=True)
    page = response.content.decode()
    assert f"Model v1 auto-labelled {len(expected):,} item(s) at 95.0% proven precision" in page
    assert f"<strong>{len(expected):,}</strong> item(s) are auto-labelled now: nobody saw them." in page

    run = AutoLabelRun.objects.get(project=project)
    assert (run.version, run.labelled, run.skipped, run.created_by) == (1, len(expected), 0, alice)
    proof = run.proof["per_class"]
    assert all(proof[c]["lower_bound"] >= 0.95 and proof[c]["labelled"] > 0 for c in ("sport", "food"))
    autos = Judgement.objects.filter(project=project, source=JudgementSource.AUTO).select_related("item")
    assert {j.item_id: j.label for j in autos} == {i: label for i, (label, _) in expected.items()}
    for j in autos:
        assert (j.stage, j.user, j.labelled_by, j.auto_run_id, j.is_current) == (
            Stage.AUTO, None, "model v1", run.pk, True
        )
        assert j.confidence == pytest.approx(expected[j.item_id][1])
        assert j.confidence >= ModelState.objects.get(project=project).current_version.thresholds[j.label]["threshold"]
    assert sum(truth[j.item.key] == j.label for j in autos) / autos.count() >= 0.95  # the real labels
    assert Item.objects.filter(pk__in=list(expected), status=ItemStatus.LABELLED).count() == len(expected)
    assert not Proposal.objects.filter(pk__in=pending_on_picked, status=ProposalStatus.PENDING).exists()

    # Never trained on, never in TEST, no new revision (nothing the model or the judgements file reads changed).
    assert training_data(project) == before
    assert stage_counts(project) == counts_before
    assert Project.objects.get(pk=project.pk).judgement_revision == revision
    # A new version (a person relabels one of their items) trains on people's labels only.
    mine = Judgement.objects.filter(project=project, stage=Stage.TRAIN, is_current=True).select_related("item").first()
    do_record_judgement(project, item=mine.item, user=alice, label=mine.label)
    train_project(project.pk)
    newest = ModelState.objects.get(project=project).current_version
    assert (newest.number, newest.train_count, newest.test_count) == (2, len(before.train), len(before.test))

    # The API says which labels nobody saw.
    api = APIClient()
    api.force_authenticate(alice)
    stats = api.get(f"/api/projects/{project.pk}/stats/").json()["labelled"]
    assert stats["auto"] == len(expected) and stats["seen_by_a_person"] == stats["total"] - len(expected)
    listed = api.get(f"/api/projects/{project.pk}/judgements/", {"source": "auto", "current": "true"}).json()
    assert listed["count"] == len(expected)
    row = listed["results"][0]
    assert (row["seen_by_a_person"], row["model_version"], row["stage"], row["user"]) == (False, 1, "AUTO", "model v1")


def test_a_person_can_relabel_an_auto_label_and_withdrawal_puts_the_rest_back(tmp_path, alice, settings):
    project, truth = make_proposing_project(tmp_path, alice, settings)
    run = do_auto_label(project, user=alice)
    autos = list(Judgement.objects.filter(auto_run=run).select_related("item").order_by("id"))
    checked = autos[0]
    # A person looks at an auto-labelled item and gives it a label: a human TRAIN label (never TEST: the
    # model picked the item by its confidence), and the auto-label becomes history.
    mine = do_record_judgement(project, item=checked.item, user=alice, label=truth[checked.item.key])
    assert (mine.stage, mine.source) == (Stage.TRAIN, JudgementSource.HUMAN)

    api = APIClient()
    api.force_authenticate(alice)
    response = api.post(f"/api/projects/{project.pk}/auto-labels/withdraw/", {"version": 1}, format="json")
    assert response.status_code == 200 and response.json() == {"version": 1, "withdrawn": len(autos) - 1}
    run.refresh_from_db()
    assert run.withdrawn_at is not None and run.withdrawn_by == alice and run.withdrawn == len(autos) - 1
    others = [j.item_id for j in autos[1:]]
    assert Item.objects.filter(pk__in=others, status=ItemStatus.UNLABELLED).count() == len(others)
    assert not Judgement.objects.filter(auto_run=run, is_current=True).exists()
    assert Judgement.objects.filter(auto_run=run, undone_at__isnull=False).count() == len(autos)  # kept, undone
    current = Judgement.objects.get(item=checked.item, is_current=True)
    assert current.pk == mine.pk  # the person's label stays
    # Nothing left to withdraw: a JSON 409 that says so, and nothing changes.
    again = api.post(f"/api/projects/{project.pk}/auto-labels/withdraw/", {"version": 1}, format="json")
    assert again.status_code == 409 and again.json() == {"detail": "model version 1 has no auto-labels to withdraw"}
    bad = api.post(f"/api/projects/{project.pk}/auto-labels/withdraw/", {"version": "x"}, format="json")
    assert bad.status_code == 400 and "version" in bad.json()


def test_it_refuses_with_the_reason_when_nothing_is_proven_or_the_proof_is_stale(tmp_path, alice, bob, settings):
    # At the 99% default, 130 TEST items cannot prove anything (299 flawless ones per class are needed).
    project, _ = make_proposing_project(tmp_path, alice, settings, auto_label_precision=0.99)
    plan = auto_label_plan(project)
    assert not plan["ready"] and "TEST does not prove 99.0% precision for any class yet" in plan["reason"]
    assert "needs 299 TEST items predicted" in plan["reason"]
    api = APIClient()
    api.force_authenticate(alice)
    response = api.post(f"/api/projects/{project.pk}/auto-labels/")
    assert response.status_code == 409 and response.json()["detail"] == plan["reason"]
    assert not Judgement.objects.filter(source=JudgementSource.AUTO).exists() and not AutoLabelRun.objects.exists()

    # The owner lowers the precision, but the worker has not re-proven yet: the old proof is not used.
    Project.objects.filter(pk=project.pk).update(auto_label_precision=0.95)
    response = api.post(f"/api/projects/{project.pk}/auto-labels/")
    assert response.status_code == 409 and "being recomputed" in response.json()["detail"]
    assert not AutoLabelRun.objects.exists()

    # Members below owner may look at the plan but not act; outsiders get the same 404 as for no project.
    do_add_member(project, user=bob, role=Role.ANNOTATOR)
    api.force_authenticate(bob)
    assert api.get(f"/api/projects/{project.pk}/auto-labels/").status_code == 200
    assert api.post(f"/api/projects/{project.pk}/auto-labels/").status_code == 403
    outsider = APIClient()
    outsider.force_authenticate(type(alice).objects.create_user("mallory"))
    for url in (f"/api/projects/{project.pk}/auto-labels/", "/api/projects/999999/auto-labels/"):
        assert outsider.get(url).json() == {"detail": "No such project"}
        assert outsider.post(url).status_code == 404


def test_exports_mark_auto_labels_and_the_judgements_file_and_imports_leave_them_out(tmp_path, alice, settings):
    project, _ = make_proposing_project(tmp_path, alice, settings)
    run = do_auto_label(project, user=alice)
    humans = Judgement.objects.filter(project=project, is_current=True).exclude(source=JudgementSource.AUTO).count()

    out = io.StringIO()
    call_command("export_judgements", project.slug, "--format", "csv", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "path,label,labelled_by,stage,time_taken,source"
    assert sum(line.endswith(",AUTO,,auto") and ",model v1," in line for line in lines) == run.labelled
    assert len(lines) == 1 + humans + run.labelled
    out = io.StringIO()
    call_command("export_judgements", project.slug, "--format", "csv", "--no-auto", stdout=out)
    assert len(out.getvalue().splitlines()) == 1 + humans and ",auto" not in out.getvalue()
    out = io.StringIO()
    call_command("export_judgements", project.slug, "--format", "jsonl", stdout=out)
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    auto_rows = [r for r in rows if r["source"] == "auto"]
    assert len(auto_rows) == run.labelled
    assert all(r["seen_by_a_person"] is False and r["model_version"] == 1 and r["confidence"] > 0.5 for r in auto_rows)
    assert all(r["seen_by_a_person"] for r in rows if r["source"] != "auto")

    # The synced judgements file is what people labelled: a re-import must never train on auto-labels.
    Project.objects.filter(pk=project.pk).update(judgements_file=str(tmp_path / "labels.csv"))
    project.refresh_from_db()
    assert sync_judgements_file(project) == humans
    assert ",auto" not in Path(project.judgements_file).read_text()
    # A file that holds them anyway (an export) imports the people's rows and says why it skips the others.
    exported = tmp_path / "export.csv"
    call_command("export_judgements", project.slug, "--format", "csv", "-o", str(exported), stderr=io.StringIO())
    before = Judgement.objects.filter(project=project).count()
    imported, problems = do_import_judgement_rows(project, rows=read_judgement_rows(exported), config_dir=tmp_path)
    assert imported == 0  # every human row was already there (the database wins)
    skipped = [p for p in problems if "an auto-label (the model's, nobody saw it) is not imported" in p]
    assert len(skipped) == run.labelled == len(problems)
    assert Judgement.objects.filter(project=project).count() == before


def _three_class(rng: np.random.Generator, n: int, *, sharpness: float):
    """A calibrated 3-class model: confidence s of the predicted class, right with probability s."""
    predicted = rng.integers(0, 3, n)
    s = 1 / 3 + (2 / 3) * rng.beta(sharpness, 1.0, n)
    correct = rng.random(n) < s
    y = np.where(correct, predicted, (predicted + rng.integers(1, 3, n)) % 3)
    probs = np.full((n, 3), 0.0)
    probs[np.arange(n), predicted] = s
    for k in (1, 2):
        probs[np.arange(n), (predicted + k) % 3] = (1 - s) / 2
    return probs, y


@pytest.mark.parametrize("guarantee", ["each_class", "all_proposals"])
def test_auto_labels_keep_the_precision_promise_in_repeated_simulation(guarantee):
    """What the action labels (`picks_above` over the thresholds TEST proved at the 99% default) is at least
    99% precise in at least 95% of repeated draws, per class: the proof's promise, not a measured rate."""
    classes = ["a", "b", "c"]
    seeds, broken, promises, labelled_runs = 150, 0, 0, 0
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        probs, y = _three_class(rng, 3000, sharpness=60.0)
        proven, note = choose_thresholds(classes, probs, y, target=0.99, guarantee=guarantee)
        assert note == ""
        thresholds = {label: t.as_dict() for label, t in proven.items()}
        pool_probs, pool_y = _three_class(rng, 30_000, sharpness=60.0)
        predicted = pool_probs.argmax(axis=1)
        rows = [(i, classes[int(k)], float(pool_probs[i, k])) for i, k in enumerate(predicted)]
        picks = picks_above(thresholds, rows)
        if not picks:
            continue
        labelled_runs += 1
        right = sum(classes[int(pool_y[i])] == label for i, (label, _) in picks.items())
        if guarantee == "each_class":  # one promise per class that labels anything
            per_class: dict[str, tuple[int, int]] = {}
            for i, (label, _) in picks.items():
                ok, n = per_class.get(label, (0, 0))
                per_class[label] = (ok + (classes[int(pool_y[i])] == label), n + 1)
            promises += len(per_class)
            broken += sum(ok / n < 0.99 for ok, n in per_class.values())
        else:  # one promise for everything labelled
            promises += 1
            broken += right / len(picks) < 0.99
    assert broken / promises <= 0.05
    # Not vacuous: with 3,000 TEST items the action labels in most runs, and the promise is tight (measured:
    # labels in 82% / 93% of runs, 1.6% / 1.1% of promises broken, the worst at 98.9%).
    assert labelled_runs / seeds >= 0.75


def test_in_the_browser_the_owner_auto_labels_from_the_model_card_and_withdraws(page, live_server, tmp_path, alice,
                                                                               settings):
    project, _ = make_proposing_project(tmp_path, alice, settings)
    expected = len(_expected_picks(project))
    login(page, live_server, "alice", "alice-pass-123")
    page.wait_for_url(f"{live_server.url}/projects/")
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    plan = page.inner_text("#auto-label-plan")
    assert f"Model v1 can auto-label {expected:,} unlabelled item(s) now" in plan
    assert "TEST" in plan and "≥ 9" in plan  # the proof per class, next to the button

    # The browser asks first; saying no changes nothing.
    answers: list[str] = []

    def answer(dialog):
        answers.append(dialog.message)
        dialog.dismiss() if len(answers) == 1 else dialog.accept()

    page.on("dialog", answer)
    page.click("#auto-label-now")
    page.wait_for_timeout(300)
    assert f"Auto-label {expected} item(s) with model v1? Nobody will see these labels" in answers[0]
    assert not AutoLabelRun.objects.exists()
    with page.expect_navigation():
        page.click("#auto-label-now")
    assert f"Model v1 auto-labelled {expected:,} item(s) at 95.0% proven precision" in page.inner_text(".msg-success")
    assert page.inner_text("#auto-labelled-now").startswith(f"{expected:,} item(s) are auto-labelled now")
    assert page.inner_text('[data-stat="auto"]') == f"{expected:,}"
    assert Judgement.objects.filter(project=project, source=JudgementSource.AUTO, is_current=True).count() == expected

    with page.expect_navigation():
        page.click('[data-withdraw="1"]')
    assert f"Withdrew {expected:,} auto-label(s) of model v1" in page.inner_text(".msg-success")
    assert "withdrawn" in page.inner_text('#auto-label-runs tr[data-version="1"]')
    assert not Judgement.objects.filter(project=project, source=JudgementSource.AUTO, is_current=True).exists()
    assert Item.objects.filter(project=project, status=ItemStatus.UNLABELLED).count() >= expected


def test_the_admin_auto_labels_a_project_and_withdraws_a_run(tmp_path, alice, settings, client, django_user_model):
    project, _ = make_proposing_project(tmp_path, alice, settings)
    expected = len(_expected_picks(project))
    root = django_user_model.objects.create_superuser("root", password="root-pass-123")
    client.force_login(root)
    response = client.post(
        "/admin/projects/project/", {"action": "auto_label", "_selected_action": [project.pk]}, follow=True
    )
    assert f"model v1 auto-labelled {expected:,} item(s) at 95.0% proven precision" in response.content.decode()
    run = AutoLabelRun.objects.get(project=project)
    assert (run.labelled, run.created_by, run.created_by_name) == (expected, root, "root")
    assert client.get("/admin/labeling/autolabelrun/").status_code == 200
    assert client.get(f"/admin/labeling/autolabelrun/{run.pk}/change/").status_code == 200
    # Nothing is left to auto-label: the admin says why instead of failing.
    again = client.post(
        "/admin/projects/project/", {"action": "auto_label", "_selected_action": [project.pk]}, follow=True
    )
    said = again.content.decode()
    assert "nothing auto-labelled: no unlabelled item clears its class&#x27;s proven threshold" in said
    withdrawn = client.post(
        "/admin/labeling/autolabelrun/", {"action": "withdraw_auto_labels", "_selected_action": [run.pk]}, follow=True
    )
    assert f"withdrew {expected:,} auto-label(s) of model v1" in withdrawn.content.decode()
    run.refresh_from_db()
    assert run.withdrawn == expected and run.withdrawn_by == root
    assert not Judgement.objects.filter(project=project, source=JudgementSource.AUTO, is_current=True).exists()
