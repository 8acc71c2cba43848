"""Importing datasets: idempotency, judgements, corrupt images, odd encodings, tabular and JSON sources."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import override_settings
from PIL import Image

from interchange.config import load_config
from interchange.importer import do_import_config
from labeling.models import Judgement, JudgementSource, Stage
from projects.models import Item, ItemStatus, Project
from tests.conftest import SHARED, png_bytes, write_config, write_images

pytestmark = pytest.mark.django_db


def _import(path: Path):
    return do_import_config(load_config(path))


def test_it_is_idempotent_and_picks_up_new_files(image_config, alice):
    first = _import(image_config)
    assert first.created_project and first.items_added == 6
    project = first.project

    again = _import(image_config)
    assert not again.created_project
    assert again.items_added == 0 and again.items_existing == 6
    assert Project.objects.count() == 1
    assert project.items.count() == 6

    write_images(image_config.parent.parent / "dataset" / "cats" / "sub", 2, prefix="new")
    third = _import(image_config)
    assert third.items_added == 2
    keys = set(project.items.values_list("key", flat=True))
    assert {"sub/new000.png", "sub/new001.png", "img000.png"} <= keys
    assert project.items.count() == 8


def test_it_creates_a_missing_owner_without_usable_password(image_config, django_user_model):
    result = _import(image_config)
    owner = django_user_model.objects.get(username="alice")
    assert result.created_user
    assert not owner.has_usable_password()


def test_it_imports_light_bulb_judgements_and_keeps_the_file_in_sync(image_config, alice):
    labels = image_config.parent.parent / "outputs" / "cats" / "labels.csv"
    labels.parent.mkdir(parents=True)
    labels.write_text(
        "path,label,labelled_by,stage,time_taken\n"
        "../dataset/cats/img000.png,Cat,alice,TRAIN,1.5\n"  # relative to the config file, as Light Bulb wrote
        "img001.png,Not Cat,alice,TEST,2\n"  # already a key
        f"{(image_config.parent.parent / 'dataset/cats/img002.png').resolve()},cat,bob,MODEL_LABELLED,\n"
        "img003.png,Cat,alice,TRAIN,\n"
        "img003.png,Not Cat,alice,TRAIN,3\n"  # later row wins, history kept
    )
    result = _import(image_config)
    project = result.project
    assert result.judgements_imported == 5
    assert result.judgements_unimported == 0

    current = {j.item.key: j for j in Judgement.objects.filter(project=project, is_current=True)}
    assert current["img000.png"].label == "Cat" and current["img000.png"].stage == Stage.TRAIN
    assert current["img000.png"].user == alice and current["img000.png"].time_taken == 1.5
    assert current["img001.png"].stage == Stage.TEST
    assert current["img002.png"].label == "Cat"  # case-insensitive class match
    assert current["img002.png"].source == JudgementSource.CONFIRMED_PROPOSAL
    assert current["img002.png"].user is None and current["img002.png"].labelled_by == "bob"
    assert current["img003.png"].label == "Not Cat"
    assert Judgement.objects.filter(item__key="img003.png").count() == 2
    item = Item.objects.get(project=project, key="img003.png")
    item.refresh_from_db()
    assert item.status == ItemStatus.LABELLED

    # The file is rewritten from the database with plain keys; re-importing it changes nothing.
    rows = labels.read_text().splitlines()
    assert rows[0] == "path,label,labelled_by,stage,time_taken,source"
    assert len(rows) == 1 + 4
    again = _import(image_config)
    assert again.judgements_imported == 0
    assert Judgement.objects.filter(project=project).count() == 5


def test_it_never_lets_a_stale_file_override_the_database(image_config, alice):
    project = _import(image_config).project
    item = project.items.get(key="img000.png")
    Judgement.objects.create(project=project, item=item, label="Cat", user=alice, labelled_by="alice", stage="TRAIN")
    labels = Path(project.judgements_file)
    labels.write_text("path,label,labelled_by,stage,time_taken\nimg000.png,Not Cat,alice,TRAIN,\n")
    _import(image_config)
    assert Judgement.objects.get(item=item, is_current=True).label == "Cat"


def test_it_reports_unknown_labels_and_paths_and_backs_the_file_up(image_config, alice):
    labels = image_config.parent.parent / "outputs" / "cats" / "labels.csv"
    labels.parent.mkdir(parents=True)
    original = (
        "path,label,labelled_by,stage\nimg000.png,Dog,alice,TRAIN\nmissing.png,Cat,alice,TRAIN\n"
        "img001.png,Cat,alice,TRAIN\n"
    )
    labels.write_text(original)
    result = _import(image_config)
    assert result.judgements_imported == 1
    assert result.judgements_unimported == 2
    assert any("'Dog' is not a class (allowed: Cat, Not Cat)" in w for w in result.warnings)
    assert any("unknown path 'missing.png'" in w for w in result.warnings)
    # Nothing lost: the rows we could not import survive in a backup next to the file.
    assert result.backup_path is not None and result.backup_path.read_text() == original


def test_it_records_corrupt_images_as_rejected_with_reason(tmp_path, alice):
    data = tmp_path / "imgs"
    write_images(data, 2)
    good = png_bytes((0, 0, 255), seed=9)
    (data / "truncated.png").write_bytes(good[: len(good) // 2])
    (data / "garbage.jpg").write_bytes(os.urandom(2048))
    (data / "empty.gif").write_bytes(b"")
    (data / "notes.txt").write_text("not an image")  # wrong extension: ignored entirely
    cfg = write_config(
        tmp_path / "c.yml",
        "task: {title: T}\ndataset: {directory: imgs, data_type: images}\n"
        "label: {type: classification, classes: [A, B]}\nmodel: {directory: out}\nuser: alice\n",
    )
    result = _import(cfg)
    assert result.items_added == 5 and result.items_rejected == 3
    rejected = {i.key: i.rejection_reason for i in Item.objects.filter(status=ItemStatus.REJECTED)}
    assert set(rejected) == {"truncated.png", "garbage.jpg", "empty.gif"}
    assert all(reason for reason in rejected.values())
    ok = Item.objects.get(key="img000.png")
    assert ok.status == ItemStatus.UNLABELLED and ok.meta["width"] == 32


def test_it_refuses_decompression_bombs(tmp_path, alice):
    data = tmp_path / "imgs"
    data.mkdir()
    buf = io.BytesIO()
    Image.new("L", (400, 300)).save(buf, format="PNG")
    (data / "big.png").write_bytes(buf.getvalue())
    cfg = write_config(
        tmp_path / "c.yml",
        "task: {title: T}\ndataset: {directory: imgs, data_type: images}\n"
        "label: {type: binary}\nmodel: {directory: out}\nuser: alice\n",
    )
    with override_settings(LIGHTBULB_MAX_IMAGE_PIXELS=10_000):
        _import(cfg)
    item = Item.objects.get(key="big.png")
    assert item.status == ItemStatus.REJECTED
    assert "120,000 pixels exceeds the 10,000 limit" in item.rejection_reason


def test_it_decodes_odd_text_encodings_without_crashing(tmp_path, alice):
    data = tmp_path / "texts"
    data.mkdir()
    (data / "utf8.txt").write_bytes("naïve café ☕".encode())
    (data / "bom.txt").write_bytes("\ufeffwith a BOM".encode("utf-8"))
    (data / "utf16.txt").write_bytes("grüße aus Köln".encode("utf-16"))
    (data / "cp1252.txt").write_bytes("“smart quotes” – dash".encode("cp1252"))
    (data / "latin1.txt").write_bytes(b"\x81\x8d\x8f\x90 odd bytes caf\xe9")
    (data / "nul.txt").write_bytes(b"nul\x00inside")
    (data / "empty.txt").write_bytes(b"   ")
    cfg = write_config(
        tmp_path / "c.yml",
        "task: {title: T}\ndataset: {directory: texts, data_type: text}\n"
        "label: {type: binary}\nmodel: {directory: out}\nuser: alice\n",
    )
    result = _import(cfg)
    texts = {i.key: (i.text, i.meta["encoding"]) for i in Item.objects.all()}
    assert texts["utf8.txt"] == ("naïve café ☕", "utf-8")
    assert texts["bom.txt"] == ("with a BOM", "utf-8-sig")
    assert texts["utf16.txt"] == ("grüße aus Köln", "utf-16")
    assert texts["cp1252.txt"] == ("“smart quotes” – dash", "cp1252")
    assert texts["latin1.txt"][1] == "latin-1" and texts["latin1.txt"][0].endswith("café")
    assert texts["nul.txt"][0] == "nulinside"
    assert "empty.txt" not in texts
    assert any("empty.txt: empty text" in w for w in result.warnings)


def test_it_reads_csv_and_jsonl_text_sources_by_row_id(tmp_path, alice):
    data = tmp_path / "data"
    data.mkdir()
    (data / "tweets.csv").write_text('id,text\nt1,"hello, world"\nt2,second\nt2,duplicate id\n,no id here\n')
    (data / "docs.jsonl").write_text('{"id": "d1", "text": "from jsonl"}\nnot json\n{"id": "d2", "body": "x"}\n')
    (data / "labels.csv").write_text("id,label\nt1,A\n")  # no text column: skipped, and excluded anyway
    cfg = write_config(
        tmp_path / "c.yml",
        "task: {title: T}\ndataset: {directory: data, data_type: text, exclude: [labels.csv]}\n"
        "label: {type: binary}\nmodel: {directory: out}\nuser: alice\n",
    )
    result = _import(cfg)
    items = {i.key: i for i in Item.objects.all()}
    assert items["t1"].text == "hello, world" and items["t1"].source == "tweets.csv"
    assert items["t2"].text == "second"
    assert "tweets.csv:5" in items  # no id: file and line make the key
    assert items["d1"].text == "from jsonl"
    assert "d2" not in items  # the JSONL has no text column for that row
    assert any("duplicate id 't2'" in w for w in result.warnings)
    assert any("invalid JSON" in w for w in result.warnings)


def test_it_reads_json_items(tmp_path, alice):
    data = tmp_path / "json"
    data.mkdir()
    (data / "a.json").write_text(json.dumps({"img_src": "/a.png", "text": "a dog"}))
    (data / "many.json").write_text(json.dumps([{"id": "m1", "text": "x"}, {"text": "y"}, 3]))
    (data / "lines.jsonl").write_text('{"text": "line one"}\n')
    (data / "broken.json").write_text("{nope")
    cfg = write_config(
        tmp_path / "c.yml",
        "task: {title: T, template: '<b>{{text}}</b>'}\ndataset: {directory: json, data_type: json}\n"
        "label: {type: classification, classes: [Dog, Cat]}\nmodel: {directory: out}\nuser: alice\n",
    )
    result = _import(cfg)
    items = {i.key: i for i in Item.objects.all()}
    assert items["a.json"].data == {"img_src": "/a.png", "text": "a dog"}
    assert "text: a dog" in items["a.json"].text
    assert set(items) == {"a.json", "m1", "many.json#1", "lines.jsonl:1"}
    assert any("broken.json: invalid JSON" in w for w in result.warnings)


@pytest.mark.skipif(not SHARED.exists(), reason="../shared is not beside this checkout")
@pytest.mark.parametrize(
    "name,count",
    [("fashion_mnist_2k", 2000), ("emoji", 1906), ("spam_assassin_2k", 2000), ("election_tweets", 6444),
     ("reuters_r8", 7674)],
)
def test_it_imports_the_shared_datasets(name, count, tmp_path):
    from tests.conftest import EXAMPLES

    call_command("import_config", str(EXAMPLES / "shared" / f"{name}.yml"), "--no-progress", stdout=io.StringIO())
    project = Project.objects.get(slug=name.replace("_", "-"))
    assert project.items.exclude(status=ItemStatus.REJECTED).count() == count
    # Item keys are exactly the ground truth's keys, so simulations can look labels up.
    gt = (SHARED / "datasets" / name / "labels.csv").read_text().splitlines()[1:]
    gt_keys = {line.split(",")[0] for line in gt}
    assert set(project.items.values_list("key", flat=True)) == gt_keys
