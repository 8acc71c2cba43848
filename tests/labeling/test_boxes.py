"""Box judgements for object detection: checked against the image's size and the project's classes, through the
service and the REST API alike; undo gives them back; the project page counts boxes per class."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from labeling.errors import InvalidValue
from labeling.models import Judgement
from labeling.services import do_record_judgement, do_undo_last_judgement, next_items
from projects.models import Item, ItemStatus, Project, Role
from projects.services import do_add_member
from tests.conftest import png_bytes, write_config

pytestmark = pytest.mark.django_db

SIZES = {"wide.png": (64, 40), "tall.png": (30, 50), "empty.png": (48, 48)}


def make_detection_project(root, *, owner: str = "alice", classes=("car", "person"), title: str = "Street",
                           judgements_file: str = ""):
    """A detection project of real PNGs of known sizes, imported from a real config."""
    from interchange.config import load_config
    from interchange.importer import do_import_config

    folder = root / "imgs"
    folder.mkdir(parents=True, exist_ok=True)
    for n, (name, size) in enumerate(SIZES.items()):
        (folder / name).write_bytes(png_bytes((40 * n, 90, 160), size=size, seed=n))
    labels = f", judgements_file: {judgements_file}" if judgements_file else ""
    cfg = write_config(
        root / f"{title.lower()}.yml",
        f"task: {{title: {title}}}\ndataset: {{directory: imgs, data_type: images{labels}}}\n"
        f"label: {{type: object_detection, classes: [{', '.join(classes)}]}}\nmodel: {{directory: out}}\n"
        f"user: {owner}\n",
    )
    return do_import_config(load_config(cfg)).project


def box(xmin, ymin, xmax, ymax, label="car") -> dict:
    return {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax, "label": label}


@pytest.fixture
def street(tmp_path, alice):
    return make_detection_project(tmp_path)


def item(project, key: str) -> Item:
    return Item.objects.get(project=project, key=key)


def test_it_reads_each_images_size_at_ingest(street):
    assert {i.key: (i.meta["width"], i.meta["height"]) for i in street.items.all()} == SIZES


def test_it_records_boxes_sorted_with_a_summary(street, alice):
    wide = item(street, "wide.png")
    j = do_record_judgement(street, item=wide, user=alice, role=Role.OWNER,
                            value={"boxes": [box(30, 2, 64, 40, "person"), box(0.004, 1.5, 12.0, 20)]})
    j.refresh_from_db()
    wide.refresh_from_db()
    # Kept to 1/100 pixel, whole numbers as integers, in reading order.
    assert j.value == {"boxes": [box(0, 1.5, 12, 20), box(30, 2, 64, 40, "person")]}
    assert j.label == "2 boxes" and wide.status == ItemStatus.LABELLED


def test_it_records_an_empty_answer_as_no_objects(street, alice):
    empty = item(street, "empty.png")
    j = do_record_judgement(street, item=empty, user=alice, role=Role.OWNER, value={"boxes": []})
    j.refresh_from_db()
    assert j.value == {"boxes": []} and j.label == "none"


@pytest.mark.parametrize("boxes,message", [
    ([box(0, 0, 65, 10)], "outside the image (64×40 pixels)"),
    ([box(-1, 0, 10, 10)], "outside the image"),
    ([box(0, 30, 10, 41)], "outside the image"),
    ([box(10, 10, 10, 20)], "at least 1 pixel wide and high"),
    ([box(10, 10, 10.5, 20)], "at least 1 pixel wide and high"),
    ([box(20, 10, 5, 20)], "xmax > xmin"),
    ([box(0, 0, 10, 10, "bicycle")], "'bicycle' is not a class of this project (classes: car, person)"),
    ([{"xmin": "0", "ymin": 0, "xmax": 5, "ymax": 5, "label": "car"}], "must be numbers"),
    ([{"xmin": True, "ymin": 0, "xmax": 5, "ymax": 5, "label": "car"}], "must be numbers"),
    ([{"xmin": float("nan"), "ymin": 0, "xmax": 5, "ymax": 5, "label": "car"}], "must be numbers"),
    ([{"x": 0, "y": 0, "w": 5, "h": 5, "label": "car"}], "must be numbers"),
    (["car"], "must be an object"),
    ("car", "boxes must be a list"),
])
def test_it_refuses_bad_boxes_with_a_clear_error_and_keeps_nothing(street, alice, boxes, message):
    wide = item(street, "wide.png")
    with pytest.raises(InvalidValue, match=message.replace("(", r"\(").replace(")", r"\)")):
        do_record_judgement(street, item=wide, user=alice, role=Role.OWNER, value={"boxes": boxes})
    wide.refresh_from_db()
    assert wide.status == ItemStatus.UNLABELLED and not Judgement.objects.filter(item=wide).exists()


def test_it_refuses_a_class_for_a_detection_project(street, alice):
    wide = item(street, "wide.png")
    with pytest.raises(InvalidValue, match='is a value: {"boxes"'):
        do_record_judgement(street, item=wide, user=alice, role=Role.OWNER, label="car")
    assert not Judgement.objects.filter(item=wide).exists()


def test_it_offers_images_untokenized_and_undo_gives_the_boxes_back(street, alice):
    leased = next_items(street, user=alice, count=3)
    assert {li.item.key for li in leased} == set(SIZES)  # no tokenizing step: every image is offered at once
    tall = item(street, "tall.png")
    do_record_judgement(street, item=tall, user=alice, role=Role.OWNER, value={"boxes": [box(1, 1, 29, 49)]})
    back = do_undo_last_judgement(street, user=alice)
    back.refresh_from_db()
    assert back.pk == tall.pk and back.status == ItemStatus.UNLABELLED


@pytest.fixture
def api(street, bob):
    do_add_member(street, user=bob, role=Role.ANNOTATOR)
    client = APIClient()
    client.force_authenticate(bob)
    return client


def test_it_takes_boxes_through_the_api_and_returns_them(api, street):
    base = f"/api/projects/{street.pk}"
    leased = api.get(f"{base}/items/next/?count=3").json()
    wide = next(i for i in leased if i["path"] == "wide.png")
    assert (wide["width"], wide["height"]) == (64, 40) and wide["media_url"] and "tokens" not in wide
    boxes = [box(2, 3, 30, 39), box(31, 0, 64, 40, "person")]
    created = api.post(f"{base}/judgements/", {"item": wide["id"], "boxes": boxes, "time_taken": 4.5}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["value"] == {"boxes": boxes} and created.json()["label"] == "2 boxes"
    listed = api.get(f"{base}/judgements/?item={wide['id']}").json()["results"]
    assert listed[0]["value"] == {"boxes": boxes}

    undone = api.post(f"{base}/judgements/undo/").json()
    assert undone["id"] == wide["id"] and undone["answer"] == {"boxes": boxes}
    assert Judgement.objects.get(pk=created.json()["id"]).undone_at is not None


def test_it_answers_bad_boxes_with_json_400(api, street):
    base = f"/api/projects/{street.pk}"
    tall = item(street, "tall.png")
    bad = api.post(f"{base}/judgements/", {"item": tall.pk, "boxes": [box(0, 0, 31, 10)]}, format="json")
    assert bad.status_code == 400 and "outside the image (30×50 pixels)" in bad.json()["detail"]
    missing = api.post(f"{base}/judgements/", {"item": tall.pk, "label": "car"}, format="json")
    assert missing.status_code == 400 and "is a value" in missing.json()["detail"]
    spans = api.post(f"{base}/judgements/", {"item": tall.pk, "spans": []}, format="json")
    assert spans.status_code == 400 and "boxes must be a list" in spans.json()["detail"]
    tall.refresh_from_db()
    assert tall.status == ItemStatus.UNLABELLED and not Judgement.objects.filter(item=tall).exists()


def test_outsiders_get_the_same_404_for_box_judgements(street, charlie):
    client = APIClient()
    client.force_authenticate(charlie)
    wide = item(street, "wide.png")
    body = {"item": wide.pk, "boxes": [box(0, 0, 5, 5)]}
    real = client.post(f"/api/projects/{street.pk}/judgements/", body, format="json")
    missing = client.post("/api/projects/999999/judgements/", body, format="json")
    assert real.status_code == missing.status_code == 404 and real.json() == missing.json()
    assert not Judgement.objects.filter(item=wide).exists()


def test_it_serves_the_box_screen_with_its_keys_kept(tmp_path, alice, client):
    project = make_detection_project(tmp_path, classes=("apple", "fig", "xylophone", "banana"))
    client.force_login(alice)
    page = client.get(f"/projects/{project.pk}/label/")
    assert page.status_code == 200
    config = page.context["config"]
    assert config["screen"] == "boxes" and b"js/boxes.js" in page.content and b'id="box-count"' in page.content
    keys = {c["label"]: c["keys"] for c in config["classes"]}
    # a (accept), f (fit) and x (remove) are the screen's: no class and no command takes them.
    assert keys == {"apple": ["1"], "fig": ["2"], "xylophone": ["3"], "banana": ["4", "b"]}
    assert config["commands"] == {"skip": "s", "undo": "u"}
    assert b"labeling is not available" not in page.content


def test_the_project_page_counts_boxes_per_class(street, alice, client):
    do_record_judgement(street, item=item(street, "wide.png"), user=alice, role=Role.OWNER,
                        value={"boxes": [box(0, 0, 10, 10), box(20, 0, 30, 10), box(40, 0, 50, 10, "person")]})
    do_record_judgement(street, item=item(street, "empty.png"), user=alice, role=Role.OWNER, value={"boxes": []})
    client.force_login(alice)
    page = client.get(f"/projects/{street.pk}/")
    assert page.context["counts"]["per_class"] == [("car", 2), ("person", 1)]
    assert b"Boxes drawn" in page.content and b'id="start-labeling"' in page.content
    assert b"a detector learns from your boxes" in page.content and b'id="try-model"' not in page.content


def test_it_creates_detection_projects_for_images_and_refuses_text_or_no_classes(alice, settings):
    client = APIClient()
    settings.LIGHTBULB_ANYONE_CREATES_PROJECTS = True
    client.force_authenticate(alice)
    made = client.post("/api/projects/", {"title": "Trees", "data_type": "images", "label_type": "object_detection",
                                          "classes": "Tree"}, format="json")
    assert made.status_code == 201, made.content
    assert made.json()["label_type"] == "object_detection" and made.json()["classes"] == ["Tree"]
    text = client.post("/api/projects/", {"title": "T2", "data_type": "text", "label_type": "object_detection",
                                          "classes": "Tree"}, format="json")
    assert text.status_code == 400 and "boxes on images" in text.json()["detail"]
    empty = client.post("/api/projects/", {"title": "T3", "data_type": "images", "label_type": "object_detection",
                                           "classes": ""}, format="json")
    assert empty.status_code == 400 and "at least one class" in empty.json()["detail"]
    assert list(Project.objects.values_list("title", flat=True)) == ["Trees"]


def test_a_detection_project_waits_for_its_minimums_and_embeds_nothing(street, alice):
    """The detector reads the images itself: a label must not start the classification loop's embedding, and a
    first box is not enough for a version (modeling/ml/detection.py trains once TRAIN and TEST have enough)."""
    from modeling.models import EmbeddingJob, ModelState, ModelVersion
    from modeling.tasks import train_project

    do_record_judgement(street, item=item(street, "wide.png"), user=alice, role=Role.OWNER,
                        value={"boxes": [box(0, 0, 10, 10)]})
    assert train_project(street.pk).startswith("needs ")
    assert not ModelVersion.objects.filter(project=street).exists()
    assert not EmbeddingJob.objects.filter(project=street).exists()
    state = ModelState.objects.get(project=street)
    assert state.current_version is None and state.waiting_for.startswith("needs ")


def seed_detections(project, rows: dict[str, tuple[list[dict], float, bool, bool]]) -> None:
    """A detection version's ranking as `modeling.tasks.rank_boxes_version` writes it, for the screens and the queue:
    per image key, (proposed boxes with scores, confidence, goes to review, shown pre-filled). The detector itself
    is exercised in tests/modeling/test_detection_head.py; here the labelling side reads what it wrote."""
    from modeling.models import ItemPrediction, ModelState, ModelVersion

    version = ModelVersion.objects.create(project=project, number=1, encoder="torchvision:fasterrcnn_mobilenet_v2_fpn",
                                          encoder_version="0.29.1", classes=list(project.classes),
                                          file="versions/v00001.detector.pt", metrics={"kind": "object_detection"})
    ModelState.objects.update_or_create(project=project, defaults={"current_version": version, "ranked_version": 1})
    for key, (boxes, confidence, review, prefill) in rows.items():
        ItemPrediction.objects.create(
            item=item(project, key), project=project, version=1, label=f"{len(boxes)} boxes", confidence=confidence,
            entropy=0.1, uncertainty=1 - confidence, scores=[],
            value={"boxes": boxes, "review": review, "prefill": prefill})


def scored(b: dict, score: float) -> dict:
    return {**b, "score": score}


def test_the_review_queue_serves_confident_images_and_keeping_the_boxes_is_a_confirmed_proposal(api, street, charlie):
    from labeling.models import JudgementSource

    seed_detections(street, {
        "wide.png": ([scored(box(2, 3, 30, 39), 0.97), scored(box(31, 0, 64, 40, "person"), 0.93)], 0.93, True, True),
        "empty.png": ([], 0.99, True, True),  # sure there is nothing to box
        "tall.png": ([scored(box(1, 1, 20, 20), 0.6)], 0.6, False, True),  # shown when labelled, not reviewed
    })
    street.show_model_guesses = False  # the review queue shows the model's boxes all the same
    # TEST is blind (no guess is shown on it): these images are all TRAIN.
    street.test_ratio, street.test_min_judgements = 0.0, 0
    street.save(update_fields=["show_model_guesses", "test_ratio", "test_min_judgements"])
    base = f"/api/projects/{street.pk}"
    assert api.get(f"{base}/stats/").json()["proposals"]["ready"] == 2
    leased = api.get(f"{base}/items/next/?count=3&mode=review").json()
    assert [i["path"] for i in leased] == ["empty.png", "wide.png"]  # most confident first, tall.png not at all
    assert all(i["picked_by"] == "review" and i["stage"] == "TRAIN" for i in leased)
    empty, wide = leased
    assert empty["prediction"]["boxes"] == [] and [b["score"] for b in wide["prediction"]["boxes"]] == [0.97, 0.93]

    kept = [{k: v for k, v in b.items() if k != "score"} for b in wide["prediction"]["boxes"]]
    made = api.post(f"{base}/judgements/", {"item": wide["id"], "boxes": kept}, format="json")
    assert made.status_code == 201 and made.json()["source"] == JudgementSource.CONFIRMED_PROPOSAL
    fixed = api.post(f"{base}/judgements/", {"item": empty["id"], "boxes": [box(3, 3, 9, 9, "person")]}, format="json")
    assert fixed.status_code == 201 and fixed.json()["source"] == JudgementSource.HUMAN  # they drew what it missed
    assert api.get(f"{base}/items/next/?mode=review").json() == []

    # One by one, an image whose proposals are cheaper to fix than drawing opens with them; its answer is the
    # person's even when kept (they were not reviewing).
    [tall] = api.get(f"{base}/items/next/").json()
    assert tall["path"] == "tall.png" and tall["prediction"] is None  # the owner hid the model's guesses
    street.show_model_guesses = True
    street.save(update_fields=["show_model_guesses"])
    [tall] = api.get(f"{base}/items/next/").json()
    assert tall["prediction"]["boxes"] == [scored(box(1, 1, 20, 20), 0.6)]
    made = api.post(f"{base}/judgements/", {"item": tall["id"], "boxes": [box(1, 1, 20, 20)]}, format="json")
    assert made.json()["source"] == JudgementSource.HUMAN

    outsider = APIClient()
    outsider.force_authenticate(charlie)
    real = outsider.get(f"{base}/items/next/?mode=review")
    missing = outsider.get("/api/projects/999999/items/next/?mode=review")
    assert real.status_code == missing.status_code == 404 and real.json() == missing.json()


def test_proposals_are_not_shown_where_fixing_them_costs_more_than_drawing(api, street):
    seed_detections(street, {"tall.png": ([scored(box(1, 1, 20, 20), 0.3)], 0.7, False, False)})
    street.show_model_guesses = True
    street.test_ratio, street.test_min_judgements = 0.0, 0
    street.save(update_fields=["show_model_guesses", "test_ratio", "test_min_judgements"])
    leased = api.get(f"/api/projects/{street.pk}/items/next/?count=3").json()
    tall = next(i for i in leased if i["path"] == "tall.png")
    assert tall["stage"] == "TRAIN", tall
    assert tall["prediction"]["label"] == "1 boxes" and "boxes" not in tall["prediction"]


def test_the_review_queue_takes_over_the_users_own_train_leases_but_never_a_test_one(api, street, bob):
    seed_detections(street, {
        "wide.png": ([scored(box(2, 3, 30, 39), 0.97)], 0.97, True, True),
        "tall.png": ([scored(box(1, 1, 20, 20), 0.95)], 0.95, True, True),
    })
    street.test_ratio, street.test_min_judgements = 0.0, 0
    street.save(update_fields=["test_ratio", "test_min_judgements"])
    base = f"/api/projects/{street.pk}"
    # The labelling screen leases a few images ahead; one of them was drawn for TEST (blind, random).
    assert len(api.get(f"{base}/items/next/?count=3").json()) == 3
    Item.objects.filter(project=street, key="tall.png").update(lease_stage="TEST")
    leased = api.get(f"{base}/items/next/?count=3&mode=review").json()
    assert [(i["path"], i["stage"], i["picked_by"]) for i in leased] == [("wide.png", "TRAIN", "review")]
    tall, wide = item(street, "tall.png"), item(street, "wide.png")
    assert (tall.leased_to, tall.lease_stage, tall.lease_picked_by != "review") == (bob, "TEST", True)
    assert (wide.leased_to, wide.lease_picked_by) == (bob, "review")
