"""20 concurrent REST clients (token auth, real HTTP against the live server) label one project."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

import pytest
from rest_framework.authtoken.models import Token

from labeling.models import Judgement
from projects.models import Item, ItemStatus, Project, Role
from projects.services import do_add_member
from tests.conftest import make_image_project

pytestmark = pytest.mark.django_db(transaction=True)


def _call(url: str, token: str, body: dict | None = None) -> tuple[int, object]:
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _run_together(worker, tokens: list[str]) -> None:
    """One thread per token, `worker(n, token)`, all started before any is awaited."""
    threads = [threading.Thread(target=worker, args=(n, t)) for n, t in enumerate(tokens)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)


def test_twenty_api_clients_get_no_duplicate_leases_and_lose_no_judgements(live_server, tmp_path, django_user_model):
    """With overlap on (half the items labelled by two people), 20 clients at once: nobody is ever handed
    an item twice, every overlap item gets its two votes from two different people, nothing is lost."""
    users = [django_user_model.objects.create_user(f"client{i}", password="x") for i in range(20)]
    project = make_image_project(tmp_path, n=120, owner="client0")
    for user in users[1:]:
        do_add_member(project, user=user, role=Role.ANNOTATOR)
    Project.objects.filter(pk=project.pk).update(overlap_share=0.5, overlap_k=2)
    tokens = [Token.objects.create(user=u).key for u in users]
    base = f"{live_server.url}/api/projects/{project.pk}"

    leased: dict[int, list[int]] = {}
    created: dict[int, list[int]] = {}
    failures: list[str] = []
    barrier = threading.Barrier(len(tokens))
    deadline = time.monotonic() + 240

    def client(n: int, token: str) -> None:
        mine: list[int] = []
        done: list[int] = []
        leased[n], created[n] = mine, done  # kept as they grow: a client that fails still shows its work
        barrier.wait()
        try:
            while True:
                status, items = _call(f"{base}/items/next/?count=2", token)
                if status != 200:
                    failures.append(f"next -> {status} {items}")
                    return
                if not items:
                    # Nothing for this client now, but an item another client is labelling may become
                    # partial a moment later and need this client's label: done only when nothing is
                    # left to label at all (a person would come back later).
                    status, stats = _call(f"{base}/stats/", token)
                    if status != 200:
                        failures.append(f"stats -> {status} {stats}")
                        return
                    if stats["unlabelled"] == 0 and stats["overlap"]["partial"] == 0 or time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
                    continue
                for item in items:
                    mine.append(item["id"])
                    status, body = _call(
                        f"{base}/judgements/", token, {"item": item["id"], "label": "YES", "time_taken": 0.5}
                    )
                    if status != 201:
                        failures.append(f"judgement -> {status} {body}")
                        return
                    done.append(body["id"])
        except Exception as exc:  # a timeout or a dropped connection: reported below, not lost with the thread
            failures.append(f"client {n}: {exc!r}")

    _run_together(client, tokens)
    assert not failures, failures[:5]
    for ids in leased.values():
        assert len(ids) == len(set(ids))  # never the same item twice to one person
    overlap = set(project.items.filter(labels_wanted=2).values_list("pk", flat=True))
    assert 30 <= len(overlap) <= 90  # about half, drawn by the coin
    all_leases = [i for ids in leased.values() for i in ids]
    leases_per_item = Counter(all_leases)
    odd = {i: (n, Item.objects.get(pk=i).labels_wanted, Item.objects.get(pk=i).status,
               list(Judgement.objects.filter(item_id=i).values_list("labelled_by", "is_vote", "is_current")))
           for i, n in leases_per_item.items() if n != (2 if i in overlap else 1)}
    assert len(all_leases) == 120 + len(overlap), odd  # one lease per label: none shared, none wasted
    assert set(all_leases) == set(project.items.values_list("pk", flat=True))
    judgement_ids = [j for ids in created.values() for j in ids]
    assert Judgement.objects.filter(pk__in=judgement_ids).count() == len(all_leases)  # 0 lost judgements
    assert Judgement.objects.filter(project=project, is_current=True).count() == 120
    assert project.items.filter(status=ItemStatus.LABELLED).count() == 120
    for item_id in overlap:
        voters = list(Judgement.objects.filter(item_id=item_id, is_vote=True).values_list("user_id", flat=True))
        assert len(voters) == len(set(voters)) == 2
    assert sum(1 for ids in leased.values() if ids) > 1


def test_eight_reviewers_asking_for_batches_at_once_never_share_a_proposal(live_server, tmp_path, django_user_model):
    from labeling.models import JudgementSource, Proposal, ProposalStatus
    from labeling.proposals import do_sync_proposals

    users = [django_user_model.objects.create_user(f"reviewer{i}", password="x") for i in range(8)]
    project = make_image_project(
        tmp_path, n=100, owner="reviewer0", label="{type: classification, classes: [red, blue]}"
    )
    for user in users[1:]:
        do_add_member(project, user=user, role=Role.ANNOTATOR)
    # One rejection per batch would pause the class at the default 95% target; this test is about leases.
    project.auto_label_precision = 0.5
    project.save()
    do_sync_proposals(project, version=1, desired={i.pk: ("red", 0.99) for i in project.items.all()})
    tokens = [Token.objects.create(user=u).key for u in users]
    base = f"{live_server.url}/api/projects/{project.pk}"
    seen: dict[int, list[int]] = {}
    failures: list[str] = []
    barrier = threading.Barrier(len(tokens))

    def reviewer(n: int, token: str) -> None:
        mine = []
        barrier.wait()
        while True:
            status, batch = _call(f"{base}/proposals/?count=7", token)
            if status != 200:
                failures.append(f"proposals -> {status} {batch}")
                return
            ids = [i["id"] for i in batch["items"]]
            if not ids:
                break
            mine += ids
            status, body = _call(f"{base}/proposals/confirm/", token,
                                 {"label": "red", "accepted": ids[1:], "rejected": ids[:1], "time_taken": 2})
            if status != 200:
                failures.append(f"confirm -> {status} {body}")
                return
        seen[n] = mine

    _run_together(reviewer, tokens)
    assert not failures, failures[:5]
    everything = [i for ids in seen.values() for i in ids]
    assert len(everything) == len(set(everything)) == 100  # every proposal reviewed exactly once
    assert not Proposal.objects.filter(project=project, status=ProposalStatus.PENDING).exists()
    confirmed = Judgement.objects.filter(project=project, source=JudgementSource.CONFIRMED_PROPOSAL, is_current=True)
    rejected = Proposal.objects.filter(project=project, status=ProposalStatus.REJECTED).count()
    assert confirmed.count() + rejected == 100
    assert sum(1 for ids in seen.values() if ids) > 1
