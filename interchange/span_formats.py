"""Sequence tagging's formats, out and in: spans JSONL, CoNLL (BIO) and spaCy's DocBin.

- JSONL, one text per line: `{"id", "text", "spans": [{"start", "end", "label"}]}` (character offsets,
  `end` exclusive) plus the judgement's provenance (labelled_by, stage, source, time_taken, created_at).
- CoNLL (BIO): a `# id = <item>` line (and `# stage =`, `# labelled_by =`), then one `token<TAB>tag` line per
  token (B-type, I-type or O),
  a blank line after each text. Tokens are the item's own (`Item.tokens`, the project model's
  tokenizer), so spans come back exactly; whitespace tokens are left out, as CoNLL has no place for them.
  A file without `# id` lines (most CoNLL in the wild) is matched to items by its text.
- CSV, for a config's `judgements_file: labels.csv` (Light Bulb's sequence example names one): Light
  Bulb's columns (path, label = the summary, labelled_by, stage, time_taken, source) plus `spans`, the
  JSON list.
- DocBin (`.spacy`): what `spacy train` reads; each Doc's `user_data["id"]` names the item. Reading
  and writing it needs spaCy, so only the command line and workers do it (never the web process).

Imports take people's answers only (never an auto-label), for items nobody has labelled yet (the
database is the source of truth), through the same check as the labelling screen and the API
(`LabelKind.validate`), so a file cannot store spans the screen would refuse.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from labeling.models import Judgement, JudgementSource
from projects.ingest import decode_text
from projects.label_kinds import item_text, kind_for
from projects.models import Item, ItemStatus, Project

from .common import InterchangeError, imported_judgement, store_imported, users_named

SEQUENCE_EXPORT_FORMATS = ("jsonl", "conll")  # streamed by the web process; DocBin is written by the command line
SEQUENCE_FILE_FORMATS = {".jsonl": "jsonl", ".conll": "conll", ".bio": "conll", ".iob": "conll", ".csv": "csv",
                         ".spacy": "docbin"}
SPAN_CSV_COLUMNS = ["path", "label", "labelled_by", "stage", "time_taken", "source", "spans"]
ID_LINE = re.compile(r"^#\s*id\s*=\s*(.*)$")
# After `# id`, the judgement's provenance, so a CoNLL judgements file keeps the TEST split when read back.
META_LINE = re.compile(r"^#\s*(stage|labelled_by)\s*=\s*(.*)$")


@dataclass
class SpanRecord:
    """One text's answer read from a file; `key` (the item's id) or `text` finds its item."""

    where: str
    key: str | None
    text: str | None
    spans: list[dict]
    stage: str = ""
    source: str = ""
    labelled_by: str = ""
    time_taken: float | None = None


@dataclass
class TaggedText:
    where: str
    key: str | None
    words: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)  # "stage", "labelled_by" from `# key = value` lines


def format_for_path(path: Path) -> str:
    fmt = SEQUENCE_FILE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InterchangeError(
            f"{path.name}: a sequence project's labels are .jsonl, .conll (or .bio, .iob), .csv or .spacy (DocBin)"
        )
    return fmt


# --------------------------------------------------------------------------------------------------
# Out
# --------------------------------------------------------------------------------------------------


def _tokens(item: Item, text: str) -> list[tuple[int, int]]:
    """The item's tokens; an item the model loop has not tokenized yet splits at whitespace."""
    if item.tokens:
        return [(int(a), int(b)) for a, b in item.tokens]
    return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def bio_tags(tokens: list[tuple[int, int]], spans: Iterable[dict]) -> list[str]:
    tags = ["O"] * len(tokens)
    for span in spans:
        inside = [i for i, (a, b) in enumerate(tokens) if a < span["end"] and span["start"] < b]
        for n, i in enumerate(inside):
            tags[i] = f"{'B' if n == 0 else 'I'}-{span['label']}"
    return tags


def span_jsonl_lines(chosen) -> Iterator[str]:
    for j in chosen.iterator(chunk_size=2000):
        yield json.dumps({
            "id": j.item.key,
            "text": item_text(j.item),
            "spans": list((j.value or {}).get("spans") or []),
            "labelled_by": j.labelled_by,
            "stage": j.stage,
            "source": j.source,
            "seen_by_a_person": j.source != JudgementSource.AUTO,
            "model_version": j.auto_run.version if j.auto_run is not None else None,
            "time_taken": j.time_taken,
            "created_at": j.created_at.isoformat(),
            "is_current": j.is_current,
            "judgement_id": j.pk,
        }, ensure_ascii=False) + "\n"


def span_csv_lines(chosen) -> Iterator[str]:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SPAN_CSV_COLUMNS)
    yield out.getvalue()
    out.seek(0)
    out.truncate()
    for j in chosen.iterator(chunk_size=2000):
        writer.writerow([j.item.key, j.label, j.labelled_by, j.stage, "" if j.time_taken is None else j.time_taken,
                         j.source, json.dumps(list((j.value or {}).get("spans") or []), ensure_ascii=False)])
        yield out.getvalue()
        out.seek(0)
        out.truncate()


def conll_lines(chosen) -> Iterator[str]:
    for j in chosen.iterator(chunk_size=2000):
        text = item_text(j.item)
        tokens = _tokens(j.item, text)
        tags = bio_tags(tokens, (j.value or {}).get("spans") or [])
        lines = [f"# id = {' '.join(j.item.key.split())}\n", f"# stage = {j.stage}\n"]
        if j.labelled_by:
            lines.append(f"# labelled_by = {' '.join(j.labelled_by.split())}\n")
        for (a, b), tag in zip(tokens, tags, strict=True):
            word = text[a:b]
            if word.strip():
                lines.append(f"{''.join(word.split())}\t{tag}\n")
        lines.append("\n")
        yield "".join(lines)


def write_docbin(project: Project, path: Path, *, chosen) -> int:
    """The chosen judgements as a spaCy DocBin at `path` (written atomically). Needs spaCy: command line only."""
    from spacy.tokens import DocBin

    from lightbulb_site.atomic import atomic_write
    from modeling.ml.spans import tokenizer

    nlp_tokenizer = tokenizer()
    docs = DocBin(store_user_data=True)
    n = 0
    for j in chosen.iterator(chunk_size=2000):
        doc = nlp_tokenizer(item_text(j.item))
        ents = []
        for span in (j.value or {}).get("spans") or []:
            ent = doc.char_span(span["start"], span["end"], label=span["label"], alignment_mode="expand")
            if ent is not None:
                ents.append(ent)
        doc.ents = ents
        doc.user_data["id"] = j.item.key
        doc.user_data["stage"] = j.stage
        doc.user_data["source"] = j.source
        doc.user_data["labelled_by"] = j.labelled_by
        docs.add(doc)
        n += 1
    data = docs.to_bytes()
    atomic_write(path, lambda fh: fh.write(data), text=False)
    return n


# --------------------------------------------------------------------------------------------------
# In
# --------------------------------------------------------------------------------------------------


def read_span_jsonl(raw: bytes) -> tuple[list[SpanRecord], list[str]]:
    text, _ = decode_text(raw)
    records: list[SpanRecord] = []
    problems: list[str] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {n}: not JSON ({exc.msg})")
            continue
        if not isinstance(row, dict):
            problems.append(f"line {n}: not a JSON object")
            continue
        spans = row.get("spans")
        if not isinstance(spans, list):
            problems.append(f'line {n}: no "spans" list')
            continue
        key = row.get("id", row.get("path"))
        try:
            time_taken = float(row["time_taken"]) if row.get("time_taken") not in (None, "") else None
        except (TypeError, ValueError):
            time_taken = None
        records.append(SpanRecord(
            where=f"line {n}", key=None if key is None else str(key),
            text=row["text"] if isinstance(row.get("text"), str) else None, spans=spans,
            stage=str(row.get("stage") or ""), source=str(row.get("source") or ""),
            labelled_by=str(row.get("labelled_by") or ""), time_taken=time_taken,
        ))
    return records, problems


def read_span_csv(raw: bytes) -> tuple[list[SpanRecord], list[str]]:
    text, _ = decode_text(raw)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = [f.strip() for f in (reader.fieldnames or [])]
    if "path" not in fields or "spans" not in fields:
        raise InterchangeError(f"a sequence project's CSV needs 'path' and 'spans' columns, found {fields}")
    records: list[SpanRecord] = []
    problems: list[str] = []
    for row in reader:
        row = {(k or "").strip(): (v or "") for k, v in row.items()}
        where = f"line {reader.line_num}"
        try:
            spans = json.loads(row["spans"] or "[]")
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: spans are not JSON ({exc.msg})")
            continue
        try:
            time_taken = float(row["time_taken"]) if row.get("time_taken", "").strip() else None
        except ValueError:
            time_taken = None
        records.append(SpanRecord(where=where, key=row["path"].strip(), text=None, spans=spans,
                                  stage=row.get("stage", ""), source=row.get("source", ""),
                                  labelled_by=row.get("labelled_by", "").strip(), time_taken=time_taken))
    return records, problems


def read_conll(raw: bytes) -> tuple[list[TaggedText], list[str]]:
    """Texts of a CoNLL file: blank lines end a text; the last column is the tag, the first the token."""
    text, _ = decode_text(raw)
    texts: list[TaggedText] = []
    problems: list[str] = []
    current: TaggedText | None = None
    pending_key: str | None = None
    pending_meta: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        match = ID_LINE.match(stripped)
        if match:
            if current is not None and current.words:  # a new text without a blank line before it
                texts.append(current)
            current = None
            pending_key, pending_meta = match.group(1).strip(), {}
            continue
        meta = META_LINE.match(stripped)
        if meta and (current is None or not current.words):
            pending_meta[meta.group(1)] = meta.group(2).strip()
            continue
        if not stripped or stripped.startswith("-DOCSTART-"):
            if current is not None and current.words:
                texts.append(current)
            current = None
            continue
        if stripped.startswith("# ") and "=" in stripped and (current is None or not current.words):
            continue  # another CoNLL-U comment (text = ..., sent_id = ...)
        columns = stripped.split()
        if len(columns) < 2:
            problems.append(f"line {n}: a token line needs the token and its tag")
            continue
        if current is None:
            current = TaggedText(where=f"line {n}", key=pending_key, meta=pending_meta)
            pending_key, pending_meta = None, {}
        current.words.append(columns[0])
        current.tags.append(columns[-1])
    if current is not None and current.words:
        texts.append(current)
    return texts, problems


def spans_from_bio(offsets: list[tuple[int, int]], tags: list[str]) -> tuple[list[dict], str | None]:
    """Spans of BIO (or IOB1) tags over token offsets; an error for a tag that is not B-, I- or O."""
    spans: list[dict] = []
    open_span: dict | None = None
    for (a, b), tag in zip(offsets, tags, strict=True):
        if tag == "O":
            open_span = None
            continue
        prefix, _, label = tag.partition("-")
        if prefix not in {"B", "I"} or not label:
            return [], f"tag {tag!r} is not B-type, I-type or O"
        if prefix == "I" and open_span is not None and open_span["label"] == label:
            open_span["end"] = b
        else:
            open_span = {"start": a, "end": b, "label": label}
            spans.append(open_span)
    return spans, None


def align_words(text: str, words: list[str]) -> list[tuple[int, int]] | None:
    """Each word's offsets in the text, in order (whitespace between them may be anything); None if they do not fit."""
    offsets, at = [], 0
    for word in words:
        found = text.find(word, at)
        if found == -1 or text[at:found].strip():
            return None
        offsets.append((found, found + len(word)))
        at = found + len(word)
    return offsets if not text[at:].strip() else None


def conll_records(project: Project, texts: list[TaggedText]) -> tuple[list[SpanRecord], list[str]]:
    """CoNLL texts as span records: by `# id` where there is one, else by the item whose text the tokens spell."""
    by_key = {key: item for key, item in ((i.key, i) for i in _items(project))}
    by_letters: dict[str, Item | None] = {}
    for item in by_key.values():
        letters = "".join(item_text(item).split())
        by_letters[letters] = None if letters in by_letters else item  # two items with one text: ambiguous
    records: list[SpanRecord] = []
    problems: list[str] = []
    for tagged in texts:
        item = by_key.get(tagged.key) if tagged.key else by_letters.get("".join(tagged.words))
        if item is None:
            what = f"id {tagged.key!r}" if tagged.key else f"text {' '.join(tagged.words)[:60]!r}"
            problems.append(f"{tagged.where}: no item with this {what}")
            continue
        text = item_text(item)
        offsets = align_words(text, tagged.words)
        if offsets is None:
            problems.append(f"{tagged.where}: its tokens do not spell the text of item {item.key!r}")
            continue
        spans, error = spans_from_bio(offsets, tagged.tags)
        if error:
            problems.append(f"{tagged.where}: {error}")
            continue
        records.append(SpanRecord(where=tagged.where, key=item.key, text=text, spans=spans,
                                  stage=tagged.meta.get("stage", ""), labelled_by=tagged.meta.get("labelled_by", "")))
    return records, problems


def read_docbin(project: Project, path: Path) -> tuple[list[SpanRecord], list[str]]:
    """A DocBin's docs as span records (needs spaCy: command line and workers only)."""
    from spacy.tokens import DocBin

    from modeling.ml.spans import load_pipeline

    try:
        docs = list(DocBin().from_disk(path).get_docs(load_pipeline(exclude=["ner"]).vocab))
    except (OSError, ValueError) as exc:
        raise InterchangeError(f"{path.name} is not a spaCy DocBin: {exc}") from exc
    records = []
    for n, doc in enumerate(docs, start=1):
        user = doc.user_data if isinstance(doc.user_data, dict) else {}
        key = user.get("id")
        records.append(SpanRecord(
            where=f"doc {n}", key=None if key is None else str(key), text=doc.text,
            spans=[{"start": e.start_char, "end": e.end_char, "label": e.label_} for e in doc.ents],
            stage=str(user.get("stage") or ""), source=str(user.get("source") or ""),
            labelled_by=str(user.get("labelled_by") or ""),
        ))
    return records, []


def read_span_file(project: Project, path: Path) -> tuple[list[SpanRecord], list[str]]:
    """A labels file of any of the three formats, by its extension; InterchangeError if it cannot be read."""
    fmt = format_for_path(path)
    if fmt == "docbin":
        return read_docbin(project, path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InterchangeError(f"cannot read {path.name}: {exc.strerror or exc}") from exc
    if fmt == "jsonl":
        return read_span_jsonl(raw)
    if fmt == "csv":
        return read_span_csv(raw)
    texts, problems = read_conll(raw)
    records, more = conll_records(project, texts)
    return records, problems + more


def _items(project: Project):
    return project.items.exclude(status=ItemStatus.REJECTED).only("id", "key", "text", "data", "tokens")


def do_import_span_records(project: Project, *, records: list[SpanRecord]) -> tuple[int, list[str]]:
    """Store span records as judgements. Returns (imported, problems).

    Preconditions: a sequence project. Only items with no judgement yet take a record (the database is the
    source of truth, and a re-import adds nothing twice); records for one item import in file order, the
    last one current. A record whose text differs from its item's, or whose spans the labelling screen
    would refuse, is a problem, not an import."""
    kind = kind_for(project)
    if not kind.structured:
        raise InterchangeError("span files import into sequence tagging projects only")
    items = {item.key: item for item in _items(project)}
    by_text: dict[str, Item | None] = {}
    for item in items.values():
        text = item_text(item)
        by_text[text] = None if text in by_text else item
    already = set(Judgement.objects.filter(project=project).values_list("item_id", flat=True).distinct())
    users = users_named(records)
    problems: list[str] = []
    per_item: dict[int, list[Judgement]] = {}
    for record in records:
        item = items.get(record.key) if record.key is not None else by_text.get(record.text or "")
        if item is None:
            problems.append(f"{record.where}: no item with id {record.key!r}" if record.key is not None
                            else f"{record.where}: no single item has this text")
            continue
        if record.text is not None and record.text != item_text(item):
            problems.append(f"{record.where}: its text is not item {item.key!r}'s text")
            continue
        made = imported_judgement(project, kind=kind, item=item, value={"spans": record.spans}, record=record,
                                  users=users)
        if isinstance(made, str):
            problems.append(made)
        elif item.pk not in already:
            per_item.setdefault(item.pk, []).append(made)
    return store_imported(project, per_item), problems

