"""Shared fixtures: alice (owner), bob (annotator), charlie (outsider), and small real datasets."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
EXAMPLES = REPO / "docs" / "examples"


def png_bytes(color: tuple[int, int, int], size: tuple[int, int] = (32, 32), *, seed: int = 0) -> bytes:
    """A small real PNG: a solid colour with a little noise so images differ."""
    rng = random.Random(seed)
    img = Image.new("RGB", size, color)
    for _ in range(20):
        img.putpixel((rng.randrange(size[0]), rng.randrange(size[1])), (rng.randrange(256),) * 3)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def write_images(directory: Path, n: int, *, prefix: str = "img", color=(200, 40, 40)) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = directory / f"{prefix}{i:03d}.png"
        path.write_bytes(png_bytes(color, seed=i))
        paths.append(path)
    return paths


def database_url() -> str:
    """The URL of the database this test runs on (the test database), for a process the test starts."""
    from urllib.parse import quote

    from django.db import connection

    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return (f"postgres://{quote(db['USER'], safe='')}:{quote(db['PASSWORD'], safe='')}@{db['HOST'] or '127.0.0.1'}"
            f":{db['PORT'] or 5432}/{quote(db['NAME'], safe='')}")


def write_config(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body, encoding="utf-8")
    return path


def make_image_project(
    root: Path, *, n: int, owner: str, title: str = "T", label: str = "{type: binary}", folder: str = "imgs"
):
    """Import a project of `n` real PNGs under root/folder through the real config import."""
    from interchange.config import load_config
    from interchange.importer import do_import_config

    write_images(root / folder, n)
    cfg = write_config(
        root / f"{folder}.yml",
        f"task: {{title: {title}}}\ndataset: {{directory: {folder}, data_type: images}}\n"
        f"label: {label}\nmodel: {{directory: {folder}-out}}\nuser: {owner}\n",
    )
    return do_import_config(load_config(cfg)).project


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2's deliberate slowness costs ~0.3 s per user on two cores; tests need no such protection.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def tally_drift() -> list[str]:
    """Where a project's database-kept tallies (lightbulb_site/tallies.py) differ from a real count."""
    from django.db.models import Count, IntegerField, OuterRef, Subquery
    from django.db.models.functions import Coalesce

    from labeling.models import Judgement
    from projects.models import Item, ItemStatus, Project

    def count(rows):
        counted = rows.filter(project=OuterRef("pk")).order_by().values("project").annotate(n=Count("pk")).values("n")
        return Coalesce(Subquery(counted, output_field=IntegerField()), 0)

    current = Judgement.objects.filter(is_current=True)
    counted = Project.objects.annotate(
        unlabelled=count(Item.objects.filter(status=ItemStatus.UNLABELLED)),
        test=count(current.filter(stage="TEST")),
        train=count(current.filter(stage="TRAIN")),
    )
    return [
        f"project {p.pk}: tallies {(p.tally_unlabelled, p.tally_test, p.tally_train)} != counted "
        f"{(p.unlabelled, p.test, p.train)}"
        for p in counted
        if (p.tally_unlabelled, p.tally_test, p.tally_train) != (p.unlabelled, p.test, p.train)
    ]


@pytest.fixture(autouse=True)
def _tallies_stay_exact(request):
    """After every test that wrote to the database, the tallies still equal the counts: every write path the
    suite drives (imports, leases, judgements, batches, auto-labels, deletes) is checked against them."""
    yield
    uses_db = request.node.get_closest_marker("django_db") or {"db", "transactional_db", "live_server"} & set(
        request.fixturenames
    )
    if uses_db:
        drift = tally_drift()
        assert not drift, drift


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password="alice-pass-123")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", password="bob-pass-123")


@pytest.fixture
def charlie(django_user_model):
    return django_user_model.objects.create_user("charlie", password="charlie-pass-123")


@pytest.fixture
def image_config(tmp_path: Path) -> Path:
    """An original-format image config with 6 real PNGs under dataset/cats/."""
    write_images(tmp_path / "dataset" / "cats", 6)
    return write_config(
        tmp_path / "config" / "cats.yml",
        """\
task:
  title: Is this a cat?
  description: Pick one.
dataset:
  directory: ../dataset/cats/
  data_type: images
  judgements_file: ../outputs/cats/labels.csv
label:
  type: classification
  classes: [Cat, Not Cat]
model:
  directory: ../outputs/cats/models/
user: alice
""",
    )


@pytest.fixture
def image_project(image_config, alice):
    from interchange.config import load_config
    from interchange.importer import do_import_config

    return do_import_config(load_config(image_config)).project


from tests.browser import browser, page, strict_page  # noqa: E402,F401  (fixtures shared by the browser tests)
