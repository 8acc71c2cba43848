"""Label spreading over unlabelled items: the graph, the spread, and the cross-validation gate in train_head.

Synthetic features stand in for an encoder's output here (the math is what is under test); the real
encoders and the real training task are exercised in test_training.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from rest_framework.test import APIClient

from modeling.ml import training
from modeling.ml.semisupervised import MIN_LABELS, knn_graph, sample_rows, spread
from modeling.ml.training import CV_MAX_ITEMS, Validation, train_head
from modeling.models import ModelState
from tests.modeling.conftest import make_proposing_project


def elongated_clusters(seed: int, *, classes: int = 6, per_class: int = 250, dim: int = 64):
    """Each class a stretched cloud along its own direction: the shape only the unlabelled items show."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for c in range(classes):
        centre = rng.standard_normal(dim) * 0.5
        direction = rng.standard_normal(dim)
        direction /= np.linalg.norm(direction)
        t = rng.uniform(-4, 4, per_class)[:, None]
        xs.append(centre + t * direction + 0.6 * rng.standard_normal((per_class, dim)))
        ys += [c] * per_class
    x, y = np.concatenate(xs).astype(np.float32), np.array(ys)
    order = rng.permutation(len(y))
    return x[order], y[order]


def fit(x, y, *, train, test, pool, unlabelled=None):
    k = int(y.max()) + 1
    return train_head(
        classes=[f"c{i}" for i in range(k)], x_train=x[train], y_train=y[train], x_test=x[test], y_test=y[test],
        pool=x[pool], encoder="synthetic", encoder_version="1",
        unlabelled=None if unlabelled is None else x[unlabelled],
    )


def test_it_builds_a_symmetric_graph_and_spreads_each_label_through_its_own_cluster():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 0.1, (40, 8)) + np.r_[5.0, np.zeros(7)]
    b = rng.normal(0, 0.1, (40, 8)) + np.r_[0.0, 5.0, np.zeros(6)]
    z = np.concatenate([a, b]).astype(np.float32)
    graph = knn_graph(z, neighbours=5)

    edges = set(zip(graph.rows.tolist(), graph.cols.tolist(), strict=True))
    assert edges and all((j, i) in edges for i, j in edges)
    assert all(i != j for i, j in edges)
    assert all((i < 40) == (j < 40) for i, j in edges)  # the two clusters are far apart: no edge between them

    soft = spread(graph, np.array([0, 40]), np.array([0, 1]), 2)
    assert soft.shape == (80, 2)
    assert np.allclose(soft.sum(axis=1), 1.0)
    assert (soft[:40].argmax(axis=1) == 0).all() and (soft[40:].argmax(axis=1) == 1).all()


def test_it_samples_at_most_the_limit_the_same_way_every_time():
    vectors = np.arange(40, dtype=np.float16).reshape(20, 2)
    keep = np.ones(20, dtype=bool)
    keep[:5] = False
    first = sample_rows(vectors, keep=keep, limit=8)
    assert first.shape == (8, 2) and first.dtype == np.float32
    assert (first[:, 0] >= 10).all()  # never one of the excluded rows
    assert np.array_equal(first, sample_rows(vectors, keep=keep, limit=8))
    assert len(sample_rows(vectors, keep=keep, limit=100)) == 15
    assert np.array_equal(sample_rows(vectors, limit=100), vectors.astype(np.float32))  # every row, in order


class CountingReads:
    """A matrix that counts how often rows are read from it (as a memory-mapped store would be)."""

    def __init__(self, vectors):
        self.vectors, self.reads = vectors, 0

    def __len__(self):
        return len(self.vectors)

    def __getitem__(self, rows):
        self.reads += 1
        return self.vectors[rows]


def test_a_lazy_sample_picks_the_same_rows_and_reads_them_only_when_used():
    vectors = np.arange(40, dtype=np.float16).reshape(20, 2)
    keep = np.ones(20, dtype=bool)
    keep[:5] = False
    store = CountingReads(vectors)
    lazy = sample_rows(store, keep=keep, limit=8, lazy=True)
    assert len(lazy) == 8 and store.reads == 0
    rows = np.asarray(lazy, dtype=np.float32)
    assert store.reads == 1 and rows.dtype == np.float32
    assert np.array_equal(rows, sample_rows(vectors, keep=keep, limit=8))


def test_it_keeps_label_spreading_when_cross_validation_shows_it_helps():
    x, y = elongated_clusters(seed=2)
    train, test, holdout, unlabelled = np.arange(48), np.arange(48, 68), np.arange(1200, 1500), np.arange(48, 1200)
    plain = fit(x, y, train=train, test=test, pool=np.arange(1200))
    semi = fit(x, y, train=train, test=test, pool=np.arange(1200), unlabelled=unlabelled)

    report = semi.metrics["semi_supervised"]
    assert report["used"] is True and report["unlabelled"] == 1152
    assert report["cv_loss_spread"] < report["cv_loss_plain"]
    assert semi.head.info["semi_supervised"] is True
    # 48 labels over 6 stretched clouds: the labels alone miss 4 of 300 holdout items (0.987); the spread
    # shape gets all of them.
    accuracy = lambda r: float((r.head.predict_proba(x[holdout]).argmax(axis=1) == y[holdout]).mean())  # noqa: E731
    assert accuracy(plain) < 0.99
    assert accuracy(semi) == 1.0


def test_it_falls_back_to_the_labels_alone_when_spreading_loses_in_cross_validation():
    # Each class is two far-apart clusters on opposite sides (an XOR-like layout); the graph links
    # items within a cluster only, and the linear head does better from the labels than from the
    # spread soft labels, so the gate keeps the plain fit.
    rng = np.random.default_rng(0)
    dim = 16
    centres = {0: [np.r_[3, 0, np.zeros(dim - 2)], np.r_[0, 3, np.zeros(dim - 2)]],
               1: [np.r_[-3, 0, np.zeros(dim - 2)], np.r_[0, -3, np.zeros(dim - 2)]]}
    xs, ys = [], []
    for c, cs in centres.items():
        for centre in cs:
            xs.append(centre + 1.2 * rng.standard_normal((300, dim)))
            ys += [c] * 300
    order = rng.permutation(1200)
    x, y = np.concatenate(xs).astype(np.float32)[order], np.array(ys)[order]
    train, test = np.arange(48), np.arange(48, 68)
    plain = fit(x, y, train=train, test=test, pool=np.arange(900))
    semi = fit(x, y, train=train, test=test, pool=np.arange(900), unlabelled=np.arange(48, 900))

    report = semi.metrics["semi_supervised"]
    assert report["used"] is False
    assert report["cv_loss_spread"] >= report["cv_loss_plain"]
    assert report["reason"] == "did not beat the labels alone in cross-validation on TRAIN"
    assert np.array_equal(semi.head.weight, plain.head.weight)  # exactly the head the labels alone give


def test_it_waits_for_enough_train_labels_before_spreading():
    x, y = elongated_clusters(seed=0)
    few = MIN_LABELS - 1
    result = fit(x, y, train=np.arange(few), test=np.arange(few, few + 20), pool=np.arange(1200),
                 unlabelled=np.arange(few, 1200))
    report = result.metrics["semi_supervised"]
    assert report == {"method": "label spreading", "used": False, "unlabelled": 1200 - few,
                      "validated_at": few, "reason": f"starts at {MIN_LABELS} TRAIN labels"}
    assert result.head.info["semi_supervised"] is False


@pytest.mark.django_db
def test_it_trains_the_real_task_with_the_unlabelled_pool_and_reports_it(tmp_path, alice, charlie, settings, client):
    # Real MiniLM features of two topics; 45 TRAIN labels pass the minimum, so the gate is tried.
    project, _truth = make_proposing_project(tmp_path, alice, settings, n=120, test=20, train=45)
    version = ModelState.objects.select_related("current_version").get(project=project).current_version
    report = version.metrics["semi_supervised"]
    assert report["method"] == "label spreading"
    assert report["unlabelled"] == 120 - 45  # every item without a TRAIN label, TEST items included
    assert report["cv_loss_plain"] >= 0 and report["cv_loss_spread"] >= 0
    assert report["used"] is (report["cv_loss_spread"] < report["cv_loss_plain"])
    assert version.accuracy >= 0.9  # two topics: spreading or not, the head separates them

    api = APIClient()
    api.force_authenticate(alice)
    assert api.get(f"/api/projects/{project.pk}/model/").json()["current_version"]["semi_supervised"] == report
    client.force_login(alice)
    card = client.get(f"/projects/{project.pk}/model/card/").content.decode()
    assert 'id="model-semi-supervised"' in card
    assert ("label spreading over 75 unlabelled items" in card) is report["used"]

    api.force_authenticate(charlie)
    assert api.get(f"/api/projects/{project.pk}/model/").status_code == 404


def test_it_cross_validates_again_only_once_train_has_changed_by_a_tenth():
    validated = Validation(train_count=60, l2=0.01, cv_loss=0.5, semi_supervised={"used": True})
    assert validated.covers(60) and validated.covers(66) and validated.covers(54)
    assert not validated.covers(67) and not validated.covers(53)
    # Spreading's limits: its first trial at MIN_LABELS and its last at CV_MAX_ITEMS are never skipped.
    assert not Validation(train_count=MIN_LABELS - 1, l2=0.01, cv_loss=0.5).covers(MIN_LABELS)
    assert not Validation(train_count=CV_MAX_ITEMS, l2=0.01, cv_loss=0.5).covers(CV_MAX_ITEMS + 1)
    # A choice cross-validation never made (too few labels to validate) is never carried over.
    assert not Validation(train_count=60, l2=0.01, cv_loss=None).covers(60)
    assert Validation.from_metrics({"validation": validated.as_json()}) == validated
    assert Validation.from_metrics({}) is None and Validation.from_metrics({"validation": {"l2": "x"}}) is None


def test_it_reuses_the_last_validation_and_follows_its_spreading_decision(monkeypatch):
    x, y = elongated_clusters(seed=0)
    first = fit(x, y, train=np.arange(60), test=np.arange(60, 80), pool=np.arange(1200),
                unlabelled=np.arange(60, 1200))
    validation = Validation.from_metrics(first.metrics)
    assert validation.train_count == 60 and validation.semi_supervised["used"] is True
    assert first.metrics["validation"] == validation.as_json()

    def no_cross_validation(*args, **kwargs):
        raise AssertionError("cross-validated although the last validation covers this TRAIN size")

    monkeypatch.setattr(training, "choose_l2", no_cross_validation)
    monkeypatch.setattr(training, "stratified_folds", no_cross_validation)
    train = np.r_[np.arange(60), np.arange(80, 84)]  # 4 more TRAIN labels: within a tenth of 60
    later = train_head(
        classes=[f"c{i}" for i in range(6)], x_train=x[train], y_train=y[train], x_test=x[60:80],
        y_test=y[60:80], pool=x[:1200], encoder="synthetic", encoder_version="1",
        unlabelled=x[np.setdiff1d(np.arange(1200), train)], validation=validation,
    )
    assert Validation.from_metrics(later.metrics) == validation  # still the choice made at 60 labels
    report = later.metrics["semi_supervised"]
    assert report["used"] is True and report["validated_at"] == 60
    assert report["unlabelled"] == 1200 - 64
    assert later.metrics["l2"] == validation.l2 and later.head.info["semi_supervised"] is True
    assert later.accuracy >= first.accuracy - 0.05


@pytest.mark.django_db
def test_it_revalidates_in_the_real_task_only_after_train_grew_by_a_tenth(tmp_path, alice, settings, client):
    from labeling.services import do_record_judgement
    from modeling.models import ModelVersion
    from modeling.tasks import train_project

    project, truth = make_proposing_project(tmp_path, alice, settings, n=120, test=20, train=45)
    settings.LIGHTBULB_MODEL_IN_THE_LOOP = False  # label in steps, train when the test says
    unlabelled = iter(sorted(i.key for i in project.items.filter(status="unlabelled")))

    def label(count):
        for _ in range(count):
            item = project.items.get(key=next(unlabelled))
            do_record_judgement(project, item=item, user=alice, label=truth[item.key], time_taken=2.0)
        train_project(project.pk)
        return ModelVersion.objects.filter(project=project).order_by("-number").first()

    first = ModelVersion.objects.get(project=project, number=1)
    assert first.metrics["validation"]["train_count"] == 45
    reused = label(4)  # 49 TRAIN labels: within 45 * 1.1
    assert (reused.number, reused.train_count) == (2, 49)
    assert reused.metrics["validation"] == first.metrics["validation"]
    assert reused.metrics["semi_supervised"]["validated_at"] == 45
    assert reused.metrics["semi_supervised"]["used"] is first.metrics["semi_supervised"]["used"]
    client.force_login(alice)
    card = client.get(f"/projects/{project.pk}/model/card/").content.decode()
    assert ("at 45 TRAIN labels" if reused.metrics["semi_supervised"]["used"] else "decided at 45 TRAIN labels") in card
    fresh = label(1)  # 50: more than a tenth above 45
    assert fresh.train_count == 50 and fresh.metrics["validation"]["train_count"] == 50
    assert fresh.metrics["semi_supervised"]["validated_at"] == 50
