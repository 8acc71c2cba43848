"""A dataset folder's symlinks may not reach outside it: not at import, not through the media endpoint."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from projects.models import Item, Project
from tests.conftest import write_config

pytestmark = pytest.mark.django_db


def test_a_text_file_linking_outside_the_dataset_is_not_imported_or_served(tmp_path, alice):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("root:x:0:0 the server's secrets", encoding="utf-8")
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("a real e-mail about football", encoding="utf-8")
    (data / "leak.txt").symlink_to(outside / "secret.txt")
    (data / "same.txt").symlink_to(data / "a.txt")  # a link that stays inside is data like any other
    config = write_config(
        tmp_path / "texts.yml",
        "task: {title: T}\ndataset: {directory: data/, data_type: text}\n"
        "label: {type: classification, classes: [A, B]}\nmodel: {directory: out/}\nuser: alice\n",
    )
    out = io.StringIO()
    call_command("import_config", str(config), "--no-progress", stdout=out, stderr=out)
    project = Project.objects.get()
    assert sorted(project.items.values_list("key", flat=True)) == ["a.txt", "same.txt"]
    assert "leak.txt: links outside the dataset folder; not imported" in out.getvalue()
    assert not Item.objects.filter(text__contains="secrets").exists()

    api = APIClient()
    api.force_authenticate(alice)
    for item in project.items.all():
        assert b"secrets" not in api.get(f"/api/items/{item.pk}/media").content
