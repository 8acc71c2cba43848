"""Object detection's formats, out and in: COCO JSON, Pascal VOC XML, YOLO txt and CSV.

Boxes are kept in pixels of the original image (`{"xmin", "ymin", "xmax", "ymax", "label"}`, x to the right,
y down from the top-left corner, `xmax`/`ymax` where the box ends); each format's own convention is converted
on the way out and back:

- COCO JSON (one file): `images` (`file_name` = the item's path, `width`, `height`, and a `lightbulb` object
  with the judgement's stage, who labelled it and its source), `annotations` (`bbox` = [x, y, width, height],
  `category_id`), `categories` (ids 1… in the project's class order). An image with no annotations was
  labelled "no objects here".
- Pascal VOC (a zip): `Annotations/<path>.xml` per image, with `<filename>`, `<path>` (the item's path),
  `<size>` and one `<object>` (`<name>`, `<bndbox>`) per box, plus a `<lightbulb>` element with the
  provenance, which VOC readers skip. Coordinates are written as they are stored (no 1-based shift: the
  tools that write VOC today, LabelImg, CVAT, Label Studio, disagree on it, and a round trip must not move
  a box by a pixel).
- YOLO (a zip): `classes.txt` and `data.yaml` (the class names, in id order) and `labels/<path>.txt` per
  image, a `class cx cy w h` line per box, normalised to the image's size. YOLO has no provenance: its
  boxes import as TRAIN.
- CSV: `path,xmin,ymin,xmax,ymax,label` (one row per box: the form of ../shared/datasets/trees and most
  detection CSVs), then `stage,labelled_by,source,time_taken,judgement_id`. An image labelled with no
  boxes is one row with the coordinates and label empty.

Imports take people's answers only, for images nobody has labelled yet (the database is the source of truth),
through the same check as the labelling screen and the API (`LabelKind.validate`), so a file cannot store a
box the screen would refuse. An image whose boxes do not all pass is not imported (and said why), rather
than imported with some of its boxes missing.
"""

from __future__ import annotations

import csv
import io
import json
import math
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from xml.etree import ElementTree

import yaml

from labeling.models import Judgement
from projects.ingest import decode_text
from projects.label_kinds import image_size, kind_for, pixel
from projects.models import Item, ItemStatus, Project

from .common import InterchangeError, imported_judgement, store_imported, users_named

BOX_EXPORT_FORMATS = ("coco", "voc", "yolo", "csv")
BOX_FILE_SUFFIXES = (".csv", ".json", ".zip", "a folder of VOC .xml or YOLO .txt files")
BOX_CSV_COLUMNS = ["path", "xmin", "ymin", "xmax", "ymax", "label", "stage", "labelled_by", "source", "time_taken",
                   "judgement_id"]
COORDS = ("xmin", "ymin", "xmax", "ymax")
# A labels file bigger than this is not a labels file (a zip bomb, a dataset zipped by mistake).
MAX_LABEL_BYTES = 200 * 1024 * 1024


@dataclass
class BoxRecord:
    """One image's answer read from a file; `key` (the item's path) finds its item, else `name` (its file name)."""

    where: str
    key: str
    boxes: list[dict]
    name: str = ""
    stage: str = ""
    source: str = ""
    labelled_by: str = ""
    time_taken: float | None = None
    problem: str = ""  # a box that could not be read: the image is not imported
    extra: dict = field(default_factory=dict)


def _number(value: float | int) -> str:
    """A coordinate as text: whole pixels without a decimal point, else as stored (to 1/100 pixel)."""
    return str(pixel(value))


def _boxes(j: Judgement) -> list[dict]:
    return list((j.value or {}).get("boxes") or [])


def _provenance(j: Judgement) -> dict:
    return {"stage": j.stage, "labelled_by": j.labelled_by, "source": j.source, "time_taken": j.time_taken,
            "created_at": j.created_at.isoformat(), "judgement_id": j.pk}


# --------------------------------------------------------------------------------------------------
# Out
# --------------------------------------------------------------------------------------------------


def box_csv_lines(chosen) -> Iterator[str]:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")

    def take() -> str:
        text = out.getvalue()
        out.seek(0)
        out.truncate()
        return text

    writer.writerow(BOX_CSV_COLUMNS)
    yield take()
    for j in chosen.iterator(chunk_size=2000):
        tail = [j.stage, j.labelled_by, j.source, "" if j.time_taken is None else j.time_taken, j.pk]
        boxes = _boxes(j)
        if not boxes:
            writer.writerow([j.item.key, "", "", "", "", "", *tail])
        for b in boxes:
            writer.writerow([j.item.key, *(_number(b[k]) for k in COORDS), b["label"], *tail])
        yield take()


def coco_lines(project: Project, chosen) -> Iterator[str]:
    """COCO JSON, streamed: the images (one pass), then the annotations (a second), then the categories. An
    image's id is its judgement's, and the second pass keeps only images the first listed, so a label changed
    between the two passes can never give an annotation to the wrong image."""
    category = {name: n for n, name in enumerate(project.classes, start=1)}
    yield '{"info": ' + json.dumps({"description": project.title, "version": "1.0",
                                     "contributor": "Light Bulb"}, ensure_ascii=False)
    yield ', "licenses": [], "images": ['
    listed: set[int] = set()
    for n, j in enumerate(chosen.iterator(chunk_size=2000)):
        width, height = image_size(j.item)
        image = {"id": j.pk, "file_name": j.item.key, "width": width, "height": height, "lightbulb": _provenance(j)}
        listed.add(j.pk)
        yield ("," if n else "") + "\n" + json.dumps(image, ensure_ascii=False)
    yield '\n], "annotations": ['
    ann = 0
    for j in chosen.iterator(chunk_size=2000):
        if j.pk not in listed:
            continue
        for b in _boxes(j):
            w, h = pixel(b["xmax"] - b["xmin"]), pixel(b["ymax"] - b["ymin"])
            row = {"id": ann + 1, "image_id": j.pk, "category_id": category.get(b["label"], 0),
                   "bbox": [b["xmin"], b["ymin"], w, h], "area": pixel(w * h), "iscrowd": 0}
            yield ("," if ann else "") + "\n" + json.dumps(row)
            ann += 1
    categories = [{"id": n, "name": name, "supercategory": ""} for name, n in category.items()]
    yield '\n], "categories": ' + json.dumps(categories, ensure_ascii=False) + "}\n"


def _voc_xml(j: Judgement) -> bytes:
    item = j.item
    width, height = image_size(item)
    root = ElementTree.Element("annotation")
    path = PurePosixPath(item.key)
    ElementTree.SubElement(root, "folder").text = str(path.parent) if str(path.parent) != "." else ""
    ElementTree.SubElement(root, "filename").text = path.name
    ElementTree.SubElement(root, "path").text = item.key
    ElementTree.SubElement(ElementTree.SubElement(root, "source"), "database").text = "Light Bulb"
    size = ElementTree.SubElement(root, "size")
    ElementTree.SubElement(size, "width").text = "" if width is None else str(width)
    ElementTree.SubElement(size, "height").text = "" if height is None else str(height)
    ElementTree.SubElement(size, "depth").text = "3"
    ElementTree.SubElement(root, "segmented").text = "0"
    for b in _boxes(j):
        obj = ElementTree.SubElement(root, "object")
        ElementTree.SubElement(obj, "name").text = b["label"]
        ElementTree.SubElement(obj, "pose").text = "Unspecified"
        ElementTree.SubElement(obj, "truncated").text = "0"
        ElementTree.SubElement(obj, "difficult").text = "0"
        box = ElementTree.SubElement(obj, "bndbox")
        for k in COORDS:
            ElementTree.SubElement(box, k).text = _number(b[k])
    meta = ElementTree.SubElement(root, "lightbulb")
    for k, v in _provenance(j).items():
        ElementTree.SubElement(meta, k).text = "" if v is None else str(v)
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)


class _Chunks(io.RawIOBase):
    """A write-only stream zipfile writes into, handing back what was written since the last take()."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def _zip_stream(files: Iterator[tuple[str, bytes]]) -> Iterator[bytes]:
    """A zip archive, streamed file by file (zipfile writes data descriptors on a stream it cannot seek)."""
    sink = _Chunks()
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files:
            archive.writestr(name, data)
            yield sink.take()
    yield sink.take()


def _member(key: str, folder: str, suffix: str) -> str:
    """A zip member for an item: its path (made safe: no absolute or `..` parts) under `folder`, new suffix."""
    parts = [p for p in PurePosixPath(key.replace("\\", "/")).parts if p not in ("", ".", "..", "/")]
    return str(PurePosixPath(folder, *parts).with_suffix(suffix)) if parts else f"{folder}/unnamed{suffix}"


def voc_chunks(chosen) -> Iterator[bytes]:
    return _zip_stream((_member(j.item.key, "Annotations", ".xml"), _voc_xml(j))
                       for j in chosen.iterator(chunk_size=2000))


def _yolo_txt(project: Project, j: Judgement) -> bytes:
    width, height = image_size(j.item)
    if not width or not height:
        raise InterchangeError(f"image {j.item.key!r} has no known size: YOLO's coordinates are fractions of it")
    ids = {name: n for n, name in enumerate(project.classes)}
    lines = []
    for b in _boxes(j):
        cx, cy = (b["xmin"] + b["xmax"]) / 2 / width, (b["ymin"] + b["ymax"]) / 2 / height
        w, h = (b["xmax"] - b["xmin"]) / width, (b["ymax"] - b["ymin"]) / height
        # Eight decimals: a box comes back to the 1/100 pixel it was stored at on images up to 10^6 pixels wide.
        lines.append(f"{ids[b['label']]} {cx:.8f} {cy:.8f} {w:.8f} {h:.8f}\n")
    return "".join(lines).encode()


def yolo_chunks(project: Project, chosen) -> Iterator[bytes]:
    def files() -> Iterator[tuple[str, bytes]]:
        yield "classes.txt", "".join(f"{name}\n" for name in project.classes).encode()
        names = {n: name for n, name in enumerate(project.classes)}
        yield "data.yaml", yaml.safe_dump({"nc": len(names), "names": names}, allow_unicode=True).encode()
        for j in chosen.iterator(chunk_size=2000):
            yield _member(j.item.key, "labels", ".txt"), _yolo_txt(project, j)

    return _zip_stream(files())


def box_export_chunks(project: Project, chosen, *, fmt: str) -> Iterator[bytes]:
    """The export as bytes, streamed from the database."""
    if fmt == "coco":
        return (line.encode("utf-8") for line in coco_lines(project, chosen))
    if fmt == "voc":
        return voc_chunks(chosen)
    if fmt == "yolo":
        return yolo_chunks(project, chosen)
    return (line.encode("utf-8") for line in box_csv_lines(chosen))


# --------------------------------------------------------------------------------------------------
# In
# --------------------------------------------------------------------------------------------------


def _float(raw: object) -> float | None:
    try:
        value = float(str(raw).strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _time(raw: object) -> float | None:
    return None if raw in (None, "") else _float(raw)


def read_box_csv(raw: bytes) -> tuple[list[BoxRecord], list[str]]:
    text, _ = decode_text(raw)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = [f.strip() for f in (reader.fieldnames or [])]
    missing = [c for c in ("path", *COORDS, "label") if c not in fields]
    if missing:
        raise InterchangeError(f"a detection CSV needs the columns path,xmin,ymin,xmax,ymax,label; "
                               f"missing {', '.join(missing)} (found {', '.join(fields) or 'none'})")
    records: dict[tuple[str, str], BoxRecord] = {}  # by (path, judgement_id), in the order they first appear
    for row in reader:
        # Cells past the header (csv puts them under None) are not ours to guess at.
        row = {k.strip(): (v or "").strip() for k, v in row.items() if isinstance(k, str) and isinstance(v, str)}
        where = f"line {reader.line_num}"
        path = row["path"]
        if not path:
            continue
        record = records.get((path, row.get("judgement_id", "")))
        if record is None:
            record = BoxRecord(where=where, key=path, boxes=[], stage=row.get("stage", ""),
                               source=row.get("source", ""), labelled_by=row.get("labelled_by", ""),
                               time_taken=_time(row.get("time_taken")))
            records[(path, row.get("judgement_id", ""))] = record
        if not any(row[c] for c in (*COORDS, "label")):
            continue  # the row of an image labelled "no objects here"
        coords = [_float(row[c]) for c in COORDS]
        if any(c is None for c in coords):
            record.problem = record.problem or f"{where}: xmin, ymin, xmax and ymax must be numbers"
            continue
        record.boxes.append(dict(zip(COORDS, coords, strict=True), label=row["label"]))
    return list(records.values()), []


def read_coco(raw: bytes) -> tuple[list[BoxRecord], list[str]]:
    text, _ = decode_text(raw)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InterchangeError(f"not COCO JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise InterchangeError('not COCO JSON: no "images" list')
    categories = {c.get("id"): str(c.get("name", "")) for c in doc.get("categories") or [] if isinstance(c, dict)}
    records: dict[object, BoxRecord] = {}
    problems: list[str] = []
    for n, image in enumerate(doc["images"], start=1):
        if not isinstance(image, dict) or not isinstance(image.get("file_name"), str):
            problems.append(f"image {n}: no file_name")
            continue
        meta: dict = image["lightbulb"] if isinstance(image.get("lightbulb"), dict) else {}
        records[image.get("id")] = BoxRecord(
            where=f"image {n} ({image['file_name'][:60]})", key=image["file_name"], boxes=[],
            name=PurePosixPath(image["file_name"]).name, stage=str(meta.get("stage") or ""),
            source=str(meta.get("source") or ""), labelled_by=str(meta.get("labelled_by") or ""),
            time_taken=_time(meta.get("time_taken")),
        )
    for n, ann in enumerate(doc.get("annotations") or [], start=1):
        record = records.get(ann.get("image_id")) if isinstance(ann, dict) else None
        if record is None:
            problems.append(f"annotation {n}: no image with its image_id")
            continue
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or any(_float(v) is None for v in bbox):
            record.problem = record.problem or f"annotation {n}: bbox must be [x, y, width, height]"
            continue
        x, y, w, h = (float(v) for v in bbox)
        label = categories.get(ann.get("category_id"))
        if label is None:
            record.problem = record.problem or (
                f"annotation {n}: category_id {ann.get('category_id')!r} is not in categories")
            continue
        record.boxes.append({"xmin": x, "ymin": y, "xmax": x + w, "ymax": y + h, "label": label})
    return list(records.values()), problems


def read_voc(raw: bytes, *, where: str) -> BoxRecord:
    """One VOC annotation file. Python's expat (2.4.1 and newer) refuses entity expansion attacks, and
    ElementTree never fetches external entities."""
    try:
        root = ElementTree.fromstring(raw)
    except ElementTree.ParseError as exc:
        return BoxRecord(where=where, key="", boxes=[], problem=f"{where}: not XML ({exc})")
    if root.tag != "annotation":
        return BoxRecord(where=where, key="", boxes=[], problem=f"{where}: not a Pascal VOC annotation")
    meta = root.find("lightbulb")
    get = (lambda k: (meta.findtext(k) or "").strip()) if meta is not None else (lambda k: "")
    record = BoxRecord(where=where, key=(root.findtext("path") or "").strip(), boxes=[],
                       name=(root.findtext("filename") or "").strip(), stage=get("stage"), source=get("source"),
                       labelled_by=get("labelled_by"), time_taken=_time(get("time_taken")))
    for n, obj in enumerate(root.iter("object"), start=1):
        box = obj.find("bndbox")
        coords = [_float(box.findtext(k)) if box is not None else None for k in COORDS]
        if any(c is None for c in coords):
            record.problem = record.problem or f"{where}: object {n} has no numeric bndbox"
            continue
        record.boxes.append(dict(zip(COORDS, coords, strict=True), label=(obj.findtext("name") or "").strip()))
    return record


def read_yolo(raw: bytes, *, where: str, key: str, classes: list[str], size: tuple[int | None, int | None],
              ) -> BoxRecord:
    """One YOLO label file; `size` is the image's (from its item), as YOLO keeps fractions of it."""
    record = BoxRecord(where=where, key=key, boxes=[], name=PurePosixPath(key).name)
    width, height = size
    if not width or not height:
        record.problem = f"{where}: the image's size is unknown, so its fractional boxes cannot be placed"
        return record
    text, _ = decode_text(raw)
    for n, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        numbers = [_float(p) for p in parts[1:5]]
        if len(parts) < 5 or not parts[0].isdigit() or any(v is None for v in numbers):
            record.problem = record.problem or f"{where} line {n}: a YOLO line is `class cx cy w h`"
            continue
        cls = int(parts[0])
        if cls >= len(classes):
            record.problem = record.problem or f"{where} line {n}: class {cls} is not in classes.txt / data.yaml"
            continue
        cx, cy, w, h = (float(v) for v in numbers)  # type: ignore[arg-type]
        record.boxes.append({"xmin": (cx - w / 2) * width, "ymin": (cy - h / 2) * height,
                             "xmax": (cx + w / 2) * width, "ymax": (cy + h / 2) * height, "label": classes[cls]})
    return record


def _yolo_classes(files: dict[str, bytes], project: Project) -> list[str]:
    for name, data in files.items():
        if PurePosixPath(name).name == "data.yaml":
            names = (yaml.safe_load(decode_text(data)[0]) or {}).get("names")
            if isinstance(names, dict):
                return [str(names[k]) for k in sorted(names)]
            if isinstance(names, list):
                return [str(n) for n in names]
    for name, data in files.items():
        if PurePosixPath(name).name in ("classes.txt", "obj.names"):
            return [line.strip() for line in decode_text(data)[0].splitlines() if line.strip()]
    return list(project.classes)  # a bare folder of label files: the project's own order, as we write it


def _read_members(project: Project, files: dict[str, bytes]) -> tuple[list[BoxRecord], list[str]]:
    """The records in a VOC or YOLO set of files (a zip's members or a folder's files, by relative path)."""
    xmls = {name: data for name, data in files.items() if name.lower().endswith(".xml")}
    if xmls:
        return [read_voc(data, where=name) for name, data in sorted(xmls.items())], []
    txts = {name: data for name, data in files.items()
            if name.lower().endswith(".txt") and PurePosixPath(name).name not in ("classes.txt", "obj.names")}
    if not txts:
        raise InterchangeError("no Pascal VOC .xml or YOLO .txt label files found")
    classes = _yolo_classes(files, project)
    finder = ItemFinder(project)
    records: list[BoxRecord] = []
    problems: list[str] = []
    for name, data in sorted(txts.items()):
        rel = PurePosixPath(name)
        if rel.parts and rel.parts[0] == "labels":
            rel = PurePosixPath(*rel.parts[1:])
        item = finder.by_stem(str(rel.with_suffix("")))
        if item is None:
            problems.append(f"{name}: no single image is named {rel.with_suffix('')}")
            continue
        records.append(read_yolo(data, where=name, key=item.key, classes=classes, size=image_size(item)))
    return records, problems


def read_box_file(project: Project, path: Path) -> tuple[list[BoxRecord], list[str]]:
    """A labels file of any of the four formats: .csv, .json (COCO), a .zip (VOC or YOLO), or a folder of
    VOC .xml or YOLO .txt files. InterchangeError if it cannot be read at all."""
    if path.is_dir():
        files = {str(p.relative_to(path).as_posix()): p.read_bytes() for p in sorted(path.rglob("*"))
                 if p.is_file() and p.suffix.lower() in (".xml", ".txt", ".yaml")}
        return _read_members(project, files)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json", ".zip"):
        raise InterchangeError(f"{path.name}: a detection project's labels are {', '.join(BOX_FILE_SUFFIXES)}")
    try:
        if path.stat().st_size > MAX_LABEL_BYTES:
            raise InterchangeError(f"{path.name} is over {MAX_LABEL_BYTES // 2**20} MB: not a labels file")
        if suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.infolist() if not m.is_dir()]
                if sum(m.file_size for m in members) > MAX_LABEL_BYTES:
                    raise InterchangeError(f"{path.name} unpacks to over {MAX_LABEL_BYTES // 2**20} MB")
                files = {m.filename: archive.read(m) for m in members
                         if m.filename.lower().endswith((".xml", ".txt", ".yaml"))}
            return _read_members(project, files)
        raw = path.read_bytes()
    except zipfile.BadZipFile:
        raise InterchangeError(f"{path.name} is not a zip archive") from None
    except OSError as exc:
        raise InterchangeError(f"cannot read {path.name}: {exc.strerror or exc}") from exc
    return read_coco(raw) if suffix == ".json" else read_box_csv(raw)


class ItemFinder:
    """An image item by its path (the item's key), else by its file name or its path without the suffix,
    where only one item has it (a VOC file from another tool names the image, not our path)."""

    def __init__(self, project: Project) -> None:
        self.by_key = {item.key: item for item in
                       project.items.exclude(status=ItemStatus.REJECTED).only("id", "key", "meta", "status")}
        self._names: dict[str, Item | None] = {}
        self._stems: dict[str, Item | None] = {}
        for key, item in self.by_key.items():
            path = PurePosixPath(key)
            for index, name in ((self._names, path.name), (self._stems, str(path.with_suffix(""))),
                                (self._stems, path.stem)):
                index[name] = None if name in index and index[name] is not item else item

    def find(self, record: BoxRecord) -> Item | None:
        item = self.by_key.get(record.key)
        if item is None and record.key:
            item = self._names.get(PurePosixPath(record.key).name)
        if item is None and record.name:
            item = self._names.get(record.name)
        return item

    def by_stem(self, stem: str) -> Item | None:
        return self.by_key.get(stem) or self._stems.get(stem) or self._stems.get(PurePosixPath(stem).name)


def do_import_box_records(project: Project, *, records: list[BoxRecord]) -> tuple[int, list[str]]:
    """Store box records as judgements. Returns (imported, problems).

    Preconditions: an object detection project. Only images with no judgement yet take a record (a re-import
    adds nothing twice); records for one image import in file order, the last one current. A record with a
    box the labelling screen would refuse (outside the image, under a pixel, an unknown class) is a problem,
    not an import: none of that image's boxes are stored."""
    kind = kind_for(project)
    if kind.name != "object_detection":
        raise InterchangeError("box files import into object detection projects only")
    finder = ItemFinder(project)
    already = set(Judgement.objects.filter(project=project).values_list("item_id", flat=True).distinct())
    users = users_named(records)
    problems: list[str] = []
    per_item: dict[int, list[Judgement]] = {}
    for record in records:
        if record.problem:
            problems.append(record.problem)
            continue
        item = finder.find(record)
        if item is None:
            problems.append(f"{record.where}: no image {record.key or record.name!r} in this project")
            continue
        made = imported_judgement(project, kind=kind, item=item, value={"boxes": record.boxes}, record=record,
                                  users=users)
        if isinstance(made, str):
            problems.append(made)
        elif item.pk not in already:
            per_item.setdefault(item.pk, []).append(made)
    return store_imported(project, per_item), problems
