"""A detection project's labels out and in: COCO, Pascal VOC, YOLO and CSV round trips through the export page and
the API, the real trees CSV, files from other tools, bad boxes reported and not stored, and who may export."""

from __future__ import annotations

import io
import json
import zipfile
from io import StringIO

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from interchange.box_formats import do_import_box_records, read_box_file
from labeling.models import Judgement, Stage
from labeling.services import do_record_judgement
from projects.models import ItemStatus, Role
from projects.services import do_add_member
from tests.conftest import SHARED
from tests.labeling.test_boxes import box, item, make_detection_project

pytestmark = pytest.mark.django_db

TREES = SHARED / "datasets" / "trees"
SUFFIX = {"coco": ".json", "voc": ".zip", "yolo": ".zip", "csv": ".csv"}


def answers(project, *, stages: bool = True) -> dict:
    return {j.item.key: (j.value, j.stage) if stages else j.value
            for j in Judgement.objects.filter(project=project, is_current=True).select_related("item")}


@pytest.fixture
def labelled(tmp_path, alice):
    """Three images labelled through the service: two boxes (one fractional), none, one TEST image."""
    project = make_detection_project(tmp_path / "a")
    do_record_judgement(project, item=item(project, "wide.png"), user=alice, role=Role.OWNER,
                        value={"boxes": [box(2, 3, 30.25, 39), box(31, 0, 64, 40, "person")]})
    do_record_judgement(project, item=item(project, "empty.png"), user=alice, role=Role.OWNER, value={"boxes": []})
    tall = item(project, "tall.png")
    Judgement.objects.filter(pk=do_record_judgement(project, item=tall, user=alice, role=Role.OWNER,
                                                    value={"boxes": [box(0, 0, 30, 50)]}).pk).update(stage=Stage.TEST)
    return project


def download(client, project, fmt: str, **query) -> bytes:
    params = "&".join(f"{k}={v}" for k, v in query.items())
    response = client.get(f"/projects/{project.pk}/export/?as={fmt}{'&' + params if params else ''}")
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content)


@pytest.mark.parametrize("fmt", ["coco", "voc", "yolo", "csv"])
def test_it_round_trips_through_the_export_page(labelled, tmp_path, alice, client, fmt):
    client.force_login(alice)
    data = download(client, labelled, fmt)
    path = tmp_path / f"labels{SUFFIX[fmt]}"
    path.write_bytes(data)
    target = make_detection_project(tmp_path / "b", title="Copy")
    records, problems = read_box_file(target, path)
    imported, more = do_import_box_records(target, records=records)
    assert (imported, problems + more) == (3, [])
    # The boxes come back exactly; every format but YOLO (which has no place for it) keeps the TEST stage.
    assert answers(target, stages=fmt != "yolo") == answers(labelled, stages=fmt != "yolo")
    assert set(target.items.values_list("status", flat=True)) == {ItemStatus.LABELLED}
    assert do_import_box_records(target, records=records) == (0, [])  # again: the images are labelled now


def test_its_coco_is_coco(labelled, alice, client):
    client.force_login(alice)
    doc = json.loads(download(client, labelled, "coco"))
    assert doc["categories"] == [{"id": 1, "name": "car", "supercategory": ""},
                                 {"id": 2, "name": "person", "supercategory": ""}]
    images = {i["file_name"]: i for i in doc["images"]}
    assert (images["wide.png"]["width"], images["wide.png"]["height"]) == (64, 40)
    assert images["tall.png"]["lightbulb"]["stage"] == "TEST"
    assert images["wide.png"]["lightbulb"]["labelled_by"] == "alice"
    wide = [a for a in doc["annotations"] if a["image_id"] == images["wide.png"]["id"]]
    assert [(a["bbox"], a["category_id"], a["area"]) for a in wide] == [
        ([2, 3, 28.25, 36], 1, 1017), ([31, 0, 33, 40], 2, 1320)]
    assert not [a for a in doc["annotations"] if a["image_id"] == images["empty.png"]["id"]]


def test_its_voc_and_yolo_are_zips_other_tools_read(labelled, alice, client):
    client.force_login(alice)
    voc = zipfile.ZipFile(io.BytesIO(download(client, labelled, "voc")))
    assert sorted(voc.namelist()) == ["Annotations/empty.xml", "Annotations/tall.xml", "Annotations/wide.xml"]
    wide = voc.read("Annotations/wide.xml").decode()
    assert "<filename>wide.png</filename>" in wide and "<width>64</width>" in wide
    assert "<name>person</name>" in wide and "<xmax>30.25</xmax>" in wide
    yolo = zipfile.ZipFile(io.BytesIO(download(client, labelled, "yolo")))
    assert yolo.read("classes.txt") == b"car\nperson\n"
    assert yolo.read("labels/empty.txt") == b""
    first = yolo.read("labels/wide.txt").decode().splitlines()[0].split()
    assert first[0] == "0" and [round(float(v), 6) for v in first[1:]] == [
        round(16.125 / 64, 6), round(21 / 40, 6), round(28.25 / 64, 6), round(36 / 40, 6)]


def test_it_imports_the_real_trees_csv_and_reads_it_back_identically(tmp_path, alice):
    from interchange.config import load_config
    from interchange.importer import do_import_config

    cfg = tmp_path / "trees.yml"
    cfg.write_text(f"task: {{title: Trees}}\ndataset: {{directory: {TREES}, data_type: images}}\n"
                   "label: {type: object_detection, classes: [Tree]}\nmodel: {directory: out}\nuser: alice\n")
    project = do_import_config(load_config(cfg)).project
    assert project.items.count() == 30
    records, problems = read_box_file(project, TREES / "labels.csv")
    assert do_import_box_records(project, records=records) == (28, [])  # two tiles hold no tree
    assert problems == []
    boxes = [b for v in Judgement.objects.filter(project=project).values_list("value", flat=True) for b in v["boxes"]]
    assert len(boxes) == 459 and {b["label"] for b in boxes} == {"Tree"}
    out = StringIO()
    call_command("export_judgements", project.slug, "--format", "coco", "-o", str(tmp_path / "trees.json"),
                 stderr=out)
    assert "wrote 28 judgement(s)" in out.getvalue()
    again = make_trees_copy(tmp_path)
    records, problems = read_box_file(again, tmp_path / "trees.json")
    assert do_import_box_records(again, records=records) == (28, []) and problems == []
    assert answers(again) == answers(project)


def make_trees_copy(tmp_path):
    from interchange.config import load_config
    from interchange.importer import do_import_config

    cfg = tmp_path / "trees2.yml"
    cfg.write_text(f"task: {{title: Trees again}}\ndataset: {{directory: {TREES}, data_type: images}}\n"
                   "label: {type: object_detection, classes: [Tree]}\nmodel: {directory: out2}\nuser: alice\n")
    return do_import_config(load_config(cfg)).project


def test_it_imports_voc_from_another_tool_by_file_name(tmp_path, alice):
    """LabelImg writes <filename> and an absolute <path> of its own machine: the file name finds the image."""
    project = make_detection_project(tmp_path)
    folder = tmp_path / "voc"
    folder.mkdir()
    (folder / "wide.xml").write_text(
        "<annotation><folder>imgs</folder><filename>wide.png</filename><path>/home/x/imgs/wide.png</path>"
        "<size><width>64</width><height>40</height><depth>3</depth></size>"
        "<object><name>car</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>20</xmax><ymax>30</ymax></bndbox></object>"
        "</annotation>")
    (folder / "tall.xml").write_text(  # a box past the image's edge: this image is not imported
        "<annotation><filename>tall.png</filename><object><name>car</name><bndbox><xmin>0</xmin><ymin>0</ymin>"
        "<xmax>31</xmax><ymax>10</ymax></bndbox></object></annotation>")
    (folder / "broken.xml").write_text("<annotation><filename>")
    out, err = StringIO(), StringIO()
    call_command("import_labels", project.slug, str(folder), stdout=out, stderr=err)
    assert "imported 1 judgement(s); 2 not imported" in out.getvalue()
    assert "tall.xml: box 1: 0,0 to 31,10 is outside the image (30×50 pixels)" in err.getvalue()
    assert "broken.xml: not XML" in err.getvalue()
    assert answers(project) == {"wide.png": ({"boxes": [box(1, 2, 20, 30)]}, Stage.TRAIN)}
    assert item(project, "tall.png").status == ItemStatus.UNLABELLED


def test_it_imports_a_yolo_folder_with_its_data_yaml(tmp_path, alice):
    project = make_detection_project(tmp_path)
    (tmp_path / "yolo" / "labels").mkdir(parents=True)
    (tmp_path / "yolo" / "data.yaml").write_text("names: {0: person, 1: car}\n")
    (tmp_path / "yolo" / "labels" / "wide.txt").write_text("1 0.5 0.5 0.5 0.5\n0 0.25 0.25 0.1 0.2\n")
    (tmp_path / "yolo" / "labels" / "tall.txt").write_text("7 0.5 0.5 0.1 0.1\n")
    (tmp_path / "yolo" / "labels" / "nothing.txt").write_text("")
    records, problems = read_box_file(project, tmp_path / "yolo")
    imported, more = do_import_box_records(project, records=records)
    assert imported == 1
    assert [p.split(":")[0] for p in problems + more] == ["labels/nothing.txt", "labels/tall.txt line 1"]
    assert answers(project)["wide.png"][0] == {"boxes": [box(12.8, 6, 19.2, 14, "person"), box(16, 10, 48, 30)]}


@pytest.mark.parametrize("body,message", [
    ("path,label\nwide.png,car\n", "missing xmin, ymin, xmax, ymax"),
])
def test_it_refuses_a_csv_without_box_columns(tmp_path, alice, body, message):
    project = make_detection_project(tmp_path)
    path = tmp_path / "labels.csv"
    path.write_text(body)
    err = StringIO()
    with pytest.raises(Exception, match=message):
        call_command("import_labels", project.slug, str(path), stderr=err)
    assert not Judgement.objects.filter(project=project).exists()


def test_it_reports_bad_rows_and_stores_none_of_that_image(tmp_path, alice):
    project = make_detection_project(tmp_path)
    path = tmp_path / "labels.csv"
    path.write_text("path,xmin,ymin,xmax,ymax,label,stage,judgement_id\n"
                    "wide.png,0,0,10,10,car\nwide.png,a,0,10,10,car\n"  # one bad box: none of wide's stored
                    "tall.png,0,0,5,5,truck,,1\n"  # an unknown class
                    "gone.png,0,0,5,5,car\n"  # no such image
                    "empty.png,,,,,\n"  # labelled: no objects
                    "tall.png,0,0,5,5,car,AUTO,2,extra\n")  # an auto-label (and a cell past the header)
    records, problems = read_box_file(project, path)
    imported, more = do_import_box_records(project, records=records)
    assert imported == 1 and answers(project) == {"empty.png": ({"boxes": []}, Stage.TRAIN)}
    report = "\n".join(problems + more)
    assert "line 3: xmin, ymin, xmax and ymax must be numbers" in report
    assert "'truck' is not a class" in report and "no image 'gone.png'" in report
    assert "an auto-label" in report


def test_a_config_keeps_its_box_csv_in_sync(tmp_path, alice):
    labels = tmp_path / "labels.csv"
    labels.write_text("path,xmin,ymin,xmax,ymax,label,stage\nwide.png,1,1,9,9,car,TEST\n")
    project = make_detection_project(tmp_path, judgements_file=str(labels))
    assert answers(project) == {"wide.png": ({"boxes": [box(1, 1, 9, 9)]}, Stage.TEST)}
    made = do_record_judgement(project, item=item(project, "tall.png"), user=alice, role=Role.OWNER,
                               value={"boxes": [box(0, 0, 3, 4, "person")]})
    from interchange.judgements_file import sync_judgements_file

    sync_judgements_file(project)
    rows = labels.read_text().splitlines()
    assert rows[0] == "path,xmin,ymin,xmax,ymax,label,stage,labelled_by,source,time_taken,judgement_id"
    assert rows[1].startswith("wide.png,1,1,9,9,car,TEST,,imported,")
    assert rows[2] == f"tall.png,0,0,3,4,person,{made.stage},alice,human,,{made.pk}"


def test_a_config_refuses_a_box_file_it_cannot_keep_in_sync(tmp_path, alice):
    from interchange.config import ConfigError, load_config

    (tmp_path / "imgs").mkdir()
    cfg = tmp_path / "c.yml"
    cfg.write_text("task: {title: V}\ndataset: {directory: imgs, data_type: images, judgements_file: voc.zip}\n"
                   "label: {type: object_detection, classes: [car]}\nmodel: {directory: out}\nuser: alice\n")
    with pytest.raises(ConfigError, match="import Pascal VOC or YOLO with manage.py import_labels"):
        load_config(cfg)
    cfg.write_text("task: {title: V}\ndataset: {directory: imgs, data_type: text}\n"
                   "label: {type: object_detection, classes: [car]}\nmodel: {directory: out}\nuser: alice\n")
    with pytest.raises(ConfigError, match="dataset.data_type must be images"):
        load_config(cfg)


def test_the_api_streams_each_format_and_refuses_history_in_voc(labelled, alice, bob, charlie):
    client = APIClient()
    client.force_authenticate(alice)
    base = f"/api/projects/{labelled.pk}/export/"
    for fmt, content_type in [("coco", "application/json"), ("voc", "application/zip"), ("yolo", "application/zip"),
                              ("csv", "text/csv; charset=utf-8")]:
        response = client.get(f"{base}?as={fmt}")
        assert response.status_code == 200 and response["Content-Type"] == content_type
        assert SUFFIX[fmt] in response["Content-Disposition"]
    default = client.get(base)
    assert json.loads(b"".join(default.streaming_content))["categories"][0]["name"] == "car"  # COCO by default
    history = client.get(f"{base}?as=voc&history=1")
    assert history.status_code == 400 and "cannot hold an image's history" in history.json()["detail"]
    conll = client.get(f"{base}?as=conll")
    assert conll.status_code == 400 and "coco or voc or yolo or csv" in conll.json()["detail"]
    assert client.get(f"{base}?as=coco&history=1").status_code == 200

    do_add_member(labelled, user=bob, role=Role.ANNOTATOR)
    client.force_authenticate(bob)
    assert client.get(f"{base}?as=coco").status_code == 403  # an export holds TEST labels: reviewers and owners
    client.force_authenticate(charlie)
    real, missing = client.get(f"{base}?as=coco"), client.get("/api/projects/999999/export/?as=coco")
    assert real.status_code == missing.status_code == 404 and real.json() == missing.json()


def test_the_export_page_offers_the_four_formats(labelled, alice, client):
    client.force_login(alice)
    page = client.get(f"/projects/{labelled.pk}/export/")
    assert page.status_code == 200 and page.context["formats"] == ("coco", "voc", "yolo", "csv")
    for value in ("coco", "voc", "yolo", "csv"):
        assert f'value="{value}"'.encode() in page.content


def test_the_command_line_writes_voc_and_yolo_zips(labelled, tmp_path):
    for fmt in ("voc", "yolo"):
        target = tmp_path / f"out-{fmt}.zip"
        err = StringIO()
        call_command("export_judgements", labelled.slug, "--format", fmt, "-o", str(target), stderr=err)
        assert "wrote 3 image(s)" in err.getvalue() and zipfile.is_zipfile(target)
    with pytest.raises(Exception, match="zip archive: name the file"):
        call_command("export_judgements", labelled.slug, "--format", "voc")


def test_a_relabel_during_a_coco_download_never_moves_boxes_to_another_image(labelled, alice):
    """COCO streams images, then annotations: a label changed between the two passes drops that image's boxes
    from the second pass rather than numbering them onto a neighbour."""
    from interchange.box_formats import coco_lines
    from interchange.judgements_file import current_judgements

    chunks = coco_lines(labelled, current_judgements(labelled))
    head = []
    for chunk in chunks:
        head.append(chunk)
        if chunk.startswith('\n], "annotations"'):
            break
    wide = item(labelled, "wide.png")
    do_record_judgement(labelled, item=wide, user=alice, role=Role.OWNER, value={"boxes": [box(0, 0, 5, 5)]})
    doc = json.loads("".join(head) + "".join(chunks))
    ids = {i["id"]: i["file_name"] for i in doc["images"]}
    assert all(a["image_id"] in ids for a in doc["annotations"])
    assert {ids[a["image_id"]] for a in doc["annotations"]} == {"tall.png"}  # wide's old boxes are not anyone's
