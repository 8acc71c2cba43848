"""`simulate` for sequence tagging projects: an oracle in the `labels.jsonl` form of ../shared/datasets/wnut16_ner
({"id", "text", "spans": [{"start", "end", "label"}]}) labels texts through the real queue and services.

- A share of the texts (`--holdout`) is never imported: each checkpoint's version is scored on them (entity F1,
  exact span and type). The rest is the pool the project's queue draws from: TEST texts at random as the
  product draws them, TRAIN texts by the model's uncertainty (`active`) or uniformly at random (`random`:
  the project's random share set to 1).
- The oracle's spans are WNUT's, drawn on WNUT's tokens; the screen snaps to spaCy's tokens, so each span is
  widened to the tokens it touches (as a person selecting those words would) and a span that would then
  overlap the one before it is dropped; how many were widened or dropped is recorded. The holdout is scored
  against the same snapped spans, so an unreachable offset never counts against the model.
- The model trains at the checkpoints (`--checkpoints`, labelled texts), not after every label as the worker
  would: training takes seconds to a minute here, and the curve is what is measured. Each version re-ranks
  the pool (rank_spans_version), as in the product.
- `--reference`: the NER trained on every pool text's spans, scored on the same holdout (the "all labels" F1).
- `--label-all`: then go on until every pool text has an answer, training at doubling checkpoints, taking the
  review queue (texts the cost rule sends to review) whenever it has any. A text is costed as the screen
  offers it: a TRAIN text with the model's spans pre-filled costs reviewing them (1.0 s + 2.0 s per span
  fixed, added or removed); a TEST text (blind), or one shown before any model, is labelled by hand (2.5 s
  + 2.0 s per entity). Labelling every text by hand is the comparison.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from labeling.models import Stage
from labeling.services import do_record_judgement, next_items, next_review_items
from modeling.ml.ner import HAND_PER_ENTITY, HAND_PER_TEXT, REVIEW_PER_EDIT, REVIEW_PER_TEXT, edits
from projects.label_kinds import item_text
from projects.models import Item, ItemStatus, Project, Role

DEFAULT_CHECKPOINTS = (50, 100, 200, 300, 400)


def hand_seconds(spans: list[dict]) -> float:
    return HAND_PER_TEXT + HAND_PER_ENTITY * len(spans)


def review_seconds(predicted: list[dict], gold: list[dict]) -> float:
    return REVIEW_PER_TEXT + REVIEW_PER_EDIT * edits(predicted, gold)


def snap(text: str, spans: list[dict], tokens: list[list[int]]) -> tuple[list[dict], int, int]:
    """The oracle's spans on the screen's tokens: (spans, widened, dropped)."""
    out: list[dict] = []
    widened = dropped = 0
    for s in sorted(spans, key=lambda s: (s["start"], s["end"])):
        inside = [t for t in tokens if t[0] < s["end"] and s["start"] < t[1]]
        if not inside:
            dropped += 1
            continue
        start, end = inside[0][0], inside[-1][1]
        if out and start < out[-1]["end"]:
            dropped += 1
            continue
        if (start, end) != (s["start"], s["end"]):
            widened += 1
        out.append({"start": start, "end": end, "label": s["label"]})
    return out, widened, dropped


@dataclass
class SequenceResult:
    dataset: str
    strategy: str
    seed: int
    sampling: str
    pool: int
    holdout: int
    types: list[str]
    curve: list[dict] = field(default_factory=list)  # {"labels", "train", "test", "f1", "precision", "recall"}
    reference: dict | None = None
    label_all: dict | None = None
    snapping: dict = field(default_factory=dict)
    seconds: float = 0.0
    commit: str = ""
    settings: dict = field(default_factory=dict)


class SequenceSimulation:
    def __init__(self, *, config: Path, oracle: Path, strategy: str, seed: int, holdout: float,
                 checkpoints: list[int], reference: bool, label_all: bool, work: Path, progress=None,
                 sampling: str = "") -> None:
        self.sampling = sampling  # "" (the project's default: margin, 1 - the least sure decision) or "entropy"
        self.config, self.oracle, self.strategy, self.seed = config, oracle, strategy, seed
        self.holdout_share, self.checkpoints = holdout, sorted(checkpoints)
        self.reference, self.label_all, self.work, self.progress = reference, label_all, work, progress

    def run(self) -> SequenceResult:
        from interchange.config import load_config
        from interchange.importer import do_import_config
        from modeling.tasks import tokenize_project

        started = time.monotonic()
        rows = [json.loads(line) for line in self.oracle.read_text(encoding="utf-8").splitlines() if line.strip()]
        rng = random.Random(self.seed)
        order = list(range(len(rows)))
        rng.shuffle(order)
        n_holdout = int(round(len(rows) * self.holdout_share))
        holdout = [rows[i] for i in order[:n_holdout]]
        pool = [rows[i] for i in order[n_holdout:]]
        # The pool as the user would import it: {"id", "text"} lines, in a folder of this run's own.
        run = f"{self.strategy}{'-' + self.sampling if self.sampling else ''}-{self.seed}"
        data = self.work / f"pool-{run}"
        data.mkdir(parents=True, exist_ok=True)
        (data / "tweets.jsonl").write_text(
            "".join(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in pool), encoding="utf-8")
        config = load_config(self.config)
        config = replace(config, dataset_directory=data, judgements_file=None,
                         slug=f"{config.slug}-{run}", model_directory=self.work / f"models-{run}")
        project = do_import_config(config).project
        tokenize_project(project.pk)
        if self.strategy == "random":
            project.random_share = 1.0
            project.save(update_fields=["random_share"])
        if self.sampling:
            project.sampling = self.sampling
            project.save(update_fields=["sampling"])
        user, _ = User.objects.get_or_create(username="oracle")
        project.memberships.get_or_create(user=user, defaults={"role": Role.ANNOTATOR})
        types = list(project.classes)

        from modeling.ml.spans import tokenize

        gold_by_key: dict[str, list[dict]] = {}
        widened = dropped = total = 0
        by_id = {r["id"]: r for r in pool}
        for item in Item.objects.filter(project=project).only("key", "text", "tokens"):
            spans, w, d = snap(item.text, [s for s in by_id[item.key]["spans"] if s["label"] in types],
                               item.tokens or [])
            gold_by_key[item.key] = spans
            widened, dropped, total = widened + w, dropped + d, total + len(by_id[item.key]["spans"])
        holdout_tokens = tokenize([r["text"] for r in holdout])
        holdout_gold = []
        for r, tokens in zip(holdout, holdout_tokens, strict=True):
            spans, w, d = snap(r["text"], [s for s in r["spans"] if s["label"] in types], tokens)
            holdout_gold.append((r["text"], spans))
            widened, dropped, total = widened + w, dropped + d, total + len(r["spans"])

        result = SequenceResult(dataset=self.oracle.parent.name, strategy=self.strategy, seed=self.seed,
                                sampling=project.sampling,
                                pool=len(pool), holdout=len(holdout), types=types,
                                snapping={"spans": total, "widened": widened, "dropped": dropped},
                                commit=_commit(), settings=_settings())
        labelled = 0
        cost: dict[str, float] = {"model": 0.0, "reviewed": 0, "by_hand": 0, "review_queue": 0, "accepted": 0}
        goal = max(self.checkpoints) if self.checkpoints else 0
        targets = list(self.checkpoints)
        if self.label_all:
            n = goal * 2 if goal else 50
            while n < len(pool):
                targets.append(n)
                n *= 2
            targets.append(len(pool))
        for target in targets:
            labelled = self._label_until(project, user, target, gold_by_key, cost, count_costs=self.label_all)
            point = self._train_and_score(project, holdout_gold, types)
            point["labels"] = labelled
            if target in self.checkpoints:
                result.curve.append(point)
            self._say(f"{self.strategy} seed {self.seed}: {labelled} texts, holdout F1 {point['f1']}")
            if labelled >= len(pool):
                break
        if self.label_all:
            n = int(max(1, cost["reviewed"] + cost["by_hand"]))
            hand_all = sum(hand_seconds(s) for s in gold_by_key.values())
            result.label_all = {
                "texts": n, "reviewed": cost["reviewed"], "by_hand": cost["by_hand"],
                "from_review_queue": cost["review_queue"], "accepted_unchanged": cost["accepted"],
                "seconds_per_text": round(cost["model"] / n, 3),
                "hand_seconds_per_text": round(hand_all / len(gold_by_key), 3),
                "ratio": round(cost["model"] / hand_all, 3) if hand_all else None,
            }
        if self.reference:
            result.reference = self._reference(types, [(t, s) for t, s in ((item_text(i), gold_by_key[i.key])
                                                        for i in Item.objects.filter(project=project))],
                                               holdout_gold)
        result.seconds = round(time.monotonic() - started, 1)
        return result

    def _label_until(self, project: Project, user: User, target: int, gold: dict[str, list[dict]],
                     cost: dict, *, count_costs: bool) -> int:
        from modeling.services import predictions_for

        done = project.items.exclude(status=ItemStatus.UNLABELLED).count()
        while done < target:
            # Labelling everything, a team takes the review queue (texts the model is sure of) whenever it has
            # any, as the label page offers it; the curve before it is the plain queue's, active or random.
            leased = next_review_items(project, user=user, count=min(10, target - done)) if count_costs else []
            leased = leased or next_items(project, user=user, count=min(10, target - done))
            if not leased:
                break
            predictions = predictions_for(project, [li.item.pk for li in leased])
            for li in leased:
                spans = gold[li.item.key]
                shown = predictions.get(li.item.pk) if li.stage == Stage.TRAIN else None  # TEST is blind
                if count_costs:
                    if shown is not None and "spans" in shown:
                        cost["model"] += review_seconds(shown["spans"], spans)
                        cost["reviewed"] += 1
                        cost["review_queue"] += li.picked_by == "review"
                        cost["accepted"] += li.picked_by == "review" and edits(shown["spans"], spans) == 0
                    else:
                        cost["model"] += hand_seconds(spans)
                        cost["by_hand"] += 1
                with transaction.atomic():
                    do_record_judgement(project, item=li.item, user=user, value={"spans": spans},
                                        role=Role.ANNOTATOR, time_taken=hand_seconds(spans))
                done += 1
        return done

    def _train_and_score(self, project: Project, holdout: list[tuple[str, list[dict]]], types: list[str]) -> dict:
        from modeling.ml.ner import load_head, score
        from modeling.models import ModelState
        from modeling.tasks import train_project

        message = train_project(project.pk)
        state = ModelState.objects.select_related("current_version").filter(project=project).first()
        version = state.current_version if state else None
        if version is None:
            return {"f1": None, "precision": None, "recall": None, "train": 0, "test": 0, "note": message}
        report = score(load_head(project.model_path / version.file), holdout, types=types)["overall"]
        return {"f1": _round(report.get("f1")), "precision": _round(report.get("precision")),
                "recall": _round(report.get("recall")), "train": version.train_count, "test": version.test_count,
                "version": version.number, "test_f1": _round((version.metrics.get("overall") or {}).get("f1")),
                "training_seconds": round(version.training_seconds, 1)}

    def _reference(self, types: list[str], train: list[tuple[str, list[dict]]],
                   holdout: list[tuple[str, list[dict]]]) -> dict:
        from django.conf import settings

        from modeling.ml.ner import load_head, score, train_ner

        folder = self.work / f"reference-{self.seed}.spacy"
        trained = train_ner(types=types, train=train, test=[], out_dir=folder, epochs=settings.LIGHTBULB_NER_EPOCHS,
                            seconds=settings.LIGHTBULB_NER_TRAIN_SECONDS * 4, seed=self.seed)
        report = score(load_head(folder), holdout, types=types)["overall"]
        self._say(f"reference: all {len(train)} pool texts, holdout F1 {_round(report.get('f1'))}")
        return {"labels": len(train), "f1": _round(report.get("f1")), "precision": _round(report.get("precision")),
                "recall": _round(report.get("recall")), "epochs": trained.epochs,
                "training_seconds": round(trained.seconds, 1)}

    def _say(self, line: str) -> None:
        if self.progress is not None:
            self.progress(line)


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 4)


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=False, cwd=Path(__file__).resolve().parent).stdout.strip()
    except OSError:
        return ""


def _settings() -> dict:
    from django.conf import settings

    return {"epochs": settings.LIGHTBULB_NER_EPOCHS, "train_seconds": settings.LIGHTBULB_NER_TRAIN_SECONDS,
            "pipeline": settings.LIGHTBULB_SPACY_PIPELINE}


def simulate_sequence_here(options: dict, *, stdout, stderr) -> None:
    """`manage.py simulate` for a sequence config (in the throwaway database `run_in_throwaway_database` made)."""
    from django.conf import settings

    checkpoints = [int(x) for x in str(options.get("checkpoints") or "").split(",") if x.strip()] or list(
        DEFAULT_CHECKPOINTS)
    simulation = SequenceSimulation(
        config=Path(options["config"]), oracle=Path(options["oracle"]), strategy=options["strategy"],
        seed=options["seed"], holdout=options["holdout"], checkpoints=checkpoints, reference=options["reference"],
        label_all=options["label_all"], work=Path(settings.DATA_ROOT), sampling=options.get("sampling") or "",
        progress=None if options.get("no_progress") else (lambda line: stderr.write(line)),
    )
    result = simulation.run()
    out = Path(options["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(asdict(result), indent=2), encoding="utf-8")
    last = result.curve[-1] if result.curve else {}
    stdout.write(f"{result.strategy}, seed {result.seed}: {last.get('labels', 0)} texts -> holdout F1 "
                 f"{last.get('f1')} ({result.seconds:.0f} s)")
