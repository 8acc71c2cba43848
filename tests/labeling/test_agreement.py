"""Agreement figures against values computed by hand (and published ones) on fixed tables."""

from __future__ import annotations

import pytest

from labeling.agreement import cohen_kappa, compute_agreement, krippendorff_alpha, raw_agreement


def test_it_computes_cohens_kappa_as_by_hand():
    # 50 items, two raters: Yes/Yes 20, Yes/No 5, No/Yes 10, No/No 15.
    # po = 35/50 = 0.7; pe = (25/50)(30/50) + (25/50)(20/50) = 0.3 + 0.2 = 0.5; kappa = 0.2/0.5 = 0.4.
    pairs = [("Yes", "Yes")] * 20 + [("Yes", "No")] * 5 + [("No", "Yes")] * 10 + [("No", "No")] * 15
    assert cohen_kappa(pairs) == pytest.approx(0.4)
    assert cohen_kappa([("a", "a"), ("b", "b")]) == pytest.approx(1.0)
    assert cohen_kappa([("a", "a")] * 3) is None  # one class throughout: nothing beyond chance
    assert cohen_kappa([]) is None


def test_it_computes_krippendorffs_alpha_as_published():
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": 4 observers, 12 units, missing
    # values; nominal alpha = 0.743.
    rows = {
        "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    }
    units = []
    for u in range(12):
        labels = {who: str(values[u]) for who, values in rows.items() if values[u] is not None}
        units.append(labels)
    assert krippendorff_alpha(units) == pytest.approx(0.743, abs=0.0005)


def test_it_computes_raw_agreement_over_pairs_of_labels():
    # Item 1: three people, labels a a b -> pairs (a,a) (a,b) (a,b): 1 of 3 agree; item 2: (c,c) agrees.
    units = [{"x": "a", "y": "a", "z": "b"}, {"x": "c", "y": "c"}]
    assert raw_agreement(units) == pytest.approx(2 / 4)


def test_it_reports_pairs_intervals_and_where_people_disagree():
    triples = []
    # 40 items: ann and bob agree on 30 (15 Cat, 15 Dog), disagree on 10 (ann Cat, bob Dog); carol
    # labels the first 10 items as ann did.
    for i in range(15):
        triples += [(i, "ann", "Cat"), (i, "bob", "Cat")]
    for i in range(15, 30):
        triples += [(i, "ann", "Dog"), (i, "bob", "Dog")]
    for i in range(30, 40):
        triples += [(i, "ann", "Cat"), (i, "bob", "Dog")]
    triples += [(i, "carol", "Cat") for i in range(10)]
    triples += [(99, "ann", "Cat")]  # labelled once: no part of agreement
    result = compute_agreement(triples, classes=["Cat", "Dog", "Fox"], rounds=300)
    assert result.items == 40
    ann_bob = next(p for p in result.pairs if (p.a, p.b) == ("ann", "bob"))
    assert ann_bob.raw.value == pytest.approx(0.75) and ann_bob.raw.items == 40
    # po = 0.75; ann: Cat 25, Dog 15; bob: Cat 15, Dog 25; pe = (25*15 + 15*25) / 1600 = 0.46875
    assert ann_bob.kappa.value == pytest.approx((0.75 - 0.46875) / (1 - 0.46875))
    assert ann_bob.kappa.low < ann_bob.kappa.value < ann_bob.kappa.high
    assert 0.0 < ann_bob.raw.low <= 0.75 <= ann_bob.raw.high < 1.0
    ann_carol = next(p for p in result.pairs if (p.a, p.b) == ("ann", "carol"))
    assert ann_carol.raw.value == 1.0 and ann_carol.raw.items == 10
    assert ann_carol.kappa.value is None  # all Cat: kappa cannot say
    # The confusion between annotators: 10 Cat-Dog pairs (counted both ways), Fox never used.
    assert result.confusion["Cat"]["Dog"] == result.confusion["Dog"]["Cat"] == 10
    assert result.confusion["Fox"] == {"Cat": 0, "Dog": 0, "Fox": 0}
    assert result.disagreement["Fox"] is None
    # Cat takes part in 15 + 10 (carol) + 10 (ann-carol on items 0-9 is Cat-Cat, counted) ... by hand:
    # pairs with Cat: items 0-9 have 3 Cat-Cat pairs each (30), items 10-14 one (5), items 30-39 one
    # Cat-Dog each (10): 45 pairs, 10 disagree.
    assert result.disagreement["Cat"] == pytest.approx(10 / 45)
    # Deterministic: the same labels give the same intervals.
    again = compute_agreement(triples, classes=["Cat", "Dog", "Fox"], rounds=300)
    assert again.alpha == result.alpha


def test_it_has_nothing_to_say_without_items_labelled_twice():
    result = compute_agreement([(1, "ann", "Cat"), (2, "bob", "Dog")])
    assert result.items == 0 and result.alpha.value is None and result.pairs == []


# --------------------------------------------------------------------------------------------------
# From the database, on the members page and the API
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def two_labelled(image_project, bob, django_user_model):
    """bob and carol each labelled the same 6 items (their own judgements, one after the other as the
    history keeps them): they agree on 4."""
    from labeling.models import Judgement, JudgementSource, Stage
    from projects.models import Role
    from projects.services import do_add_member

    carol = django_user_model.objects.create_user("carol", password="x")
    do_add_member(image_project, user=bob, role=Role.ANNOTATOR)
    do_add_member(image_project, user=carol, role=Role.ANNOTATOR)
    items = list(image_project.items.order_by("id"))
    bob_says = ["Cat", "Cat", "Cat", "Not Cat", "Not Cat", "Not Cat"]
    carol_says = ["Cat", "Cat", "Not Cat", "Not Cat", "Not Cat", "Cat"]
    for item, b, c in zip(items, bob_says, carol_says, strict=True):
        Judgement.objects.create(project=image_project, item=item, label=b, user=bob, labelled_by="bob",
                                 stage=Stage.TRAIN, is_current=False)
        Judgement.objects.create(project=image_project, item=item, label=c, user=carol, labelled_by="carol",
                                 stage=Stage.TRAIN)
        # A reviewer's adjudication is not an independent label: left out.
        Judgement.objects.create(project=image_project, item=item, label="Cat", user=None, labelled_by="x",
                                 stage=Stage.TRAIN, source=JudgementSource.IMPORTED, is_current=False)
    return image_project


@pytest.mark.django_db
def test_it_shows_agreement_on_the_members_page_and_in_the_api(two_labelled, bob, alice, charlie):
    from django.test import Client
    from rest_framework.test import APIClient

    from projects.models import ItemStatus

    two_labelled.items.update(status=ItemStatus.LABELLED)
    api = APIClient()
    api.force_authenticate(bob)
    body = api.get(f"/api/projects/{two_labelled.pk}/agreement/").json()
    assert body["items"] == 6
    (pair,) = body["pairs"]
    assert (pair["a"], pair["b"]) == ("bob", "carol")
    # po = 4/6; bob Cat 3 / Not Cat 3, carol Cat 3 / Not Cat 3: pe = 0.5; kappa = (2/3 - 1/2) / (1/2) = 1/3
    assert pair["raw"]["value"] == pytest.approx(4 / 6) and pair["kappa"]["value"] == pytest.approx(1 / 3)
    assert pair["kappa"]["items"] == 6 and pair["kappa"]["low"] <= pair["kappa"]["high"]
    assert body["confusion"]["Cat"]["Not Cat"] == 2
    page = Client()
    page.force_login(alice)
    html = page.get(f"/projects/{two_labelled.pk}/members/").content.decode()
    assert 'id="agreement-pairs"' in html and "bob · carol" in html and "0.33" in html
    outsider = APIClient()
    outsider.force_authenticate(charlie)
    assert outsider.get(f"/api/projects/{two_labelled.pk}/agreement/").status_code == 404
    assert outsider.get("/api/projects/999999/agreement/").status_code == 404


@pytest.mark.django_db
def test_it_says_when_there_is_nothing_to_compare_yet(image_project, alice):
    from django.test import Client

    page = Client()
    page.force_login(alice)
    html = page.get(f"/projects/{image_project.pk}/members/").content.decode()
    assert 'id="agreement-none"' in html
