"""Agreement between people who labelled the same items: raw agreement, Cohen's kappa per pair,
Krippendorff's alpha over everyone, each with a bootstrap 95% interval and the number of items behind
it, and where people disagree (a confusion matrix between annotators, a disagreement rate per class).

The statistics are computed from `(item, person, label)` triples (`compute_agreement`); `project_labels`
reads them from the database: each person's latest label of each item, from labels people gave
independently (their own, a batch confirmation or correction). Adjudications are left out: a reviewer
changes a label because they disagree, so counting it would measure the review, not the annotators.
Auto-labels and imported rows (no person) are left out too.

It runs in the web process, so numpy (imported inside the functions) and no scikit-learn: the
statistics are a few lines each, and the resamples are numpy arrays (2,000 items labelled twice by five
people: all intervals in a fraction of a second).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations

from projects.models import ItemStatus, Project

from .models import Judgement, JudgementSource

BOOTSTRAP_ROUNDS = 1000  # resamples of the items for each interval
INDEPENDENT_SOURCES = (
    JudgementSource.HUMAN, JudgementSource.CONFIRMED_PROPOSAL, JudgementSource.CORRECTED_PROPOSAL,
    JudgementSource.SEARCH_BATCH,
)

Triple = tuple[object, str, str]  # item, person, label


@dataclass(frozen=True)
class Estimate:
    value: float | None  # None when the items cannot say (none, or no variation to measure against)
    low: float | None  # bootstrap 95% interval (2.5th and 97.5th percentiles over resampled items)
    high: float | None
    items: int  # items behind it


@dataclass(frozen=True)
class PairAgreement:
    a: str
    b: str
    raw: Estimate
    kappa: Estimate  # Cohen's


@dataclass
class Agreement:
    items: int  # items labelled by two people or more
    alpha: Estimate  # Krippendorff's (nominal), everyone together
    raw: Estimate  # share of agreeing pairs of labels over those items
    pairs: list[PairAgreement] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    # confusion[x][y]: pairs of labels of one item by two people, one said x and the other y (symmetric).
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)
    # per class: the share of pairs involving the class in which the two people disagreed
    disagreement: dict[str, float | None] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# The statistics, on units: one unit per item, {person: label}
# --------------------------------------------------------------------------------------------------


def _units(triples: Iterable[Triple]) -> list[dict[str, str]]:
    by_item: dict[object, dict[str, str]] = defaultdict(dict)
    for item, person, label in triples:
        by_item[item][person] = label  # the last one given wins, as the caller orders them
    return [labels for labels in by_item.values() if len(labels) >= 2]


def cohen_kappa(pairs: Sequence[tuple[str, str]]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items: (po - pe) / (1 - pe)."""
    n = len(pairs)
    if n == 0:
        return None
    observed = sum(1 for x, y in pairs if x == y) / n
    first, second = Counter(x for x, _ in pairs), Counter(y for _, y in pairs)
    expected = sum(first[c] * second[c] for c in first) / (n * n)
    if expected == 1.0:
        return None  # both used one and the same class throughout: chance explains it all
    return (observed - expected) / (1.0 - expected)


def raw_agreement(units: Sequence[dict[str, str]]) -> float | None:
    """The share of pairs of labels (two people, one item) that agree."""
    agree = total = 0
    for labels in units:
        for x, y in combinations(labels.values(), 2):
            total += 1
            agree += x == y
    return agree / total if total else None


def _unit_coincidences(labels: dict[str, str]) -> tuple[float, dict[str, float]]:
    """One unit's part of Krippendorff's coincidence matrix: its disagreeing weight and its weight per
    class (each of its m labels pairs with the m - 1 others, each pair weighing 1 / (m - 1))."""
    values = list(labels.values())
    m = len(values)
    counts = Counter(values)
    per_class = {c: float(n) for c, n in counts.items()}  # sum over partners of 1/(m-1): n_c * (m-1)/(m-1)
    agreeing = sum(n * (n - 1) for n in counts.values()) / (m - 1)
    return float(m) - agreeing, per_class


def _alpha_from(parts: Sequence[tuple[float, dict[str, float]]]) -> float | None:
    totals: Counter[str] = Counter()
    disagreeing = 0.0
    for d, per_class in parts:
        disagreeing += d
        totals.update(per_class)
    n = sum(totals.values())
    expected = n * n - sum(v * v for v in totals.values())  # sum over c != k of n_c * n_k
    if n <= 1 or expected == 0:
        return None  # no pairable values, or one class only: nothing to tell agreement from chance
    return 1.0 - (n - 1) * disagreeing / expected


def krippendorff_alpha(units: Sequence[dict[str, str]]) -> float | None:
    """Krippendorff's alpha for nominal labels, any number of people per item (items with one are
    ignored): 1 - (n - 1) * sum of off-diagonal coincidences / sum over c != k of n_c * n_k."""
    return _alpha_from([_unit_coincidences(u) for u in units if len(u) >= 2])


def _percentiles(values, *, rounds: int) -> tuple[float | None, float | None]:
    """The 2.5th and 97.5th percentiles of the resampled values that say something (not NaN)."""
    import numpy as np

    values = values[~np.isnan(values)]
    if len(values) < max(1, rounds // 2):  # most resamples say nothing (e.g. a single class): no interval
        return None, None
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def _resamples(n: int, *, rounds: int, rng: random.Random):
    import numpy as np

    return np.random.default_rng(rng.randrange(2**32)).integers(0, n, size=(rounds, n))


def _pair(a: str, b: str, shared: list[tuple[str, str]], *, rounds: int, rng: random.Random) -> PairAgreement:
    """Raw agreement and Cohen's kappa of two people, both intervals from the same resampled items."""
    import numpy as np

    raw_value = sum(x == y for x, y in shared) / len(shared)
    kappa_value = cohen_kappa(shared)
    if len(shared) < 2:
        return PairAgreement(a=a, b=b, raw=Estimate(raw_value, None, None, len(shared)),
                             kappa=Estimate(kappa_value, None, None, len(shared)))
    codes = {c: i for i, c in enumerate(sorted({v for pair in shared for v in pair}))}
    x = np.array([codes[p] for p, _ in shared])
    y = np.array([codes[q] for _, q in shared])
    idx = _resamples(len(shared), rounds=rounds, rng=rng)
    xs, ys = x[idx], y[idx]
    observed = (xs == ys).mean(axis=1)
    expected = sum((xs == c).mean(axis=1) * (ys == c).mean(axis=1) for c in codes.values())
    with np.errstate(divide="ignore", invalid="ignore"):
        kappas = np.where(expected < 1.0, (observed - expected) / (1.0 - expected), np.nan)
    return PairAgreement(
        a=a, b=b,
        raw=Estimate(raw_value, *_percentiles(observed, rounds=rounds), items=len(shared)),
        kappa=Estimate(kappa_value, *_percentiles(kappas, rounds=rounds), items=len(shared)),
    )


def _overall(units: Sequence[dict[str, str]], *, rounds: int, rng: random.Random) -> tuple[Estimate, Estimate]:
    """Krippendorff's alpha and raw agreement over all units, intervals from the same resampled items:
    each unit's coincidences and pairs are fixed, so a resample only sums them."""
    import numpy as np

    alpha_value, raw_value = krippendorff_alpha(units), raw_agreement(units)
    if len(units) < 2:
        return Estimate(alpha_value, None, None, len(units)), Estimate(raw_value, None, None, len(units))
    classes = sorted({v for u in units for v in u.values()})
    column = {c: i for i, c in enumerate(classes)}
    disagreeing = np.zeros(len(units))
    weights = np.zeros((len(units), len(classes)))
    agree_pairs = np.zeros(len(units))
    all_pairs = np.zeros(len(units))
    for i, labels in enumerate(units):
        d, per_class = _unit_coincidences(labels)
        disagreeing[i] = d
        for c, w in per_class.items():
            weights[i, column[c]] = w
        values = list(labels.values())
        all_pairs[i] = len(values) * (len(values) - 1) / 2
        agree_pairs[i] = sum(x == y for x, y in combinations(values, 2))
    # How often each unit is drawn in each resample (a bootstrap is a multinomial draw of the units), so
    # each resample's sums are one matrix product, not an array of every drawn unit.
    drawn = np.random.default_rng(rng.randrange(2**32)).multinomial(
        len(units), np.full(len(units), 1.0 / len(units)), size=rounds
    )
    totals = drawn @ weights  # (rounds, classes)
    n = totals.sum(axis=1)
    expected = n * n - (totals * totals).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        alphas = np.where(expected > 0, 1.0 - (n - 1) * (drawn @ disagreeing) / expected, np.nan)
        raws = (drawn @ agree_pairs) / (drawn @ all_pairs)
    return (Estimate(alpha_value, *_percentiles(alphas, rounds=rounds), items=len(units)),
            Estimate(raw_value, *_percentiles(raws, rounds=rounds), items=len(units)))


def compute_agreement(
    triples: Iterable[Triple], *, classes: Sequence[str] = (), rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0
) -> Agreement:
    """Agreement over the items two people or more labelled. Seeded: the same labels give the same
    intervals on every page load."""
    rng = random.Random(seed)
    units = _units(triples)
    people = sorted({person for labels in units for person in labels})
    pairs = []
    for a, b in combinations(people, 2):
        shared = [(labels[a], labels[b]) for labels in units if a in labels and b in labels]
        if shared:
            pairs.append(_pair(a, b, shared, rounds=rounds, rng=rng))
    seen = sorted({label for labels in units for label in labels.values()})
    names = list(classes) + [c for c in seen if c not in classes]
    confusion = {x: dict.fromkeys(names, 0) for x in names}
    involved: Counter[str] = Counter()
    disagreed: Counter[str] = Counter()
    for labels in units:
        for x, y in combinations(labels.values(), 2):
            confusion[x][y] += 1
            if x != y:
                confusion[y][x] += 1
            for c in {x, y}:
                involved[c] += 1
                disagreed[c] += x != y
    alpha, raw = _overall(units, rounds=rounds, rng=rng)
    return Agreement(
        items=len(units),
        alpha=alpha,
        raw=raw,
        pairs=pairs,
        classes=names,
        confusion=confusion,
        disagreement={c: (disagreed[c] / involved[c] if involved[c] else None) for c in names},
    )


# --------------------------------------------------------------------------------------------------
# From the database
# --------------------------------------------------------------------------------------------------


def project_labels(project: Project) -> list[Triple]:
    """(item, person, label): each person's latest independent, not undone label of each item. Overlap
    items count once their round is finished (agreed, disputed or decided): while some of their people
    have still to label them, the labels so far would favour whoever is quickest."""
    rows = (
        Judgement.objects.filter(project=project, undone_at__isnull=True, source__in=INDEPENDENT_SOURCES)
        .exclude(user=None)
        .exclude(item__status=ItemStatus.PARTIAL)
        .order_by("created_at", "id")
        .values_list("item_id", "user__username", "label")
    )
    return list(rows)


def project_agreement(project: Project, *, rounds: int = BOOTSTRAP_ROUNDS) -> Agreement:
    return compute_agreement(project_labels(project), classes=project.classes, rounds=rounds, seed=project.pk)


@dataclass(frozen=True)
class OverlapAccuracy:
    """One annotator's votes on finished overlap items against the item's final label (agreed by all,
    or decided by a reviewer)."""

    items: int
    correct: int

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.items if self.items else None


def overlap_accuracy(project: Project) -> dict[int, OverlapAccuracy]:
    """Per user id: how often their vote was the final label of a settled overlap item."""
    settled = Judgement.objects.filter(project=project, is_current=True, item__labels_wanted__gt=1,
                                       item__status=ItemStatus.LABELLED)
    final = dict(settled.values_list("item_id", "label"))
    items: Counter[int] = Counter()
    correct: Counter[int] = Counter()
    # A subquery, not a list of ids: SQLite takes at most 32,766 parameters in a statement.
    votes = Judgement.objects.filter(project=project, is_vote=True, undone_at__isnull=True,
                                     item_id__in=settled.values("item_id"))
    for item_id, user_id, label in votes.exclude(user=None).values_list("item_id", "user_id", "label"):
        items[user_id] += 1
        correct[user_id] += label == final[item_id]
    return {u: OverlapAccuracy(items=n, correct=correct[u]) for u, n in items.items()}
