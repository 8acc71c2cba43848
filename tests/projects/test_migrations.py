"""Data migrations that change what an existing project does: run for real, backwards and forwards."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from lightbulb_site.tallies import install, uninstall


def _migrate(target: list[tuple[str, str]]):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(target)
    return executor.loader.project_state(target).apps


@pytest.fixture(autouse=True)
def _back_to_the_latest_schema():
    """Migrating as `manage.py migrate` does (its signals take the tally triggers out first and put them
    back after: lightbulb_site/tallies.py), and back to every migration for the tests after this one."""
    uninstall(connection)
    yield
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    install(connection)


@pytest.mark.django_db(transaction=True)
def test_it_keeps_existing_text_projects_on_the_encoder_their_models_were_made_with():
    old = _migrate([("projects", "0008_auto_labels")])
    Project = old.get_model("projects", "Project")
    for kind in ("text", "json", "images"):
        Project.objects.create(slug=f"p-{kind}", title=kind, data_type=kind, dataset_directory="/x", encoder="")
    Project.objects.create(slug="chosen", title="c", data_type="text", dataset_directory="/x", encoder="minilm_ngrams")
    new = _migrate([("projects", "0009_text_encoder_default")])
    Project = new.get_model("projects", "Project")
    encoders = dict(Project.objects.values_list("slug", "encoder"))
    # Before, blank meant MiniLM (text, json) and MobileNetV2 (images): now they say so; the new defaults
    # are for new projects.
    assert encoders == {"p-text": "minilm_l6", "p-json": "minilm_l6", "p-images": "mobilenet_v2",
                        "chosen": "minilm_ngrams"}
