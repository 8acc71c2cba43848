"""`simulate` for object detection projects: an oracle CSV in the form of ../shared/datasets/trees
(`path,xmin,ymin,xmax,ymax,label`, pixels, one row per box) boxes images through the real queue and services.

- A share of the images (`--holdout`) is never imported: each checkpoint's detector is scored on them (mAP@0.5
  and @0.5:0.95, modeling/ml/detection.py's `score_detections`). The rest is the pool the project's queue draws
  from: TEST images at random as the product draws them, TRAIN images by the detector's uncertainty (`active`:
  the least confident detection first) or uniformly at random (`random`: the project's random share set to 1).
- An image with no row in the oracle is a valid "no objects here" answer.
- The detector trains at the checkpoints (`--checkpoints`, labelled images), not after every label as the
  worker would: a version takes minutes on these cores, and a person boxing ~15 crowns a tile by hand takes
  about as long, so a new version every few tiles is what a labeller would see. Each version re-ranks the
  pool (rank_boxes_version), as in the product.
- The 30-tile dataset is smaller than Light Bulb's default minimums (10 TEST and 10 TRAIN judgements before a
  first model), so the simulated owner sets the project's minimums as the settings page allows: TEST_MIN TEST
  images, TRAIN_MIN TRAIN images and a TEST ratio of TEST_RATIO (recorded with the result).
- Every image is costed as the screen offers it (issue 24's cost model, modeling/ml/detection.py): a TRAIN image
  shown with the model's boxes costs reviewing them (1 s to look, 1 s per box accepted, 3 s per box adjusted,
  1 s per box removed, 7 s per box missed and drawn); a TEST image (blind) or one shown before any detector, or
  one whose proposals the cost rule holds back, costs drawing every box (1 s + 7 s a box). Drawing every box of
  the pool by hand is the comparison. `--label-all` adds the whole pool as the last checkpoint.
"""

from __future__ import annotations

import csv
import json
import random
import shutil
import subprocess
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from labeling.models import Stage
from labeling.services import do_record_judgement, next_items
from projects.models import Item, ItemStatus, Project, Role

DEFAULT_CHECKPOINTS = (4, 8, 12, 16, 20, 24)
TEST_MIN = 2
TRAIN_MIN = 2
TEST_RATIO = 0.15
FIELDS = ("path", "xmin", "ymin", "xmax", "ymax", "label")


class DetectionOracleError(ValueError):
    """An oracle CSV that is not `path,xmin,ymin,xmax,ymax,label` or names an image that is not there."""


def read_oracle(path: Path, *, classes: list[str]) -> dict[str, list[dict]]:
    """Boxes by image file name, of the project's classes (coordinates as the CSV gives them)."""
    boxes: dict[str, list[dict]] = defaultdict(list)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or any(f not in reader.fieldnames for f in FIELDS):
            raise DetectionOracleError(f"{path}: the header must be {','.join(FIELDS)}")
        for n, row in enumerate(reader, start=2):
            try:
                box = {k: float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax")}
            except (TypeError, ValueError):
                raise DetectionOracleError(f"{path} line {n}: coordinates must be numbers") from None
            if row["label"] in classes:
                boxes[Path(row["path"]).name].append({**box, "label": row["label"]})
    return dict(boxes)


@dataclass
class DetectionResult:
    dataset: str
    strategy: str
    seed: int
    pool: int
    holdout: int
    pool_boxes: int
    holdout_boxes: int
    classes: list[str]
    minimums: dict
    curve: list[dict] = field(default_factory=list)  # {"labels", "train", "test", "map50", "map50_95", ...}
    label_all: dict | None = None
    seconds: float = 0.0
    commit: str = ""
    settings: dict = field(default_factory=dict)


class DetectionSimulation:
    def __init__(self, *, config: Path, oracle: Path, strategy: str, seed: int, holdout: float,
                 checkpoints: list[int], label_all: bool, work: Path, progress=None) -> None:
        self.config, self.oracle, self.strategy, self.seed = config, oracle, strategy, seed
        self.holdout_share, self.checkpoints, self.label_all = holdout, sorted(checkpoints), label_all
        self.work, self.progress = work, progress

    def run(self) -> DetectionResult:
        from interchange.config import load_config
        from interchange.importer import do_import_config

        started = time.monotonic()
        config = load_config(self.config)
        source = Path(config.dataset_directory)
        classes = list(config.classes)
        gold_by_name = read_oracle(self.oracle, classes=classes)
        suffixes = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
        images = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
        if not images:
            raise DetectionOracleError(f"no images in {source}")
        missing = sorted(set(gold_by_name) - {p.name for p in images})
        if missing:
            raise DetectionOracleError(f"the oracle names images that are not in {source}: {', '.join(missing[:5])}")
        rng = random.Random(self.seed)
        order = list(range(len(images)))
        rng.shuffle(order)
        n_holdout = int(round(len(images) * self.holdout_share))
        holdout = [images[i] for i in order[:n_holdout]]
        pool = [images[i] for i in order[n_holdout:]]
        # The pool as the user would import it: the images alone, in a folder of this run's own.
        run = f"{self.strategy}-{self.seed}"
        data = self.work / f"pool-{run}"
        data.mkdir(parents=True, exist_ok=True)
        for path in pool:
            shutil.copyfile(path, data / path.name)
        config = replace(config, dataset_directory=data, judgements_file=None, slug=f"{config.slug}-{run}",
                         model_directory=self.work / f"models-{run}")
        project = do_import_config(config).project
        project.test_min_judgements, project.min_train_judgements, project.test_ratio = TEST_MIN, TRAIN_MIN, TEST_RATIO
        project.random_share = 1.0 if self.strategy == "random" else project.random_share
        project.save(update_fields=["test_min_judgements", "min_train_judgements", "test_ratio", "random_share"])
        user, _ = User.objects.get_or_create(username="oracle")
        project.memberships.get_or_create(user=user, defaults={"role": Role.ANNOTATOR})
        gold = {item.key: _snapped(gold_by_name.get(Path(item.key).name, []), item, project)
                for item in Item.objects.filter(project=project)}
        holdout_gold = [(path, gold_by_name.get(path.name, [])) for path in holdout]

        result = DetectionResult(
            dataset=self.oracle.parent.name, strategy=self.strategy, seed=self.seed, pool=len(pool),
            holdout=len(holdout), pool_boxes=sum(len(b) for b in gold.values()),
            holdout_boxes=sum(len(b) for _, b in holdout_gold), classes=classes,
            minimums={"test_min": TEST_MIN, "train_min": TRAIN_MIN, "test_ratio": TEST_RATIO},
            commit=_commit(), settings=_settings())
        cost: dict[str, Any] = {"model": 0.0, "reviewed": 0, "by_hand": 0, "accepted_unchanged": 0,
                                "accepted": 0, "adjusted": 0, "removed": 0, "drawn": 0}
        targets = sorted({t for t in self.checkpoints if t <= len(pool)} | ({len(pool)} if self.label_all else set()))
        labelled = 0
        for target in targets:
            labelled = self._label_until(project, user, target, gold, cost)
            point = self._train_and_score(project, holdout_gold, classes)
            point["labels"] = labelled
            result.curve.append(point)
            self._say(f"{self.strategy} seed {self.seed}: {labelled} images, holdout mAP@0.5 {point['map50']}")
            if labelled >= len(pool):
                break
        if labelled >= len(pool):
            from modeling.ml.detection import hand_seconds

            hand_all = sum(hand_seconds(b) for b in gold.values())
            result.label_all = {
                "images": labelled, "boxes": result.pool_boxes, **{k: v for k, v in cost.items() if k != "model"},
                "seconds": round(cost["model"], 1), "hand_seconds": round(hand_all, 1),
                "seconds_per_image": round(cost["model"] / labelled, 2),
                "hand_seconds_per_image": round(hand_all / labelled, 2),
                "ratio": round(cost["model"] / hand_all, 3) if hand_all else None,
            }
        result.seconds = round(time.monotonic() - started, 1)
        return result

    def _label_until(self, project: Project, user: User, target: int, gold: dict[str, list[dict]],
                     cost: dict) -> int:
        from modeling.ml.detection import hand_seconds, review_cost
        from modeling.services import predictions_for

        done = project.items.exclude(status=ItemStatus.UNLABELLED).count()
        while done < target:
            leased = next_items(project, user=user, count=min(5, target - done))
            if not leased:
                break
            predictions = predictions_for(project, [li.item.pk for li in leased])
            for li in leased:
                boxes = gold[li.item.key]
                payload = predictions.get(li.item.pk) if li.stage == Stage.TRAIN else None
                shown = payload.get("boxes") if payload is not None else None
                if shown is not None:  # TEST is blind; without a detector, or held back by the cost rule: none
                    edits = review_cost(shown, boxes)
                    seconds = edits.seconds
                    cost["reviewed"] += 1
                    cost["accepted_unchanged"] += edits.clean
                    for name in ("accepted", "adjusted", "removed", "drawn"):
                        cost[name] += getattr(edits, name)
                else:
                    seconds = hand_seconds(boxes)
                    cost["by_hand"] += 1
                    cost["drawn"] += len(boxes)
                cost["model"] += seconds
                with transaction.atomic():
                    do_record_judgement(project, item=li.item, user=user, value={"boxes": boxes},
                                        role=Role.ANNOTATOR, time_taken=seconds)
                done += 1
        return done

    def _train_and_score(self, project: Project, holdout: list[tuple[Path, list[dict]]], classes: list[str]) -> dict:
        from modeling.ml.detection import detect, load_detector, score_detections
        from modeling.models import ModelState
        from modeling.tasks import train_project

        message = train_project(project.pk)
        state = ModelState.objects.select_related("current_version").filter(project=project).first()
        version = state.current_version if state else None
        if version is None:
            return {"map50": None, "map50_95": None, "train": 0, "test": 0, "note": message}
        model, _meta = load_detector(project.model_path / version.file)
        started = time.monotonic()
        found = detect(model, [path for path, _ in holdout], classes=classes)
        detect_seconds = time.monotonic() - started
        overall = score_detections([b for _, b in holdout], found, classes=classes)["overall"]
        test = ((version.metrics.get("boxes") or {}).get("overall") or {})
        review = version.metrics.get("review") or {}
        return {"map50": _round(overall.get("map50")), "map50_95": _round(overall.get("map50_95")),
                "train": version.train_count, "test": version.test_count, "version": version.number,
                "test_map50": _round(test.get("map50")), "iterations": version.metrics.get("iterations"),
                "training_seconds": round(version.training_seconds, 1), "threshold": review.get("threshold"),
                "detect_seconds_per_image": round(detect_seconds / max(1, len(holdout)), 3)}

    def _say(self, line: str) -> None:
        if self.progress is not None:
            self.progress(line)


def _snapped(boxes: list[dict], item: Item, project: Project) -> list[dict]:
    """The oracle's boxes as the screen would save them (whole pixels, inside the image: what validation keeps)."""
    from projects.label_kinds import kind_for

    value = kind_for(project).validate(project, item, {"boxes": boxes})
    return list((value or {}).get("boxes") or [])


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

    return {"iterations": settings.LIGHTBULB_DETECTOR_ITERATIONS,
            "train_seconds": settings.LIGHTBULB_DETECTOR_TRAIN_SECONDS}


def simulate_detection_here(options: dict, *, stdout, stderr) -> None:
    """`manage.py simulate` for a detection config (in the throwaway database `run_in_throwaway_database` made)."""
    from django.conf import settings

    checkpoints = [int(x) for x in str(options.get("checkpoints") or "").split(",") if x.strip()] or list(
        DEFAULT_CHECKPOINTS)
    simulation = DetectionSimulation(
        config=Path(options["config"]), oracle=Path(options["oracle"]), strategy=options["strategy"],
        seed=options["seed"], holdout=options["holdout"], checkpoints=checkpoints, label_all=options["label_all"],
        work=Path(settings.DATA_ROOT),
        progress=None if options.get("no_progress") else (lambda line: stderr.write(line)),
    )
    result = simulation.run()
    out = Path(options["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(asdict(result), indent=2), encoding="utf-8")
    last = result.curve[-1] if result.curve else {}
    stdout.write(f"{result.strategy}, seed {result.seed}: {last.get('labels', 0)} images -> holdout mAP@0.5 "
                 f"{last.get('map50')} ({result.seconds:.0f} s)")
