"""A sequence project's labels out and in: spans JSONL, CoNLL (BIO) and spaCy's DocBin round trips, real WNUT-16
CoNLL matched by text, bad rows reported and not stored, and who may export."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from interchange.span_formats import (
    align_words,
    bio_tags,
    do_import_span_records,
    read_conll,
    read_span_file,
    spans_from_bio,
)
from labeling.models import Judgement, Stage
from labeling.services import do_record_judgement
from projects.models import Item, ItemStatus, Role
from projects.services import do_add_member
from tests.conftest import SHARED
from tests.labeling.test_spans import TWEETS, make_sequence_project, span

pytestmark = pytest.mark.django_db

WNUT = SHARED / "datasets" / "wnut16_ner"


def answers(project) -> dict[str, tuple[dict, str]]:
    return {j.item.key: (j.value, j.stage)
            for j in Judgement.objects.filter(project=project, is_current=True).select_related("item")}


@pytest.fixture
def labelled(tmp_path, alice):
    """Three tweets labelled through the service: two spans, none, two spans (one TEST by stage choice)."""
    project = make_sequence_project(tmp_path / "a")
    first, second, third = (Item.objects.get(project=project, key=f"t{i}") for i in range(3))
    do_record_judgement(project, item=first, user=alice, role=Role.OWNER, value={"spans": [
        span(first.text, "New York", "geo-loc"), span(first.text, "Alice", "person")]})
    do_record_judgement(project, item=second, user=alice, role=Role.OWNER, value={"spans": []})
    do_record_judgement(project, item=third, user=alice, role=Role.OWNER, value={"spans": [
        span(third.text, "Apple", "company"), span(third.text, "Paris", "geo-loc")]})
    return project


def fresh_copy(tmp_path, name: str):
    """The same tweets in a second project with no labels (the target of an import)."""
    return make_sequence_project(tmp_path / name, title=f"Copy {name}")


def download(client, project, fmt: str) -> str:
    response = client.get(f"/projects/{project.pk}/export/?as={fmt}")
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content).decode("utf-8")


@pytest.mark.parametrize("fmt,suffix", [("jsonl", ".jsonl"), ("conll", ".conll")])
def test_it_round_trips_through_the_export_page(labelled, tmp_path, alice, client, fmt, suffix):
    client.force_login(alice)
    text = download(client, labelled, fmt)
    path = tmp_path / f"labels{suffix}"
    path.write_text(text, encoding="utf-8")
    target = fresh_copy(tmp_path, "b")
    records, problems = read_span_file(target, path)
    imported, more = do_import_span_records(target, records=records)
    assert (imported, problems + more) == (3, [])
    assert answers(target) == answers(labelled)  # spans and stages (CoNLL keeps them in `#` lines)
    assert set(target.items.values_list("status", flat=True)) == {ItemStatus.LABELLED}
    # Importing again adds nothing: the items are labelled now.
    assert do_import_span_records(target, records=records) == (0, [])


def test_its_conll_is_bio_with_an_id_line_per_text(labelled, alice, client):
    client.force_login(alice)
    text = download(client, labelled, "conll")
    blocks = [b for b in text.split("\n\n") if b.strip()]
    assert blocks[0].splitlines() == ["# id = t0", "# stage = TEST", "# labelled_by = alice", "Heading\tO", "to\tO",
                                      "New\tB-geo-loc", "York\tI-geo-loc", "with\tO", "Alice\tB-person",
                                      "tomorrow\tO"]
    assert len(blocks) == 3


def test_its_jsonl_has_id_text_and_spans(labelled, alice, client):
    client.force_login(alice)
    rows = [json.loads(line) for line in download(client, labelled, "jsonl").splitlines()]
    assert rows[0]["id"] == "t0" and rows[0]["text"] == TWEETS[0]
    assert rows[0]["spans"] == [span(TWEETS[0], "New York", "geo-loc"), span(TWEETS[0], "Alice", "person")]
    assert rows[1]["spans"] == [] and rows[0]["labelled_by"] == "alice" and rows[0]["source"] == "human"


def test_it_round_trips_through_docbin_on_the_command_line(labelled, tmp_path):
    path = tmp_path / "labels.spacy"
    err = StringIO()
    call_command("export_judgements", labelled.slug, "--format", "docbin", "-o", str(path), stderr=err)
    assert "wrote 3 text(s)" in err.getvalue() and path.stat().st_size > 0
    target = fresh_copy(tmp_path, "b")
    out = StringIO()
    call_command("import_labels", str(target.pk), str(path), stdout=out, stderr=StringIO())
    assert "imported 3 judgement(s); 0 not imported" in out.getvalue()
    assert answers(target) == answers(labelled)


def test_it_matches_real_wnut16_conll_by_text(tmp_path, alice):
    """WNUT-16's own CoNLL has no ids: each tweet finds its item by its text; its spans are WNUT's."""
    if not WNUT.exists():
        pytest.skip("../shared/datasets/wnut16_ner is not here")
    rows = [json.loads(line) for line in (WNUT / "labels.jsonl").read_text(encoding="utf-8").splitlines()[:25]]
    project = make_sequence_project(tmp_path / "w", texts=[r["text"] for r in rows], tokenize=False)
    blocks = (WNUT / "labels.conll").read_text(encoding="utf-8").split("\n\n")[:25]
    path = tmp_path / "wnut.conll"
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    project.classes = sorted({s["label"] for r in rows for s in r["spans"]} | {"person"})
    project.save(update_fields=["classes"])
    records, problems = read_span_file(project, path)
    imported, more = do_import_span_records(project, records=records)
    assert (imported, problems + more) == (25, [])
    got = answers(project)
    for n, row in enumerate(rows):
        assert got[f"t{n}"][0] == {"spans": sorted(row["spans"], key=lambda s: s["start"])}, row["id"]


def test_it_reports_bad_rows_and_stores_none_of_them(tmp_path, alice):
    target = make_sequence_project(tmp_path / "b", title="Target")
    lines = [
        {"id": "t0", "text": TWEETS[0], "spans": [span(TWEETS[0], "New York", "city")]},  # unknown type
        {"id": "t1", "text": "another text", "spans": []},  # not the item's text
        {"id": "nope", "text": TWEETS[2], "spans": []},  # no such item
        {"id": "t2", "text": TWEETS[2], "spans": [{"start": 0, "end": 3, "label": "company"}]},  # off tokens
        {"id": "t2", "stage": "AUTO", "spans": []},  # an auto-label
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + "not json\n", encoding="utf-8")
    records, problems = read_span_file(target, path)
    imported, more = do_import_span_records(target, records=records)
    problems += more
    assert imported == 0 and len(problems) == 6
    joined = "\n".join(problems)
    for needle in ("line 6: not JSON", "not an entity type", "not item 't1''s text", "no item with id 'nope'",
                   "token boundaries", "auto-label"):
        assert needle in joined, joined
    assert not Judgement.objects.filter(project=target).exists()


def test_it_refuses_bad_conll_tags_and_tokens_that_do_not_spell_the_text(tmp_path, alice):
    target = make_sequence_project(tmp_path / "b", title="Target")
    path = tmp_path / "bad.conll"
    good = "\n".join(f"{w}\tO" for w in TWEETS[1].split()).replace("see\tO", "see\tX-geo")
    path.write_text(f"# id = t1\n{good}\n\n# id = t2\nBanana\tO\n\n", encoding="utf-8")
    records, problems = read_span_file(target, path)
    assert records == [] and len(problems) == 2
    assert "is not B-type, I-type or O" in problems[0] and "do not spell the text" in problems[1]


def test_bio_helpers_agree_with_each_other():
    text = "Heading to New  York"
    offsets = align_words(text, ["Heading", "to", "New", "York"])
    assert offsets == [(0, 7), (8, 10), (11, 14), (16, 20)]
    spans = [{"start": 11, "end": 20, "label": "geo-loc"}]
    assert bio_tags(offsets, spans) == ["O", "O", "B-geo-loc", "I-geo-loc"]
    assert spans_from_bio(offsets, ["O", "O", "B-geo-loc", "I-geo-loc"]) == (spans, None)
    # IOB1 (I- opening a span) reads too; a new B- after I- starts a second span.
    assert spans_from_bio(offsets, ["I-person", "O", "B-geo-loc", "B-geo-loc"])[0] == [
        {"start": 0, "end": 7, "label": "person"}, {"start": 11, "end": 14, "label": "geo-loc"},
        {"start": 16, "end": 20, "label": "geo-loc"}]
    texts, problems = read_conll(b"-DOCSTART- O\n\n# id = a\nx\tO\n# id = b\ny\tB-t\n")
    assert [(t.key, t.words, t.tags) for t in texts] == [("a", ["x"], ["O"]), ("b", ["y"], ["B-t"])] and not problems


def test_it_imports_a_conll_judgements_file_with_the_config_and_keeps_it_in_sync(tmp_path, alice):
    from interchange.config import load_config
    from interchange.importer import do_import_config
    from interchange.judgements_file import sync_judgements_file
    from tests.conftest import write_config

    project = make_sequence_project(tmp_path)
    (tmp_path / "labels.conll").write_text("# id = t0\nHeading\tO\nto\tO\nNew\tB-geo-loc\nYork\tI-geo-loc\nwith\tO\n"
                                           "Alice\tB-person\ntomorrow\tO\n\n", encoding="utf-8")
    cfg = write_config(
        tmp_path / "ner.yml",
        "task: {title: Tweets NER}\ndataset: {directory: data, data_type: text, judgements_file: labels.conll}\n"
        "label: {type: sequence, classes: [person, geo-loc, company]}\nmodel: {directory: out}\nuser: alice\n",
    )
    result = do_import_config(load_config(cfg))
    assert result.project.pk == project.pk and result.judgements_imported == 1, result.warnings
    assert answers(project)["t0"][0] == {"spans": [span(TWEETS[0], "New York", "geo-loc"),
                                                   span(TWEETS[0], "Alice", "person")]}
    third = Item.objects.get(project=project, key="t2")
    do_record_judgement(project, item=third, user=alice, role=Role.OWNER,
                        value={"spans": [span(TWEETS[2], "Paris", "geo-loc")]})
    project.refresh_from_db()
    assert sync_judgements_file(project) == 2
    written = (tmp_path / "labels.conll").read_text(encoding="utf-8")
    assert "# id = t2\n" in written and "Paris\tB-geo-loc\n" in written and "# id = t0\n" in written


def test_a_sequence_config_refuses_a_docbin_judgements_file(tmp_path):
    from interchange.config import ConfigError, load_config
    from tests.conftest import write_config

    (tmp_path / "data").mkdir()
    cfg = write_config(
        tmp_path / "ner.yml",
        "task: {title: T}\ndataset: {directory: data, data_type: text, judgements_file: labels.spacy}\n"
        "label: {type: sequence, classes: [person]}\nmodel: {directory: out}\nuser: alice\n",
    )
    with pytest.raises(ConfigError, match="import a DocBin"):
        load_config(cfg)


def test_the_api_exports_spans_and_refuses_formats_of_other_kinds(labelled, image_project, alice, bob, charlie):
    client = APIClient()
    client.force_authenticate(alice)
    conll = client.get(f"/api/projects/{labelled.pk}/export/?as=conll")
    assert conll.status_code == 200 and conll["Content-Type"].startswith("text/plain")
    assert conll["Content-Disposition"].endswith('.conll"')
    assert b"New\tB-geo-loc" in b"".join(conll.streaming_content)
    default = client.get(f"/api/projects/{labelled.pk}/export/")
    assert json.loads(b"".join(default.streaming_content).splitlines()[0])["id"] == "t0"
    csv = client.get(f"/api/projects/{labelled.pk}/export/?as=csv")
    assert csv.status_code == 400 and "jsonl or conll" in csv.json()["detail"]
    other = client.get(f"/api/projects/{image_project.pk}/export/?as=conll")
    assert other.status_code == 400 and "csv or jsonl" in other.json()["detail"]

    # Annotators read their own labels through the judgements API; outsiders get the same 404 as for nothing.
    do_add_member(labelled, user=bob, role=Role.ANNOTATOR)
    client.force_authenticate(bob)
    assert client.get(f"/api/projects/{labelled.pk}/export/?as=conll").status_code == 403
    client.force_authenticate(charlie)
    real = client.get(f"/api/projects/{labelled.pk}/export/?as=conll")
    missing = client.get("/api/projects/999999/export/?as=conll")
    assert real.status_code == missing.status_code == 404 and real.json() == missing.json()


def test_a_stage_in_the_file_is_kept(tmp_path, alice):
    target = make_sequence_project(tmp_path / "b", title="Target")
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps({"id": "t1", "text": TWEETS[1], "spans": [], "stage": "TEST"}) + "\n", encoding="utf-8")
    records, _ = read_span_file(target, path)
    assert do_import_span_records(target, records=records) == (1, [])
    assert answers(target)["t1"] == ({"spans": []}, Stage.TEST)


def test_it_round_trips_a_csv_judgements_file_with_a_spans_column(labelled, tmp_path):
    """Light Bulb's own sequence example names labels.csv: Light Bulb's columns plus the spans as JSON."""
    from interchange.judgements_file import atomic_write_text, write_judgements

    path = tmp_path / "labels.csv"
    assert atomic_write_text(path, lambda fh: write_judgements(labelled, fmt="csv", out=fh)) == 3
    header, first = path.read_text(encoding="utf-8").splitlines()[:2]
    assert header == "path,label,labelled_by,stage,time_taken,source,spans"
    assert first.startswith("t0,2 spans,alice,")
    target = fresh_copy(tmp_path, "b")
    records, problems = read_span_file(target, path)
    assert do_import_span_records(target, records=records) == (3, []) and not problems
    assert answers(target) == answers(labelled)


def test_light_bulbs_own_sequence_example_still_imports(tmp_path, settings):
    """docs/examples/short_sequence_labelling.yml as written (JSON items, labels.csv), over a small dataset."""
    import shutil

    from interchange.config import load_config
    from interchange.importer import do_import_config

    shutil.copy(Path(settings.BASE_DIR) / "docs" / "examples" / "short_sequence_labelling.yml", tmp_path / "ex.yml")
    data = tmp_path / "dataset" / "short_sequence_labelling"
    data.mkdir(parents=True)
    (data / "a.json").write_text(json.dumps({"text": "Chris lives in Lisbon"}), encoding="utf-8")
    result = do_import_config(load_config(tmp_path / "ex.yml"))
    assert result.project.label_type == "sequence" and result.project.classes == ["LOC", "NAME"]
    assert result.project.items.count() == 1 and result.judgements_imported == 0
    assert (tmp_path / "outputs" / "short_sequence_labelling" / "labels.csv").read_text(encoding="utf-8") == (
        "path,label,labelled_by,stage,time_taken,source,spans\n")
