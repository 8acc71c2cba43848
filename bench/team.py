"""A team of fallible simulated annotators on data with known labels: overlap, agreement, adjudication.

`manage.py simulate --annotators N --annotator-error E` runs this instead of the single annotator's
label-efficiency run. N annotators take turns on the real queue (`next_items`: the overlap coin, the
second-label pool, the blind rules) and label through `do_record_judgement` as annotators; each answer is
wrong with probability E, independently, and then a uniformly chosen other class. Once the budget of
labels is spent they finish the overlap rounds they opened, and a simulated reviewer decides every
disagreement from the review queue (`labeling.disputes`), wrong with probability `--reviewer-error`
(default 0: the reviewer is the project's expert, who sees every label and the guidelines).

It measures what issue 20 asks of the product:
- agreement as the members page shows it (`labeling.agreement.project_agreement`: Cohen's kappa per pair,
  Krippendorff's alpha, bootstrap 95% intervals), against the true value for annotators who err
  independently with probability E: po = (1 - E)^2 + E^2 / (C - 1) and pe = sum over classes of q_c^2,
  q_c = (1 - E) pi_c + E (1 - pi_c) / (C - 1) with pi the classes' shares of the data; for identical
  independent raters Krippendorff's alpha has the same population value;
- the accuracy of the TEST labels against the ground truth: the final labels (agreed, or decided by the
  reviewer) and what one person's label would have been (each TEST item's first vote).

The model loop is off here: it only changes the order of TRAIN items, which none of these figures
depends on, and leaving it off keeps a 1,500-label team run to a minute.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import OutputWrapper

from interchange.config import load_config
from interchange.importer import do_import_config
from labeling.agreement import project_agreement
from labeling.disputes import lease_dispute
from labeling.leases import release_lease
from labeling.models import Judgement, Stage
from labeling.services import do_record_judgement, next_items
from lightbulb_site.atomic import atomic_write
from projects.models import Item, ItemStatus, Project, Role
from projects.services import do_add_member

from .simulation import SECONDS_PER_LABEL, SimulationError, match_oracle, read_oracle, run_or_exit


@dataclass
class TeamOptions:
    config: Path
    oracle: Path
    annotators: int = 3
    annotator_error: float = 0.1
    overlap_share: float = 0.25
    overlap_k: int = 2
    reviewer_error: float = 0.0
    budget: int = 1500  # labels by annotators, votes included
    seed: int = 0


def true_kappa(shares: dict[str, float], *, error: float) -> float:
    """The population kappa of two raters who are each wrong with probability `error`, independently,
    choosing a wrong class uniformly (see the module docstring)."""
    c = len(shares)
    observed = (1 - error) ** 2 + error**2 / (c - 1)
    q = [(1 - error) * p + error * (1 - p) / (c - 1) for p in shares.values()]
    expected = sum(x * x for x in q)
    return (observed - expected) / (1 - expected)


class TeamSimulation:
    def __init__(self, options: TeamOptions, *, work: Path) -> None:
        self.o = options
        self.work = work
        self.rng = random.Random(options.seed)  # the queue's draws
        # Each person's slips from a stream of their own, so one more annotator changes no one else's.
        self.slips = [random.Random(options.seed * 1000 + n + 1) for n in range(options.annotators)]
        self.reviewer_slips = random.Random(options.seed * 1000 + 999)

    def _validate(self) -> None:
        o = self.o
        if o.annotators < 2:
            raise SimulationError("--annotators must be at least 2 for a team")
        for name, value in (("annotator-error", o.annotator_error), ("reviewer-error", o.reviewer_error),
                            ("overlap-share", o.overlap_share)):
            if not 0 <= value <= 1:
                raise SimulationError(f"--{name} must be between 0 and 1")
        if not 2 <= o.overlap_k <= o.annotators:
            raise SimulationError("--overlap-k must be at least 2 and at most --annotators")

    def _answer(self, stream: random.Random, truth: str, error: float) -> str:
        if stream.random() >= error:
            return truth
        return stream.choice([c for c in self.project.classes if c != truth])

    def run(self) -> dict:
        self._validate()
        o = self.o
        settings.LIGHTBULB_MODEL_IN_THE_LOOP = False
        config = dataclasses.replace(load_config(o.config), model_directory=self.work / "models", judgements_file=None)
        project = do_import_config(config).project
        if not project.modelled:
            raise SimulationError(f"{project.get_label_type_display()} projects have no team simulation")
        truth = match_oracle(project, read_oracle(o.oracle))
        Project.objects.filter(pk=project.pk).update(overlap_share=o.overlap_share, overlap_k=o.overlap_k)
        project.refresh_from_db()
        self.project = project
        people = get_user_model().objects
        annotators = [people.create_user(f"annotator-{n + 1}") for n in range(o.annotators)]
        for user in annotators:
            do_add_member(project, user=user, role=Role.ANNOTATOR)
        reviewer = people.create_user("reviewer")
        do_add_member(project, user=reviewer, role=Role.REVIEWER)

        labels = self._label(annotators, truth, budget=min(o.budget, 4 * len(truth)))
        labels += self._finish_rounds(annotators, truth)
        decided = 0
        while (dispute := lease_dispute(project, user=reviewer)) is not None:
            label = self._answer(self.reviewer_slips, truth[dispute.item.pk], o.reviewer_error)
            do_record_judgement(project, item=dispute.item, user=reviewer, label=label, role=Role.REVIEWER,
                                time_taken=SECONDS_PER_LABEL)
            decided += 1
        return self._measure(truth, labels=labels, decided=decided)

    def _label(self, annotators, truth: dict[int, str], *, budget: int) -> int:
        """Annotators take turns on the queue until `budget` labels are given or nobody gets an item."""
        labels = idle = turn = 0
        while labels < budget and idle < len(annotators):
            n = turn % len(annotators)
            turn += 1
            leased = next_items(self.project, user=annotators[n], count=1, rng=self.rng)
            if not leased:
                idle += 1
                continue
            idle = 0
            item = leased[0].item
            do_record_judgement(self.project, item=item, user=annotators[n], time_taken=SECONDS_PER_LABEL,
                                label=self._answer(self.slips[n], truth[item.pk], self.o.annotator_error),
                                role=Role.ANNOTATOR)
            labels += 1
        return labels

    def _finish_rounds(self, annotators, truth: dict[int, str]) -> int:
        """After the budget: the overlap items still waiting for a label get theirs (the queue hands them out
        first); a fresh item handed out instead goes back untouched."""
        labels = 0
        progress = True
        while progress and self.project.items.filter(status=ItemStatus.PARTIAL).exists():
            progress = False
            for n, user in enumerate(annotators):
                leased = next_items(self.project, user=user, count=1, rng=self.rng)
                if not leased:
                    continue
                item = leased[0].item
                if item.status != ItemStatus.PARTIAL:
                    release_lease(item, user=user)
                    continue
                do_record_judgement(self.project, item=item, user=user, time_taken=SECONDS_PER_LABEL,
                                    label=self._answer(self.slips[n], truth[item.pk], self.o.annotator_error),
                                    role=Role.ANNOTATOR)
                labels += 1
                progress = True
        return labels

    def _measure(self, truth: dict[int, str], *, labels: int, decided: int) -> dict:
        project, o = self.project, self.o
        counts = Counter(truth.values())
        shares = {c: counts.get(c, 0) / len(truth) for c in project.classes}
        kappa = true_kappa(shares, error=o.annotator_error)
        agreement = project_agreement(project)

        def within(e) -> bool | None:
            return None if e.low is None or e.high is None else e.low <= kappa <= e.high

        test = list(Judgement.objects.filter(project=project, is_current=True, stage=Stage.TEST)
                    .values_list("item_id", "label"))
        overlapped = set(Item.objects.filter(project=project, labels_wanted__gt=1).values_list("pk", flat=True))
        first_votes: dict[int, str] = {}
        for item_id, label in (Judgement.objects.filter(project=project, is_vote=True, undone_at__isnull=True)
                               .order_by("created_at", "id").values_list("item_id", "label")):
            first_votes.setdefault(item_id, label)
        single = [first_votes.get(i, label) for i, label in test]
        return {
            "dataset_items": len(truth),
            "classes": len(project.classes),
            "annotators": o.annotators,
            "annotator_error": o.annotator_error,
            "reviewer_error": o.reviewer_error,
            "overlap_share": o.overlap_share,
            "overlap_k": o.overlap_k,
            "seed": o.seed,
            "labels": labels,
            "items_labelled": Judgement.objects.filter(project=project, is_current=True).count(),
            "overlap_items": len(overlapped),
            "disputes_decided": decided,
            "partial_left": project.items.filter(status=ItemStatus.PARTIAL).count(),
            "true_kappa": round(kappa, 4),
            "pairs": [
                {"a": p.a, "b": p.b, "items": p.kappa.items, "kappa": p.kappa.value, "low": p.kappa.low,
                 "high": p.kappa.high, "within": within(p.kappa)}
                for p in agreement.pairs
            ],
            "alpha": {"value": agreement.alpha.value, "low": agreement.alpha.low, "high": agreement.alpha.high,
                      "items": agreement.alpha.items, "within": within(agreement.alpha)},
            "test_items": len(test),
            "test_overlapped": sum(i in overlapped for i, _ in test),
            "test_accuracy_single": round(sum(s == truth[i] for s, (i, _) in zip(single, test, strict=True))
                                          / len(test), 4) if test else None,
            "test_accuracy_final": round(sum(label == truth[i] for i, label in test) / len(test), 4) if test else None,
        }


def team_here(options: dict, *, stdout: OutputWrapper | TextIO, stderr: OutputWrapper | TextIO) -> None:
    """Run a team simulation in this process (the child that `run_in_throwaway_database` starts)."""
    opts = TeamOptions(
        config=Path(options["config"]), oracle=Path(options["oracle"]), annotators=options["annotators"],
        annotator_error=options["annotator_error"], overlap_share=options["overlap_share"],
        overlap_k=options["overlap_k"], reviewer_error=options["reviewer_error"], budget=options["budget"],
        seed=options["seed"],
    )
    started = time.monotonic()
    result = run_or_exit(TeamSimulation(opts, work=Path(settings.DATA_ROOT)).run, stderr=stderr)
    out = Path(options["out"])
    atomic_write(out, lambda fh: fh.write(json.dumps(result, indent=1)), text=True)
    alpha = result["alpha"]
    stdout.write(
        f"team of {opts.annotators}, E={opts.annotator_error}, k={opts.overlap_k}, seed {opts.seed}: "
        f"{result['labels']} labels, {result['overlap_items']} overlap items; alpha {alpha['value']} "
        f"[{alpha['low']}, {alpha['high']}] vs true {result['true_kappa']}; TEST accuracy "
        f"{result['test_accuracy_single']} with one label -> {result['test_accuracy_final']} after adjudication "
        f"({result['test_items']} TEST items, {result['disputes_decided']} disagreements decided) "
        f"({time.monotonic() - started:.0f} s)"
    )
