"""The per-project tallies the database keeps (lightbulb_site/tallies.py): exact through every kind of write.

tests/conftest.py also checks them after every test that touches the database; these drive the paths
one by one, on SQLite and (make test-postgres) on PostgreSQL, whose triggers are different SQL.
"""

from __future__ import annotations

import random

import pytest
from django.db import connection
from django.utils import timezone

from labeling.autolabels import do_record_auto_labels, do_withdraw_auto_labels
from labeling.models import Judgement, Stage
from labeling.services import (
    do_record_judgement,
    do_undo_last_judgement,
    next_items,
    queue_counts,
    stage_counts,
)
from projects.models import Item, ItemStatus, Project
from tests.conftest import make_image_project, tally_drift

pytestmark = pytest.mark.django_db


def tallies(project: Project) -> tuple[int, int, int]:
    project.refresh_from_db()
    return project.tally_unlabelled, project.tally_test, project.tally_train


def test_it_counts_an_import(image_project):
    assert tallies(image_project) == (6, 0, 0)
    assert tally_drift() == []


def test_it_follows_judgements_relabels_and_undo(image_project, alice):
    project = image_project
    leased = next_items(project, user=alice, count=3, rng=random.Random(0))
    for li in leased:
        do_record_judgement(project, item=li.item, user=alice, label="Cat")
    stages = [j.stage for j in Judgement.objects.filter(project=project)]
    assert tallies(project) == (3, stages.count(Stage.TEST), stages.count(Stage.TRAIN))
    # A relabel replaces the current judgement: the counts stay.
    do_record_judgement(project, item=leased[0].item, user=alice, label="Not Cat")
    assert tallies(project) == (3, stages.count(Stage.TEST), stages.count(Stage.TRAIN))
    do_undo_last_judgement(project, user=alice)  # the relabel: the first label is current again
    do_undo_last_judgement(project, user=alice)  # the third item's label: it goes back to the queue
    assert tally_drift() == []
    assert tallies(project)[0] == 4


def test_it_follows_auto_labels_and_their_withdrawal(image_project, alice):
    project = image_project
    ids = list(project.items.values_list("pk", flat=True))
    do_record_auto_labels(project, user=alice, version=1, target=0.99, guarantee="test", proof={},
                          picks={pk: ("Cat", 0.999) for pk in ids[:4]})
    assert tallies(project) == (2, 0, 0)  # AUTO judgements are neither TEST nor TRAIN
    do_withdraw_auto_labels(project, user=alice, version=1)
    assert tallies(project) == (6, 0, 0)


def test_it_follows_bulk_updates_and_deletes_per_project(image_project, alice, tmp_path):
    other = make_image_project(tmp_path / "other", n=5, owner="alice")
    Item.objects.filter(project=image_project, pk__in=image_project.items.values("pk")[:2]).update(
        status=ItemStatus.REJECTED
    )
    assert tallies(image_project) == (4, 0, 0)
    assert tallies(other) == (5, 0, 0)
    # An item moved to another project (the admin could) counts there.
    moved = image_project.items.filter(status=ItemStatus.UNLABELLED).first()
    Item.objects.filter(pk=moved.pk).update(project=other, key="moved")
    assert (tallies(image_project), tallies(other)) == ((3, 0, 0), (6, 0, 0))
    other.items.filter(key="moved").delete()
    assert tallies(other) == (5, 0, 0)
    image_project.delete()
    assert tallies(other) == (5, 0, 0)


def test_it_never_writes_an_old_count_back_from_a_stale_instance(image_project, alice):
    stale = Project.objects.get(pk=image_project.pk)
    item = next_items(image_project, user=alice)[0].item
    do_record_judgement(image_project, item=item, user=alice, label="Cat")
    stale.title = "Renamed"
    stale.save()  # what the admin's change form does
    assert tallies(image_project)[0] == 5
    assert image_project.title == "Renamed"


def test_it_reads_fresh_tallies_for_the_stage_rule(image_project, alice):
    # The queue is asked with a project loaded before the labels were made (simulations keep one).
    stale = Project.objects.get(pk=image_project.pk)
    for li in next_items(image_project, user=alice, count=2):
        do_record_judgement(image_project, item=li.item, user=alice, label="Cat")
    counts = stage_counts(stale)
    assert counts["test"] + counts["train"] == 2
    snapshot = queue_counts(stale, now=timezone.now())
    assert (snapshot.test + snapshot.train, snapshot.free) == (2, 4)
    unlabelled = image_project.items.filter(status=ItemStatus.UNLABELLED).order_by("id")
    assert (snapshot.id_low, snapshot.id_high) == (unlabelled.first().pk, unlabelled.last().pk)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row versions (xmin) are PostgreSQL's")
def test_it_leaves_the_project_row_alone_when_a_lease_is_claimed(image_project, alice):
    def row_version() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SELECT xmin::text FROM projects_project WHERE id = %s", [image_project.pk])
            return cursor.fetchone()[0]

    before = row_version()
    assert len(next_items(image_project, user=alice, count=2)) == 2
    assert row_version() == before  # concurrent claims never queue on the project row


def test_it_repairs_a_tally_with_recount_tallies(image_project):
    from io import StringIO

    from django.core.management import call_command

    Project.objects.filter(pk=image_project.pk).update(tally_unlabelled=99, tally_test=3)
    out = StringIO()
    call_command("recount_tallies", stdout=out)
    assert tallies(image_project) == (6, 0, 0)
    assert "1 corrected" in out.getvalue()
