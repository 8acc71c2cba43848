"""The queue: leases are exclusive, expire, renew; stages follow Light Bulb's rule; concurrency is safe."""

from __future__ import annotations

import random
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from labeling.models import Judgement, Skip, Stage
from labeling.services import (
    choose_stage,
    do_record_judgement,
    do_skip_item,
    next_items,
)
from projects.models import Item, ItemStatus, Role
from projects.services import do_add_member

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(image_project, bob, charlie):
    do_add_member(image_project, user=bob, role=Role.ANNOTATOR)
    do_add_member(image_project, user=charlie, role=Role.ANNOTATOR)
    return image_project


def test_it_never_leases_one_item_to_two_people(team, alice, bob, charlie):
    a = next_items(team, user=alice, count=2, rng=random.Random(1))
    b = next_items(team, user=bob, count=2, rng=random.Random(1))
    c = next_items(team, user=charlie, count=5, rng=random.Random(1))
    ids = [li.item.pk for li in a + b + c]
    assert len(ids) == 6 == len(set(ids))  # 6 items, all distinct, and the sixth request got what was left
    for li in a:
        li.item.refresh_from_db()
        assert li.item.leased_to == alice and li.item.leased_until > timezone.now()


def test_a_reload_returns_the_same_item_and_renews_the_lease(team, alice):
    first = next_items(team, user=alice, count=1)[0]
    Item.objects.filter(pk=first.item.pk).update(leased_until=timezone.now() + timedelta(seconds=5))
    again = next_items(team, user=alice, count=1)[0]
    assert again.item.pk == first.item.pk
    again.item.refresh_from_db()
    assert again.item.leased_until > timezone.now() + timedelta(seconds=team.lease_seconds - 5)


def test_expired_leases_return_items_to_the_pool(team, alice, bob):
    held = next_items(team, user=alice, count=6)
    assert len(held) == 6
    assert next_items(team, user=bob, count=1) == []
    Item.objects.filter(pk=held[0].item.pk).update(leased_until=timezone.now() - timedelta(seconds=1))
    got = next_items(team, user=bob, count=1)
    assert [li.item.pk for li in got] == [held[0].item.pk]


def test_a_judgement_on_someone_elses_item_is_refused(team, alice, bob):
    from labeling.errors import LeaseConflict

    item = next_items(team, user=alice, count=1)[0].item
    with pytest.raises(LeaseConflict):
        do_record_judgement(team, item=item, user=bob, label="Cat")
    item.refresh_from_db()
    assert item.status == ItemStatus.UNLABELLED and not Judgement.objects.exists()


def test_skipping_releases_the_lease_and_leaves_the_users_queue(team, alice, bob):
    leased = next_items(team, user=alice, count=1)[0].item
    do_skip_item(team, item=leased, user=alice)
    leased.refresh_from_db()
    assert leased.leased_to is None
    assert Skip.objects.filter(item=leased, user=alice).exists()
    # Alice gets the five others before the skipped one comes round again; Bob may take it at once.
    mine = [li.item.pk for li in next_items(team, user=alice, count=5)]
    assert leased.pk not in mine
    assert [li.item.pk for li in next_items(team, user=bob, count=1)] == [leased.pk]


def test_only_skipped_items_left_are_offered_again(team, alice):
    for item in team.items.all():
        Skip.objects.create(item=item, user=alice)
    assert len(next_items(team, user=alice, count=3)) == 3


@pytest.mark.parametrize(
    "test,train,expected",
    [(0, 0, Stage.TEST), (9, 0, Stage.TEST), (10, 0, Stage.TRAIN), (10, 29, Stage.TRAIN), (10, 30, Stage.TEST),
     (11, 30, Stage.TRAIN), (20, 60, Stage.TEST)],
)
def test_it_chooses_stages_like_light_bulb(image_project, test, train, expected):
    assert choose_stage(image_project, test=test, train=train) == expected


def test_test_items_fill_first_then_train_at_the_configured_ratio(tmp_path, alice):
    from tests.conftest import make_image_project

    project = make_image_project(tmp_path, n=60, owner="alice")
    project.test_min_judgements, project.test_ratio = 4, 0.5
    project.save()
    stages = []
    for _ in range(20):
        leased = next_items(project, user=alice, count=1)[0]
        do_record_judgement(project, item=leased.item, user=alice, label="YES")
        stages.append(leased.stage)
    assert stages[:4] == [Stage.TEST] * 4
    test, train = stages.count(Stage.TEST), stages.count(Stage.TRAIN)
    assert test / train == pytest.approx(0.5, abs=0.1)
    stored = list(Judgement.objects.order_by("id").values_list("stage", flat=True))
    assert stored == stages
    assert all(j.picked_by == "random" for j in Judgement.objects.all())


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_clients_get_no_duplicate_leases_and_lose_no_judgements(tmp_path, django_user_model):
    """20 threads, each its own DB connection, leasing and labelling until the pool is empty."""
    assert "memory" not in str(connection.settings_dict["NAME"])  # real connections, not a shared cache
    from tests.conftest import make_image_project

    users = [django_user_model.objects.create_user(f"user{i}", password="x") for i in range(20)]
    project = make_image_project(tmp_path, n=200, owner="user0")
    for user in users[1:]:
        do_add_member(project, user=user, role=Role.ANNOTATOR)
    # One label per item here (overlap under 20 clients: tests/labeling/test_api_concurrency.py).
    project.overlap_share = 0
    project.save()

    leases: dict[int, list[int]] = {}
    recorded: dict[int, list[int]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(users))

    def work(user):
        try:
            barrier.wait()
            mine, done = [], []
            while True:
                batch = next_items(project, user=user, count=3)
                if not batch:
                    break
                for li in batch:
                    mine.append(li.item.pk)
                    do_record_judgement(project, item=li.item, user=user, label="YES", time_taken=0.1)
                    done.append(li.item.pk)
            leases[user.pk] = mine
            recorded[user.pk] = done
        except BaseException as exc:  # surfaced below: a thread must not swallow a failure
            errors.append(exc)
        finally:
            connection.close()  # each thread's own connection; PostgreSQL counts them

    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    all_leases = [pk for pks in leases.values() for pk in pks]
    assert len(all_leases) == len(set(all_leases)) == 200  # 0 duplicate leases
    assert sum(len(v) for v in recorded.values()) == 200
    assert Judgement.objects.filter(project=project).count() == 200  # 0 lost judgements
    assert Judgement.objects.filter(project=project, is_current=True).count() == 200
    assert project.items.filter(status=ItemStatus.LABELLED).count() == 200
    assert len([u for u, v in recorded.items() if v]) > 1  # the work really was shared


def test_a_skipped_item_is_not_taken_back_while_the_user_holds_others(team, alice):
    held = next_items(team, user=alice, count=5)
    free = team.items.exclude(pk__in=[li.item.pk for li in held]).get()
    skipped = held[0].item
    do_skip_item(team, item=skipped, user=alice)
    # Alice asks for more: she gets the one free item, never the one she just let go.
    got = [li.item.pk for li in next_items(team, user=alice, count=6)]
    assert skipped.pk not in got and free.pk in got
    skipped.refresh_from_db()
    assert skipped.leased_to is None


@pytest.mark.django_db(transaction=True)
def test_a_claim_passes_over_a_row_another_transaction_is_claiming(tmp_path):
    """PostgreSQL: SELECT ... FOR UPDATE SKIP LOCKED, so a claim never waits behind another one."""
    if not connection.features.has_select_for_update_skip_locked:
        pytest.skip("SQLite has no row locks; its IMMEDIATE transactions take turns (run on PostgreSQL)")
    from django.db import transaction

    from labeling.leases import claim_rows
    from tests.conftest import make_image_project

    project = make_image_project(tmp_path, n=2, owner="alice")
    first, second = Item.objects.filter(project=project).order_by("pk")
    locked, release = threading.Event(), threading.Event()

    def hold_first() -> None:
        with transaction.atomic():
            Item.objects.select_for_update().filter(pk=first.pk).get()
            locked.set()
            release.wait(timeout=10)  # a claim that waited for this lock would take both rows after it
        connection.close()

    holder = threading.Thread(target=hold_first)
    holder.start()
    assert locked.wait(timeout=10)
    try:
        taken = claim_rows(Item.objects.filter(project=project, leased_until__isnull=True),
                           leased_until=timezone.now() + timedelta(minutes=5))
    finally:
        release.set()
        holder.join()
    assert taken == 1
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.leased_until is None and second.leased_until is not None


def test_random_picks_are_uniform_over_a_pool_with_gaps(tmp_path):
    """The queue samples ids from the pool's range and keeps those in the pool: uniform whatever the gaps."""
    from collections import Counter

    from labeling.queue import RandomOrdering
    from tests.conftest import make_image_project

    project = make_image_project(tmp_path, n=120, owner="alice")
    ids = list(Item.objects.filter(project=project).order_by("pk").values_list("pk", flat=True))
    # Gaps: a labelled run in the middle and every third item elsewhere.
    taken = set(ids[40:70]) | set(ids[::3])
    Item.objects.filter(pk__in=taken).update(status=ItemStatus.LABELLED)
    pool = Item.objects.filter(project=project, status=ItemStatus.UNLABELLED)
    members = set(pool.values_list("pk", flat=True))
    rng = random.Random(7)
    counts: Counter[int] = Counter()
    for _ in range(1500):
        picks = RandomOrdering().candidates(pool, limit=4, rng=rng)
        assert len({c.item_id for c in picks}) == 4  # without repeats
        assert all(c.probability == pytest.approx(1 / len(members)) for c in picks)
        counts.update(c.item_id for c in picks)
    assert set(counts) == members  # nothing outside the pool, everything in it
    expected = 1500 * 4 / len(members)
    assert min(counts.values()) > 0.6 * expected and max(counts.values()) < 1.4 * expected
    # A pool too small to sample from its range is read whole.
    Item.objects.filter(pk__in=sorted(members)[3:]).update(status=ItemStatus.LABELLED)
    assert {c.item_id for c in RandomOrdering().candidates(pool, limit=5, rng=rng)} == set(sorted(members)[:3])
