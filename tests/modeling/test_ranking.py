"""The queue after a model exists: highest entropy first, a recorded random share, TEST stays random,
concurrent annotators spread over buckets, predictions in items/next."""

from __future__ import annotations

import random

import pytest
from rest_framework.test import APIClient

from labeling.models import Judgement
from labeling.services import do_record_judgement, next_items
from modeling.hooks import UncertaintyOrdering
from modeling.models import ItemPrediction, ModelState
from projects.models import Item, ItemStatus, Membership, Role
from tests.modeling.conftest import make_text_project
from tests.modeling.test_training import label_from_queue

pytestmark = pytest.mark.django_db


@pytest.fixture
def trained(tmp_path, alice, loop_on, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        project, truth = make_text_project(tmp_path, n=40)
    label_from_queue(project, alice, truth, 20, django_capture_on_commit_callbacks)
    state = ModelState.objects.get(project=project)
    assert state.ranked_version == state.current_version.number
    return project, truth


def _pool_uncertainties(project):
    return dict(
        ItemPrediction.objects.filter(project=project, item__status=ItemStatus.UNLABELLED, item__leased_to=None)
        .values_list("item_id", "uncertainty")
    )


def test_it_serves_the_most_uncertain_item_first(trained, alice, django_capture_on_commit_callbacks):
    project, truth = trained
    project.random_share = 0.0
    project.save()
    uncertainties = _pool_uncertainties(project)
    leased = next_items(project, user=alice, rng=random.Random(1))[0]
    assert leased.stage == "TRAIN"
    assert leased.picked_by == "active" and leased.probability == 1.0
    assert uncertainties[leased.item.pk] == max(uncertainties.values())
    with django_capture_on_commit_callbacks(execute=True):
        judgement = do_record_judgement(project, item=leased.item, user=alice, label=truth[leased.item.key])
    judgement.refresh_from_db()
    assert (judgement.picked_by, judgement.picked_probability) == ("active", 1.0)


def test_the_random_share_is_uniform_and_recorded_with_its_probability(trained, alice):
    project, _ = trained
    project.random_share = 1.0
    project.save()
    pool = Item.objects.filter(project=project, status=ItemStatus.UNLABELLED, leased_to=None).count()
    leased = next_items(project, user=alice, count=3, rng=random.Random(2))
    assert {li.picked_by for li in leased} == {"random"}
    assert all(li.probability == pytest.approx(1.0 / pool) for li in leased)


def test_test_items_stay_uniformly_random_whatever_the_model_says(trained, alice):
    project, _ = trained
    project.random_share = 0.0
    project.test_min_judgements = 100  # forces the TEST stage
    project.save()
    leased = next_items(project, user=alice, count=4, rng=random.Random(3))
    assert {li.stage for li in leased} == {"TEST"}
    assert {li.picked_by for li in leased} == {"random"}


def test_concurrent_annotators_are_spread_over_buckets(tmp_path, alice, bob):
    """Three near-duplicates (one bucket) top the ranking: a second annotator gets a different kind."""
    project, _ = make_text_project(tmp_path, n=8)
    Membership.objects.create(project=project, user=bob, role=Role.ANNOTATOR)
    items = list(project.items.order_by("id"))
    for rank, item in enumerate(items):
        ItemPrediction.objects.create(
            item=item, project=project, version=1, label="sport", confidence=0.5,
            entropy=1.0 - rank * 0.01, uncertainty=1.0 - rank * 0.01, scores=[0.5, 0.5],
            bucket=7 if rank < 3 else 100 + rank,
        )
    ModelState.objects.create(project=project, ranked_version=1)
    project.test_min_judgements = 0
    project.test_ratio = 0
    project.random_share = 0.0
    project.save()

    first = next_items(project, user=alice, rng=random.Random(0))[0]
    second = next_items(project, user=bob, rng=random.Random(0))[0]
    assert first.item.pk == items[0].pk  # the most uncertain
    assert second.item.pk == items[3].pk  # not items[1]: same bucket as what alice holds
    # Within one batch too: buckets first, duplicates after.
    ordering = UncertaintyOrdering(project, version=1, random_share=0.0)
    pool = Item.objects.filter(project=project, leased_to=None)
    picked = [c.item_id for c in ordering.candidates(pool, limit=4, rng=random.Random(0))]
    assert picked[:3] == [items[4].pk, items[5].pk, items[6].pk]


def test_items_next_shows_the_models_prediction_and_scores(trained, alice):
    project, truth = trained
    client = APIClient()
    client.force_authenticate(alice)
    response = client.get(f"/api/projects/{project.pk}/items/next/?count=2")
    assert response.status_code == 200
    assert len(response.json()) == 2
    for item in response.json():
        prediction = item["prediction"]
        assert prediction["label"] in ("sport", "food")
        assert set(prediction["scores"]) == {"sport", "food"}
        assert sum(prediction["scores"].values()) == pytest.approx(1.0, abs=1e-3)
        assert prediction["confidence"] == pytest.approx(max(prediction["scores"].values()), abs=1e-5)
        assert prediction["model_version"] == ModelState.objects.get(project=project).current_version.number
    assert Judgement.objects.filter(project=project).count() == 20


def test_it_ranks_by_margin_by_default_and_by_entropy_when_asked():
    """Three classes: a tie between two likely classes is on a boundary; a spread-out row has more entropy."""
    import numpy as np

    from modeling.ml.head import normalised_entropy, uncertainty

    probs = np.array([[0.45, 0.45, 0.10], [0.50, 0.25, 0.25], [0.98, 0.01, 0.01]])
    margin = uncertainty(probs, "margin")
    entropy = uncertainty(probs, "entropy")
    assert margin == pytest.approx([1.0, 0.75, 0.03])
    assert entropy == pytest.approx(normalised_entropy(probs))
    assert margin.argmax() == 0 and entropy.argmax() == 1
    # Two classes: both rules give the same order.
    binary = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    assert list(np.argsort(uncertainty(binary, "margin"))) == list(np.argsort(uncertainty(binary, "entropy")))


def _admin_change(admin_client, project, **changes) -> None:
    """Save the project's admin form with these fields changed (the rest as the form shows them)."""
    url = f"/admin/projects/project/{project.pk}/change/"
    form = admin_client.get(url).context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and not isinstance(v, (list, dict))}
    data |= {"classes": '["sport", "food"]', "dataset_options": "{}", "model_options": "{}",
             "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0", **changes}
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]


def test_it_stores_the_projects_rule_and_reranks_when_the_admin_changes_it(
    trained, admin_client, django_capture_on_commit_callbacks
):
    project, _ = trained
    for row in ItemPrediction.objects.filter(project=project):  # margin, the default: 1 - |p_a - p_b|
        assert row.uncertainty == pytest.approx(1 - abs(row.scores[0] - row.scores[1]), abs=1e-4)
    assert UncertaintyOrdering(project, version=1, random_share=0).name == "margin"

    ItemPrediction.objects.filter(project=project).update(uncertainty=0.5)  # a marker the re-ranking replaces
    with django_capture_on_commit_callbacks(execute=True):
        _admin_change(admin_client, project, sampling="entropy")
    project.refresh_from_db()
    assert project.sampling == "entropy"
    rows = list(ItemPrediction.objects.filter(project=project))
    assert rows
    for row in rows:  # re-ranked by the task the admin enqueued
        assert row.uncertainty == pytest.approx(row.entropy)
        assert row.uncertainty != 0.5  # the marker below is gone: every row was rewritten


def test_it_re_embeds_and_trains_at_once_when_the_admin_changes_the_encoder(
    trained, admin_client, django_capture_on_commit_callbacks
):
    from modeling.ml.embeddings import store_for
    from modeling.models import ModelVersion

    project, _ = trained
    before = ModelState.objects.select_related("current_version").get(project=project).current_version
    assert before.encoder == "minilm_ngrams"
    with django_capture_on_commit_callbacks(execute=True):
        _admin_change(admin_client, project, encoder="text_ngrams")
    project.refresh_from_db()
    # No new label was needed: the whole pool has the new encoder's vectors and a version is trained on them.
    state = ModelState.objects.select_related("current_version").get(project=project)
    assert state.current_version.number == before.number + 1 and state.current_version.encoder == "text_ngrams"
    assert ModelVersion.objects.filter(project=project).count() == before.number + 1
    spec, store = store_for(project)
    assert spec.name == "text_ngrams" and store.load().ids.size == project.items.count()
    assert state.ranked_version == state.current_version.number  # the queue reads the new version


def test_it_reranks_and_reproposes_when_a_reimported_config_changes_the_rules(
    trained, tmp_path, django_capture_on_commit_callbacks
):
    from interchange.config import load_config
    from interchange.importer import do_import_config
    from projects.signals import settings_changed

    project, _ = trained
    ItemPrediction.objects.filter(project=project).update(uncertainty=0.5)  # markers the re-ranking replaces
    ModelState.objects.filter(project=project).update(proposed_version=0)
    config = tmp_path / "topics.yml"
    config.write_text(config.read_text().replace(
        "model: {directory: topics-model}", "model: {directory: topics-model, sampling: entropy, "
        "proposal_guarantee: all_proposals}"))
    announced = []

    def listen(sender, *, project_id, fields, **kwargs):
        announced.append(set(fields))

    settings_changed.connect(listen)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            do_import_config(load_config(config))
        project.refresh_from_db()
        assert (project.sampling, project.proposal_guarantee) == ("entropy", "all_proposals")
        assert announced == [{"sampling", "proposal_guarantee"}]
        rows = list(ItemPrediction.objects.filter(project=project))
        assert rows
        for row in rows:  # re-ranked with the new rule at once, not at the next training
            assert row.uncertainty == pytest.approx(row.entropy)
        state = ModelState.objects.select_related("current_version").get(project=project)
        assert state.proposed_version == state.current_version.number  # re-proposed under the new guarantee

        # The same config again changes nothing, so nothing is announced.
        with django_capture_on_commit_callbacks(execute=True):
            do_import_config(load_config(config))
        assert len(announced) == 1
    finally:
        settings_changed.disconnect(listen)
