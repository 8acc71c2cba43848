"""Export: Light Bulb CSV and provenance JSONL, and the round trip back in."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from interchange.config import load_config
from interchange.importer import do_import_config
from labeling.models import Judgement, Stage
from projects.models import Project

pytestmark = pytest.mark.django_db


def _label(project, key, label, user, stage=Stage.TRAIN, time_taken=1.0):
    item = project.items.get(key=key)
    Judgement.objects.filter(item=item, is_current=True).update(is_current=False)
    return Judgement.objects.create(
        project=project, item=item, label=label, user=user, labelled_by=user.username, stage=stage,
        time_taken=time_taken,
    )


def test_it_exports_csv_and_round_trips_into_a_fresh_project(image_project, alice, tmp_path):
    _label(image_project, "img000.png", "Cat", alice)
    _label(image_project, "img001.png", "Not Cat", alice, Stage.TEST, 2.5)
    _label(image_project, "img001.png", "Cat", alice, Stage.TEST, 3.0)  # relabel: only the newest exports

    out = tmp_path / "export.csv"
    call_command("export_judgements", image_project.slug, "--format", "csv", "-o", str(out), stderr=io.StringIO())
    rows = list(csv.DictReader(out.open()))
    assert [(r["path"], r["label"], r["stage"], r["labelled_by"], r["time_taken"]) for r in rows] == [
        ("img000.png", "Cat", "TRAIN", "alice", "1.0"),
        ("img001.png", "Cat", "TEST", "alice", "3.0"),
    ]

    # Round trip: a second project over the same directory with the export as its judgements file.
    cfg_text = Path(image_project.config_path).read_text().replace("../outputs/cats/labels.csv", str(out))
    cfg = Path(image_project.config_path).with_name("copy.yml")
    cfg.write_text(cfg_text)
    copy = do_import_config(load_config(cfg)).project
    assert copy.pk != image_project.pk
    got = {(j.item.key, j.label, j.stage, j.time_taken) for j in Judgement.objects.filter(project=copy)}
    assert got == {("img000.png", "Cat", "TRAIN", 1.0), ("img001.png", "Cat", "TEST", 3.0)}


def test_it_exports_jsonl_with_provenance_and_history(image_project, alice):
    _label(image_project, "img000.png", "Cat", alice)
    _label(image_project, "img000.png", "Not Cat", alice)
    out = io.StringIO()
    call_command("export_judgements", str(image_project.pk), "--format", "jsonl", "--history", stdout=out)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["label"], r["is_current"]) for r in records] == [("Cat", False), ("Not Cat", True)]
    first = records[0]
    assert first["path"] == "img000.png" and first["user_id"] == alice.pk and first["source"] == "human"
    assert len(first["content_hash"]) == 64 and first["project"] == image_project.slug

    current_only = io.StringIO()
    call_command("export_judgements", image_project.slug, "--format", "jsonl", stdout=current_only)
    assert len(current_only.getvalue().splitlines()) == 1


def test_it_rejects_an_unknown_project():
    with pytest.raises(CommandError, match="no project with id or slug 'nope'"):
        call_command("export_judgements", "nope")


def test_the_judgements_file_is_written_atomically_from_the_database(image_project, alice):
    from interchange.judgements_file import sync_judgements_file

    _label(image_project, "img002.png", "Cat", alice)
    assert sync_judgements_file(image_project) == 1
    path = Path(image_project.judgements_file)
    assert path.read_text().splitlines() == [
        "path,label,labelled_by,stage,time_taken,source", "img002.png,Cat,alice,TRAIN,1.0,human",
    ]
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert Project.objects.get(pk=image_project.pk).judgements_file == str(path)


def test_it_enqueues_one_judgements_file_sync_per_burst_of_labels(image_project, monkeypatch):
    from interchange.tasks import enqueue_judgements_file_sync, sync_judgements_file_task

    sent = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda func, *args, **kwargs: sent.append(func))
    for _ in range(4):
        enqueue_judgements_file_sync(image_project.pk)
    assert sent == ["interchange.tasks.sync_judgements_file_task"]
    sync_judgements_file_task(image_project.pk)  # the task starts: the next label needs a task of its own
    enqueue_judgements_file_sync(image_project.pk)
    assert len(sent) == 2
    image_project.refresh_from_db()
    assert image_project.judgements_file_queued_at is not None
