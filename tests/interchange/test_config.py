"""Config parsing: original Light Bulb examples import; bad configs fail with one line and change nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from interchange.config import ConfigError, load_config
from projects.models import Item, Membership, Project, Role
from tests.conftest import EXAMPLES, REPO, write_config, write_images

GOOD = """\
task:
  title: T
dataset:
  directory: data/
  data_type: images
label:
  type: classification
  classes: [A, B]
model:
  directory: out/
user: alice
"""


def _populate_example(config: Path, root: Path) -> None:
    """Create the dataset directory an original example expects, with real tiny data of its type."""
    directory = Path(load_config_raw(config)["dataset"]["directory"])
    data_type = load_config_raw(config)["dataset"]["data_type"]
    target = root / directory
    if data_type == "images":
        write_images(target, 3)
    elif data_type == "text":
        target.mkdir(parents=True, exist_ok=True)
        for i, text in enumerate(["A fine film.", "Dreadful acting.", "Mixed feelings overall."]):
            (target / f"review{i}.txt").write_text(text, encoding="utf-8")
    else:
        target.mkdir(parents=True, exist_ok=True)
        for i in range(3):
            (target / f"item{i}.json").write_text(json.dumps({"img_src": f"/x/{i}.png", "text": f"animal {i}"}))


def load_config_raw(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


ORIGINAL_EXAMPLES = sorted(p.name for p in EXAMPLES.glob("*.yml"))


@pytest.mark.django_db
@pytest.mark.parametrize("name", ORIGINAL_EXAMPLES)
def test_it_imports_each_original_example_config(name, tmp_path, monkeypatch):
    # The originals use paths relative to the repository root (the working directory).
    shutil.copy(EXAMPLES / name, tmp_path / name)
    _populate_example(tmp_path / name, tmp_path)
    monkeypatch.chdir(tmp_path)
    call_command("import_config", name, "--no-progress", stdout=open(os.devnull, "w"))

    project = Project.objects.get(slug=Path(name).stem.replace("_", "-"))
    assert project.items.count() == 3
    raw = load_config_raw(tmp_path / name)
    assert project.title == raw["task"]["title"]
    if raw["label"]["type"] == "binary":
        assert project.classes == ["YES", "NO"]
    else:
        assert project.classes == raw["label"]["classes"]
    assert Membership.objects.get(project=project).role == Role.OWNER
    assert Path(project.model_directory).is_dir()
    assert project.model_directory.startswith(str(tmp_path))


def test_it_accepts_top_level_model_directory(tmp_path):
    (tmp_path / "data").mkdir()
    cfg = write_config(tmp_path / "c.yml", GOOD.replace("model:\n  directory: out/\n", "model_directory: out/\n"))
    assert load_config(cfg).model_directory == (tmp_path / "out").resolve()


@pytest.mark.django_db
def test_it_takes_the_queues_sampling_rule_from_the_model_section(tmp_path):
    (tmp_path / "data").mkdir()
    write_images(tmp_path / "data", 2)
    plain = write_config(tmp_path / "plain.yml", GOOD)
    assert load_config(plain).sampling == ""
    call_command("import_config", str(plain), "--no-progress")
    assert Project.objects.get(slug="plain").sampling == "margin"  # the default
    chosen = write_config(
        tmp_path / "chosen.yml", GOOD.replace("  directory: out/\n", "  directory: out/\n  sampling: Entropy\n")
    )
    call_command("import_config", str(chosen), "--no-progress")
    project = Project.objects.get(slug="chosen")
    assert project.sampling == "entropy"
    assert project.model_options == {}  # consumed, not kept as an unknown option
    call_command("import_config", str(plain), "--no-progress")  # a re-import without the key changes nothing
    assert Project.objects.get(slug="plain").sampling == "margin"


@pytest.mark.django_db
def test_it_takes_the_proposal_guarantee_from_the_model_section(tmp_path):
    (tmp_path / "data").mkdir()
    write_images(tmp_path / "data", 2)
    chosen = write_config(
        tmp_path / "chosen.yml",
        GOOD.replace("  directory: out/\n", "  directory: out/\n  proposal_guarantee: all_proposals\n"),
    )
    call_command("import_config", str(chosen), "--no-progress")
    project = Project.objects.get(slug="chosen")
    assert project.proposal_guarantee == "all_proposals" and project.model_options == {}
    plain = write_config(tmp_path / "plain.yml", GOOD)
    call_command("import_config", str(plain), "--no-progress")
    assert Project.objects.get(slug="plain").proposal_guarantee == "each_class"  # the default

    bad = write_config(
        tmp_path / "bad.yml", GOOD.replace("  directory: out/\n", "  directory: out/\n  proposal_guarantee: most\n")
    )
    with pytest.raises(
        ConfigError, match="model.proposal_guarantee must be 'each_class' or 'all_proposals', not 'most'"
    ):
        load_config(bad)
    assert not Project.objects.filter(slug="bad").exists()


def test_it_resolves_relative_paths_against_config_dir_first(tmp_path, monkeypatch):
    (tmp_path / "cfgdir" / "data").mkdir(parents=True)
    (tmp_path / "data").mkdir()
    cfg = write_config(tmp_path / "cfgdir" / "c.yml", GOOD)
    monkeypatch.chdir(tmp_path)
    assert load_config(cfg).dataset_directory == (tmp_path / "cfgdir" / "data").resolve()
    shutil.rmtree(tmp_path / "cfgdir" / "data")
    assert load_config(cfg).dataset_directory == (tmp_path / "data").resolve()


BAD_CONFIGS = {
    "missing task": (GOOD.replace("task:\n  title: T\n", ""), "missing required section 'task'"),
    "missing title": (GOOD.replace("  title: T\n", "  description: d\n"), "missing required key 'task.title'"),
    "missing user": (GOOD.replace("user: alice\n", ""), "missing required key 'user'"),
    "missing model": (GOOD.replace("model:\n  directory: out/\n", ""), "missing required key 'model.directory'"),
    "unknown data_type": (GOOD.replace("data_type: images", "data_type: video"), "unknown dataset.data_type 'video'"),
    "unknown label type": (GOOD.replace("type: classification", "type: regression"), "unknown label.type 'regression'"),
    "missing directory": (GOOD.replace("directory: data/", "directory: nowhere/"), "dataset.directory does not exist"),
    "classes missing": (GOOD.replace("  classes: [A, B]\n", ""), "missing required key 'label.classes'"),
    "classes empty": (GOOD.replace("classes: [A, B]", "classes: []"), "'label.classes' must be a non-empty list"),
    "duplicate classes": (GOOD.replace("classes: [A, B]", "classes: [A, A]"), "duplicates: A"),
    "malformed yaml": ("task: [unclosed\n", "malformed YAML"),
    "not a mapping": ("- just\n- a list\n", "config must be a YAML mapping"),
    "unknown sampling": (GOOD.replace("  directory: out/\n", "  directory: out/\n  sampling: vibes\n"),
                         "model.sampling must be 'margin' or 'entropy', not 'vibes'"),
    "bad default class": (GOOD.replace("  classes: [A, B]\n", "  classes: [A, B]\n  default_class: C\n"),
                          "default_class 'C' is not one of label.classes"),
}


@pytest.mark.django_db
@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_it_rejects_bad_configs_with_one_line_and_changes_nothing(case, tmp_path, django_user_model):
    body, expected = BAD_CONFIGS[case]
    (tmp_path / "data").mkdir()
    write_images(tmp_path / "data", 2)
    cfg = write_config(tmp_path / "bad.yml", body)
    with pytest.raises(CommandError) as excinfo:
        call_command("import_config", str(cfg), "--no-progress")
    message = str(excinfo.value)
    assert expected in message
    assert "\n" not in message
    assert Project.objects.count() == 0
    assert Item.objects.count() == 0
    assert django_user_model.objects.count() == 0
    assert not (tmp_path / "out").exists()


def test_it_exits_non_zero_from_the_shell_for_a_bad_config(tmp_path):
    (tmp_path / "data").mkdir()
    cfg = write_config(tmp_path / "bad.yml", GOOD.replace("data_type: images", "data_type: audio"))
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "DEBUG": "1"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True)
    proc = subprocess.run(
        [sys.executable, "manage.py", "import_config", str(cfg)], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [f"CommandError: {cfg}: unknown dataset.data_type 'audio' (expected one of: images, text, json)"]


def test_it_raises_config_error_for_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yml")


@pytest.mark.django_db
def test_it_takes_the_auto_label_precision_from_the_model_section_and_refuses_a_bad_one(tmp_path):
    (tmp_path / "data").mkdir()
    write_images(tmp_path / "data", 2)
    chosen = write_config(
        tmp_path / "chosen.yml",
        GOOD.replace("  directory: out/\n", "  directory: out/\n  auto_label_precision: 0.98\n"),
    )
    call_command("import_config", str(chosen), "--no-progress")
    project = Project.objects.get(slug="chosen")
    assert project.auto_label_precision == pytest.approx(0.98) and project.model_options == {}
    call_command("import_config", str(write_config(tmp_path / "plain.yml", GOOD)), "--no-progress")
    assert Project.objects.get(slug="plain").auto_label_precision == pytest.approx(0.99)  # the default
    for value, message in [("1.5", "must be between 0.5 and 0.999, not 1.5"), ("'high'", "must be a number")]:
        bad = write_config(
            tmp_path / "bad.yml",
            GOOD.replace("  directory: out/\n", f"  directory: out/\n  auto_label_precision: {value}\n"),
        )
        with pytest.raises(ConfigError, match=f"model.auto_label_precision {message}"):
            load_config(bad)
    assert not Project.objects.filter(slug="bad").exists()


@pytest.mark.django_db
def test_a_billion_laughs_config_is_refused_at_once_before_anything_expands(tmp_path):
    import time

    (tmp_path / "data").mkdir()
    laughs = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    laughs += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    bomb = write_config(
        tmp_path / "bomb.yml",
        GOOD.replace("task:\n  title: T\n", "task:\n  title: T\n  description: |\n    fine\n")
        + "\n".join(laughs).replace("a0:", "extra:\n  a0:", 1).replace("\na", "\n  a") + "\n",
    )
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"YAML aliases \(\*a0\) are not allowed in a config \(line \d+"):
        load_config(bomb)
    assert time.monotonic() - started < 5  # 9^10 strings were never built
    with pytest.raises(CommandError, match="YAML aliases"):
        call_command("import_config", str(bomb), "--no-progress")
    assert not Project.objects.exists()


@pytest.mark.parametrize("typo,message", [
    ("label:\n  type: classification\n  colour: red\n",
     "unknown key(s) in 'label': colour (known: classes, default_class, type)"),
    ("dataset:\n  directory: data/\n  data_type: images\n  exlude: ['*.tmp']\n",
     "unknown key(s) in 'dataset': exlude (known: data_type, directory, exclude, id_column, judgements_file, "
     "text_column)"),
    ("task:\n  title: T\n  titel: X\n", "unknown key(s) in 'task': titel (known: description, template, title)"),
    ("model:\n  directory: out/\n  encodr: minilm_l6\n", "unknown key(s) in 'model': encodr (known: "),
])
def test_unknown_keys_inside_a_section_are_refused_with_the_known_ones(tmp_path, typo, message):
    (tmp_path / "data").mkdir()
    section = typo.split(":", 1)[0]
    original = {"label": "label:\n  type: classification\n  classes: [A, B]\n",
                "dataset": "dataset:\n  directory: data/\n  data_type: images\n",
                "task": "task:\n  title: T\n", "model": "model:\n  directory: out/\n"}[section]
    assert original in GOOD
    replacement = typo if section != "label" else typo.replace("  colour", "  classes: [A, B]\n  colour")
    config = write_config(tmp_path / "typo.yml", GOOD.replace(original, replacement))
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert message in str(caught.value)
