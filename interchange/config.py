"""Parse and validate Light Bulb YAML configs.

The format is the original Light Bulb one::

    task: {title, description?, template?}
    dataset: {directory, data_type: images|text|json, judgements_file?}
    label: {type: classification|binary|sequence|object_detection, classes?, default_class?}
    model: {directory}          # older configs say `model_directory:` at the top level
    user: chris

Everything here is pure: it reads the YAML and the file system, and raises ConfigError with one line
naming the problem. Nothing touches the database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lightbulb_site.errors import DomainError
from projects.encoders import EncoderError, spec_for
from projects.models import BINARY_CLASSES, DataType, LabelType, ProposalGuarantee


class ConfigError(DomainError, ValueError):
    """A config cannot be imported; the message is one line naming the problem."""


@dataclass(frozen=True)
class ProjectConfig:
    path: Path
    slug: str
    title: str
    description: str
    template: str
    data_type: str
    label_type: str
    classes: list[str]
    default_class: str
    dataset_directory: Path
    judgements_file: Path | None
    model_directory: Path
    user: str
    dataset_options: dict = field(default_factory=dict)
    model_options: dict = field(default_factory=dict)
    encoder: str = ""  # blank: the registry's default for the data type
    sampling: str = ""  # blank: the project default (margin); "entropy" is Light Bulb's original rule
    proposal_guarantee: str = ""  # blank: the project default (each_class)
    auto_label_precision: float | None = None  # None: the project default (0.99)


_KNOWN_TOP = {"task", "dataset", "label", "model", "model_directory", "user"}
# The keys each section may hold: a misspelt one (`dataset.exlude`) would otherwise be ignored silently.
_KNOWN_KEYS = {
    "task": {"title", "description", "template"},
    "dataset": {"directory", "data_type", "judgements_file", "text_column", "id_column", "exclude"},
    "label": {"type", "classes", "default_class"},
    # pretrain_file is Light Bulb's (kept with the model options, not used here).
    "model": {"directory", "encoder", "sampling", "proposal_guarantee", "auto_label_precision", "pretrain_file"},
}


def _refuse_unknown_keys(section: dict, name: str) -> None:
    unknown = sorted(str(k) for k in section if k not in _KNOWN_KEYS[name])
    if unknown:
        raise ConfigError(
            f"unknown key(s) in '{name}': {', '.join(unknown)} (known: {', '.join(sorted(_KNOWN_KEYS[name]))})"
        )


def _refuse_aliases(text: str) -> None:
    """YAML aliases (`*name`) let a few hundred bytes expand to gigabytes ("billion laughs"); a config never
    needs them. Checked on the event stream, which does not expand anything, before the document is built."""
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                mark = event.start_mark
                where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
                raise ConfigError(f"YAML aliases (*{event.anchor}) are not allowed in a config{where}")
    except yaml.YAMLError:
        return  # malformed: safe_load below says where


def slug_for(path: Path) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", path.stem.lower()).strip("-")
    return slug[:100] or "project"


def _section(raw: dict, name: str) -> dict:
    value = raw.get(name)
    if value is None:
        raise ConfigError(f"missing required section '{name}'")
    if not isinstance(value, dict):
        raise ConfigError(f"'{name}' must be a mapping, got {type(value).__name__}")
    return value


def _required_str(section: dict, section_name: str, key: str) -> str:
    value = section.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ConfigError(f"missing required key '{section_name}.{key}'")
    if not isinstance(value, (str, int, float)):
        raise ConfigError(f"'{section_name}.{key}' must be a string")
    return str(value).strip()


def _optional_str(section: dict, section_name: str, key: str) -> str:
    value = section.get(key)
    if value is None:
        return ""
    if not isinstance(value, (str, int, float)):
        raise ConfigError(f"'{section_name}.{key}' must be a string")
    return str(value)


def resolve_base(config_dir: Path, relative: str) -> Path:
    """Pick the base for relative paths: the config's directory if the path exists there, else the CWD."""
    candidate = Path(relative).expanduser()
    if candidate.is_absolute():
        return candidate.parent
    if (config_dir / candidate).exists():
        return config_dir
    if (Path.cwd() / candidate).exists():
        return Path.cwd()
    return config_dir


def _resolve(base: Path, config_dir: Path, relative: str) -> Path:
    p = Path(relative).expanduser()
    if p.is_absolute():
        return p.resolve()
    # A path that already exists next to the config wins; otherwise use the base that the dataset
    # directory was found under, so a whole original-layout config resolves consistently.
    if (config_dir / p).exists():
        return (config_dir / p).resolve()
    return (base / p).resolve()


def load_config(path: str | Path, *, slug: str | None = None) -> ProjectConfig:
    config_path = Path(path).expanduser()
    if not config_path.is_file():
        raise ConfigError(f"config file not found: {config_path}")
    try:
        text = config_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file is not UTF-8: {exc.reason} at byte {exc.start}") from exc
    _refuse_aliases(text)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"malformed YAML{where}: {problem}") from exc
    if not isinstance(raw, dict):
        raise ConfigError("config must be a YAML mapping with task, dataset, label, model and user")
    config_path = config_path.resolve()
    config_dir = config_path.parent

    task = _section(raw, "task")
    dataset = _section(raw, "dataset")
    label = _section(raw, "label")
    for name, section in (("task", task), ("dataset", dataset), ("label", label)):
        _refuse_unknown_keys(section, name)

    title = _required_str(task, "task", "title")
    description = _optional_str(task, "task", "description")
    template = _optional_str(task, "task", "template")

    data_type = _required_str(dataset, "dataset", "data_type")
    if data_type not in DataType.values:
        raise ConfigError(f"unknown dataset.data_type '{data_type}' (expected one of: {', '.join(DataType.values)})")
    directory = _required_str(dataset, "dataset", "directory")
    base = resolve_base(config_dir, directory)
    dataset_directory = _resolve(base, config_dir, directory)
    if not dataset_directory.exists():
        raise ConfigError(f"dataset.directory does not exist: {directory} (looked in {config_dir} and {Path.cwd()})")
    judgements_raw = _optional_str(dataset, "dataset", "judgements_file")
    judgements_file = _resolve(base, config_dir, judgements_raw) if judgements_raw else None
    if judgements_file is not None and judgements_file.is_dir():
        raise ConfigError(f"dataset.judgements_file is a directory: {judgements_raw}")

    label_type = _required_str(label, "label", "type")
    if label_type not in LabelType.values:
        raise ConfigError(f"unknown label.type '{label_type}' (expected one of: {', '.join(LabelType.values)})")
    classes_raw = label.get("classes")
    if label_type == LabelType.BINARY:
        if classes_raw not in (None, BINARY_CLASSES):
            raise ConfigError("label.type 'binary' has the fixed classes YES and NO; remove label.classes")
        classes = list(BINARY_CLASSES)
    else:
        if classes_raw is None:
            raise ConfigError(f"missing required key 'label.classes' for label.type '{label_type}'")
        if not isinstance(classes_raw, list) or not classes_raw:
            raise ConfigError("'label.classes' must be a non-empty list")
        classes = []
        for entry in classes_raw:
            if not isinstance(entry, (str, int, float)) or isinstance(entry, bool) or not str(entry).strip():
                raise ConfigError(f"'label.classes' entries must be non-empty strings, got {entry!r}")
            classes.append(str(entry).strip())
        if len(set(classes)) != len(classes):
            dupes = sorted({c for c in classes if classes.count(c) > 1})
            raise ConfigError(f"'label.classes' has duplicates: {', '.join(dupes)}")
        if label_type == LabelType.CLASSIFICATION and len(classes) < 2:
            raise ConfigError("'label.classes' needs at least two classes for classification")
    default_class = _optional_str(label, "label", "default_class").strip()
    if label_type == LabelType.SEQUENCE and data_type == DataType.IMAGES:
        # JSON items are tagged in their "text" field (Light Bulb's own sequence example is JSON).
        raise ConfigError("label.type 'sequence' labels spans of text: dataset.data_type must be text or json")
    if label_type == LabelType.SEQUENCE and judgements_file is not None and judgements_file.suffix.lower() not in {
            ".jsonl", ".conll", ".bio", ".iob", ".csv"}:
        # The file is rewritten as labels change, by the web process too, which never loads spaCy (DocBin's
        # reader): a DocBin imports once with `manage.py import_labels`.
        raise ConfigError("a sequence project's dataset.judgements_file is .jsonl, .conll (.bio, .iob) or .csv; "
                          "import a DocBin (.spacy) with manage.py import_labels")
    if label_type == LabelType.OBJECT_DETECTION and data_type != DataType.IMAGES:
        raise ConfigError("label.type 'object_detection' draws boxes on images: dataset.data_type must be images")
    if (label_type == LabelType.OBJECT_DETECTION and judgements_file is not None
            and judgements_file.suffix.lower() not in {".csv", ".json"}):
        # The file is rewritten as labels change: one file, not a zip or a folder of VOC / YOLO files (those
        # import once with `manage.py import_labels`).
        raise ConfigError("a detection project's dataset.judgements_file is .csv (path,xmin,ymin,xmax,ymax,label) "
                          "or .json (COCO); import Pascal VOC or YOLO with manage.py import_labels")
    if default_class and label_type not in (LabelType.SEQUENCE, LabelType.OBJECT_DETECTION) \
            and default_class not in classes:
        raise ConfigError(f"label.default_class '{default_class}' is not one of label.classes")

    model = raw.get("model")
    model_options: dict = {}
    if model is not None and not isinstance(model, dict):
        raise ConfigError(f"'model' must be a mapping, got {type(model).__name__}")
    if isinstance(model, dict):
        _refuse_unknown_keys(model, "model")
    if isinstance(model, dict) and model.get("directory"):
        model_dir_raw = _required_str(model, "model", "directory")
        model_options = {k: v for k, v in model.items() if k != "directory"}
    elif raw.get("model_directory"):
        model_dir_raw = str(raw["model_directory"]).strip()
    else:
        raise ConfigError("missing required key 'model.directory'")
    model_directory = _resolve(base, config_dir, model_dir_raw)
    encoder = model_options.pop("encoder", "") if isinstance(model, dict) else ""
    if encoder:

        try:
            spec_for(str(encoder), data_type=data_type)
        except EncoderError as exc:
            raise ConfigError(f"model.encoder: {exc}") from None
    sampling = str(model_options.pop("sampling", "") or "").strip().lower() if isinstance(model, dict) else ""
    if sampling and sampling not in ("margin", "entropy"):
        raise ConfigError(f"model.sampling must be 'margin' or 'entropy', not {sampling!r}")
    guarantee = (
        str(model_options.pop("proposal_guarantee", "") or "").strip().lower() if isinstance(model, dict) else ""
    )
    if guarantee and guarantee not in ProposalGuarantee.values:
        choices = " or ".join(f"'{value}'" for value in ProposalGuarantee.values)
        raise ConfigError(f"model.proposal_guarantee must be {choices}, not {guarantee!r}")
    auto_precision = model_options.pop("auto_label_precision", None) if isinstance(model, dict) else None
    if auto_precision is not None:
        if isinstance(auto_precision, bool) or not isinstance(auto_precision, (int, float)):
            raise ConfigError(f"model.auto_label_precision must be a number (0.99 for 99%), not {auto_precision!r}")
        if not 0.5 <= float(auto_precision) <= 0.999:
            raise ConfigError(f"model.auto_label_precision must be between 0.5 and 0.999, not {auto_precision!r}")
        auto_precision = float(auto_precision)
    if model_directory.exists() and not model_directory.is_dir():
        raise ConfigError(f"model.directory is not a directory: {model_dir_raw}")

    user = raw.get("user")
    if user is None or not str(user).strip():
        raise ConfigError("missing required key 'user'")
    user = str(user).strip()
    if not re.fullmatch(r"[\w.@+-]{1,150}", user):
        raise ConfigError(f"'user' is not a valid username: {user!r}")

    unknown = sorted(set(raw) - _KNOWN_TOP)
    if unknown:
        raise ConfigError(f"unknown top-level key(s): {', '.join(unknown)}")

    dataset_options = {k: v for k, v in dataset.items() if k not in {"directory", "data_type", "judgements_file"}}
    exclude = dataset_options.get("exclude")
    if exclude is not None:
        if isinstance(exclude, str):
            dataset_options["exclude"] = [exclude]
        elif not isinstance(exclude, list) or not all(isinstance(e, str) for e in exclude):
            raise ConfigError("'dataset.exclude' must be a list of glob patterns")
    for key in ("text_column", "id_column"):
        if key in dataset_options and not isinstance(dataset_options[key], str):
            raise ConfigError(f"'dataset.{key}' must be a string")

    return ProjectConfig(
        path=config_path,
        slug=slug or slug_for(config_path),
        title=title,
        description=description.strip(),
        template=template.strip(),
        data_type=data_type,
        label_type=label_type,
        classes=classes,
        default_class=default_class,
        dataset_directory=dataset_directory,
        judgements_file=judgements_file,
        model_directory=model_directory,
        user=user,
        dataset_options=dataset_options,
        model_options=model_options,
        encoder=str(encoder),
        sampling=sampling,
        proposal_guarantee=guarantee,
        auto_label_precision=auto_precision,
    )
