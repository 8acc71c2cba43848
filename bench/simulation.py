"""Label-efficiency simulation: a simulated annotator drives the real product on data with known labels.

Everything the product does runs as it does for people: the config import, the queue
(`labeling.services.next_items`), judgements (`do_record_judgement`), the django-q2 tasks (embedding,
training, ranking, proposals; synchronous here), batch leases and confirmations
(`labeling.proposals`). The annotator only answers from the ground truth. The one thing the
simulator computes itself is what no product part does: accuracy on held-out items nobody labels,
with the current version's own head (`scoring.Head`).

Run it through `manage.py simulate`, which gives it a throwaway database and data folder.
"""

from __future__ import annotations

import csv
import dataclasses
import fcntl
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO, TypeVar

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import OutputWrapper
from django.db.models import Q

from interchange.config import ConfigError, load_config
from interchange.importer import do_import_config
from labeling.audits import AUDIT
from labeling.models import Judgement, JudgementSource
from labeling.proposals import available_by_class, do_confirm_batch, lease_batch
from labeling.services import LeasedItem, do_record_judgement, next_items
from lightbulb_site.atomic import atomic_write
from modeling.ml.embeddings import store_for
from modeling.ml.head import Head
from modeling.models import ModelState
from modeling.services import NoModelYet, current_version
from projects.models import Item, ItemStatus, Project, Role
from projects.services import ProjectError, do_add_member

# Modeled human time (issue: measure label efficiency).
SECONDS_PER_LABEL = 2.5
SECONDS_PER_BATCH_ITEM = 0.3
SECONDS_PER_REJECTION = 1.0
# A wrong tile given its right class in the grid (instead of an untick): the person saw it and chose.
SECONDS_PER_CORRECTION = 2.0
R = TypeVar("R")
HOLDOUT_REASON = "held out by simulate: never shown, used to measure accuracy"


class SimulationError(ValueError):
    """Bad input: an unreadable oracle, items without a ground-truth label, labels that are not classes."""


@dataclass
class Options:
    config: Path
    oracle: Path
    strategy: str = "active"  # or "random": only the queue order changes
    budget: int = 200
    step: int = 10
    holdout: float = 0.2
    seed: int = 0
    label_all: bool = False
    reference: bool = False  # also fit the product's head on every pool label: the "all labels" yardstick
    # Each wrong proposal in a batch is missed with this probability: it stays ticked and becomes a wrong
    # label (costing nothing extra); the others are corrected in the grid.
    reviewer_miss_rate: float = 0.0
    # The simulated owner takes "label the rest automatically" whenever the current version can (0 s each);
    # people go on with what is left, so every item ends with a label and the trade is visible.
    auto_label: bool = False
    # The annotator gives another class (uniformly among the others) to this share of the curve's labels, and
    # the run ends with a label check (modeling.tasks.check_labels): how many of these planted errors it finds.
    label_noise: float = 0.0
    cache: Path | None = None  # embedding cache kept between runs (content hash -> vector)
    progress: Callable[[str, int, int], None] | None = None


@dataclass
class LabelAll:
    single_labels: int = 0
    batch_items_seen: int = 0
    batch_rejections: int = 0
    corrections: int = 0
    missed: int = 0
    audit_labels: int = 0  # single labels that were a random audit's second look at a confirmed item
    batches: int = 0
    auto_labels: int = 0
    auto_label_runs: list = field(default_factory=list)

    def modeled_seconds(self) -> float:
        return (self.single_labels * SECONDS_PER_LABEL + self.batch_items_seen * SECONDS_PER_BATCH_ITEM
                + self.batch_rejections * SECONDS_PER_REJECTION + self.corrections * SECONDS_PER_CORRECTION)


@dataclass
class Result:
    strategy: str
    seed: int
    items: int
    holdout: int
    curve: list[dict] = field(default_factory=list)
    label_all: dict | None = None
    reference: dict | None = None
    label_check: dict | None = None

    def as_json(self) -> dict:
        out = {"strategy": self.strategy, "seed": self.seed, "items": self.items, "holdout": self.holdout,
               "curve": self.curve}
        if self.label_check is not None:
            out["label_check"] = self.label_check
        if self.label_all is not None:
            out["label_all"] = self.label_all
        if self.reference is not None:
            out["reference"] = self.reference
        return out


# --------------------------------------------------------------------------------------------------
# Ground truth
# --------------------------------------------------------------------------------------------------


def read_oracle(path: Path) -> dict[str, str]:
    """`path,label` or `id,label` rows (other columns ignored), as in ../shared/datasets/*/labels.csv."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = reader.fieldnames or []
            key = "path" if "path" in columns else "id" if "id" in columns else None
            if key is None or "label" not in columns:
                raise SimulationError(f"{path}: the oracle needs a `path,label` or `id,label` header (got {columns})")
            truth = {}
            for row in reader:
                if row.get(key):
                    truth[row[key].strip()] = (row.get("label") or "").strip()
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SimulationError(f"cannot read the oracle {path}: {exc}") from None
    if not truth:
        raise SimulationError(f"{path}: the oracle has no rows")
    return truth


def match_oracle(project: Project, truth: dict[str, str]) -> dict[int, str]:
    """Item id -> true label. Oracle paths are relative to the dataset folder; item keys may be relative
    to a folder inside it (a config naming `images/`), so a key also matches an oracle path's tail."""
    by_tail: dict[str, str | None] = {}
    for path, label in truth.items():
        parts = path.replace("\\", "/").split("/")
        for i in range(len(parts)):
            tail = "/".join(parts[i:])
            by_tail[tail] = label if tail not in by_tail or by_tail[tail] == label else None
    out: dict[int, str] = {}
    missing: list[str] = []
    for item_id, key in project.items.exclude(status=ItemStatus.REJECTED).values_list("id", "key"):
        found = truth.get(key)
        if found is None:
            found = by_tail.get(key)
        if found is None:
            missing.append(key)
        else:
            out[item_id] = found
    if missing:
        raise SimulationError(
            f"{len(missing)} item(s) have no ground-truth label, e.g. {', '.join(sorted(missing)[:3])}"
        )
    unknown = sorted(set(out.values()) - set(project.classes))
    if unknown:
        raise SimulationError(f"the oracle uses labels that are not classes of the project: {', '.join(unknown[:5])}")
    return out


# --------------------------------------------------------------------------------------------------
# Embedding cache between runs
# --------------------------------------------------------------------------------------------------


def _cache_file(cache: Path, project: Project) -> Path:
    spec, _ = store_for(project)
    return cache / f"{spec.name}@{spec.version}.npz"


def prefill_embeddings(project: Project, cache: Path | None) -> int:
    """Copy vectors of items seen in earlier runs (same content, same encoder) into the project's store."""
    if cache is None:
        return 0
    file = _cache_file(cache, project)
    if not file.exists():
        return 0
    with np.load(file, allow_pickle=False) as data:
        index = {h: i for i, h in enumerate(data["hashes"].tolist())}
        vectors = data["vectors"]
        rows = [(item_id, index[h]) for item_id, h in project.items.values_list("id", "content_hash") if h in index]
        if not rows:
            return 0
        _, store = store_for(project)
        store.append(np.array([r[0] for r in rows]), vectors[[r[1] for r in rows]])
    return len(rows)


def save_embeddings(project: Project, cache: Path | None) -> None:
    if cache is None:
        return
    _, store = store_for(project)
    embeddings = store.load()
    hashes = dict(project.items.values_list("id", "content_hash"))
    file = _cache_file(cache, project)
    cache.mkdir(parents=True, exist_ok=True)
    # Runs in parallel (bench_simulate --jobs) share the file: read-merge-write under a lock, or one
    # run's vectors would overwrite another's.
    with open(file.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        known: dict[str, np.ndarray] = {}
        if file.exists():
            with np.load(file, allow_pickle=False) as data:
                known = dict(zip(data["hashes"].tolist(), data["vectors"], strict=True))
        for item_id, vector in zip(embeddings.ids.tolist(), np.asarray(embeddings.vectors), strict=True):
            if hashes.get(item_id):
                known[hashes[item_id]] = vector
        keys = sorted(known)
        atomic_write(file, lambda fh: np.savez(fh, hashes=np.array(keys), vectors=np.stack([known[k] for k in keys])))


# --------------------------------------------------------------------------------------------------
# The simulation
# --------------------------------------------------------------------------------------------------


class Simulation:
    def __init__(self, options: Options, *, work: Path) -> None:
        self.o = options
        self.work = work
        self.rng = random.Random(options.seed)
        # The reviewer's slips draw from their own stream, so a miss rate changes nothing else's draws.
        self.slips = random.Random(options.seed + 1_000_003)
        self.noise = random.Random(options.seed + 2_000_003)  # and the annotator's planted errors theirs
        self.planted: set[int] = set()
        self.first_batch_at: int | None = None

    def run(self) -> Result:
        from modeling.tasks import embed_until_done

        o = self.o
        if o.strategy not in ("active", "random"):
            raise SimulationError(f"unknown strategy {o.strategy!r} (active or random)")
        if not 0 <= o.holdout < 1:
            raise SimulationError("--holdout must be at least 0 and below 1")
        if not 0 <= o.reviewer_miss_rate <= 1:
            raise SimulationError("--reviewer-miss-rate must be between 0 and 1")
        if not 0 <= o.label_noise < 1:
            raise SimulationError("--label-noise must be at least 0 and below 1")
        settings.LIGHTBULB_MODEL_IN_THE_LOOP = False  # import and prepare without triggering tasks
        # Never write into the user's folders: models go to the throwaway area, no judgements CSV.
        config = dataclasses.replace(load_config(o.config), model_directory=self.work / "models", judgements_file=None)
        project = do_import_config(config).project
        if not project.modelled:
            raise SimulationError(f"{project.get_label_type_display()} projects have no model to simulate")
        if o.strategy == "random":
            Project.objects.filter(pk=project.pk).update(random_share=1.0)  # the queue's own setting
            project.refresh_from_db()
        truth = match_oracle(project, read_oracle(o.oracle))
        user = get_user_model().objects.create_user("simulated-annotator")
        do_add_member(project, user=user, role=Role.ANNOTATOR)

        # Embed everything once (holdout included: its vectors are what accuracy is measured on).
        prefill_embeddings(project, o.cache)
        embed_until_done(project.pk)
        save_embeddings(project, o.cache)

        ids = sorted(truth)
        holdout = sorted(random.Random(o.seed).sample(ids, round(o.holdout * len(ids))))
        Item.objects.filter(pk__in=holdout).update(status=ItemStatus.REJECTED, rejection_reason=HOLDOUT_REASON)
        embeddings = store_for(project)[1].load()
        rows = {int(i): n for n, i in enumerate(embeddings.ids.tolist())}
        self.holdout_x = np.asarray(embeddings.vectors[[rows[i] for i in holdout]], dtype=np.float32)
        self.holdout_y = [truth[i] for i in holdout]
        self.project, self.user, self.truth = project, user, truth
        result = Result(strategy=o.strategy, seed=o.seed, items=len(ids), holdout=len(holdout))
        if o.reference:
            held = set(holdout)
            pool_ids = [i for i in ids if i not in held]
            pool_x = np.asarray(embeddings.vectors[[rows[i] for i in pool_ids]], dtype=np.float32)
            result.reference = {"labels": len(pool_ids),
                                "accuracy": self._reference_accuracy(pool_x, [truth[i] for i in pool_ids])}

        settings.LIGHTBULB_MODEL_IN_THE_LOOP = True  # from here on, every judgement trains as in production
        pool = len(ids) - len(holdout)
        labels = 0
        while labels < min(o.budget, pool):
            if not self._label_one():
                break
            labels += 1
            self._note_first_batch(labels)
            if labels % o.step == 0:
                result.curve.append({"labels": labels, "accuracy": self.holdout_accuracy()})
            self._progress("curve", labels, min(o.budget, pool))
        if labels % o.step:
            result.curve.append({"labels": labels, "accuracy": self.holdout_accuracy()})
        if o.label_noise > 0:
            result.label_check = self.label_check()
        if o.label_all:
            result.label_all = self._label_all(labels)
        return result

    # -- the annotator --------------------------------------------------------------------------

    def _label_one(self) -> LeasedItem | None:
        """The next item from the queue, labelled truthfully; None when the queue hands out nothing."""
        leased = next_items(self.project, user=self.user, count=1, rng=self.rng)
        if not leased:
            return None
        item = leased[0].item
        label = self.truth[item.pk]
        if self.o.label_noise and self.noise.random() < self.o.label_noise:
            label = self.noise.choice([c for c in self.project.classes if c != label])
            self.planted.add(item.pk)
        do_record_judgement(self.project, item=item, user=self.user, label=label, time_taken=SECONDS_PER_LABEL)
        return leased[0]

    def label_check(self) -> dict:
        """The product's label check on the labels given so far: precision and recall of its top N label-error
        candidates (and of the top N losses) for the planted errors, N = 2 x planted."""
        from modeling.models import LabelCheck
        from modeling.tasks import check_labels

        started = time.monotonic()
        check_labels(self.project.pk)
        seconds = time.monotonic() - started
        check = LabelCheck.objects.get(project=self.project)
        n = 2 * len(self.planted)

        def scored(findings: list[dict]) -> dict:
            top = [int(f["item"]) for f in findings[:n]]
            found = len(set(top) & self.planted)
            return {"taken": len(top), "found": found, "precision": round(found / len(top), 4) if top else None,
                    "recall": round(found / len(self.planted), 4) if self.planted else None}

        return {"labels": check.labels, "planted": len(self.planted), "n": n, "flagged": len(check.candidates),
                "candidates": scored(check.candidates), "top_losses": scored(check.top_losses),
                "seconds": round(seconds, 2)}

    def _note_first_batch(self, labels: int) -> None:
        """Remember how many human labels there were when a review batch first existed."""
        if self.first_batch_at is None and any(available_by_class(self.project).values()):
            self.first_batch_at = labels

    def _label_all(self, already: int) -> dict:
        counts = LabelAll(single_labels=already)
        project = self.project
        pool = Item.objects.filter(project=project).exclude(status=ItemStatus.REJECTED)
        total = pool.count()
        offered: int | None = None  # the model version the owner last considered auto-labelling with
        while True:
            judged = pool.filter(~Q(status=ItemStatus.UNLABELLED)).count()
            self._progress("label-all", judged, total)
            if judged >= total:
                break
            if self.o.auto_label:
                before = counts.auto_labels
                offered = self._auto_label(counts, offered, judged)
                if counts.auto_labels > before:
                    continue  # it labelled something: count again before anyone works
            ready = available_by_class(project)
            if any(ready.values()):
                label = max(sorted(ready), key=lambda name: ready[name])
                leased = lease_batch(project, user=self.user, label=label, rng=self.rng)
                if leased is not None and leased.proposals:
                    ids = [p.item_id for p in leased.proposals]
                    wrong = [i for i in ids if self.truth[i] != label]
                    # A wrong tile is corrected in the grid (2.0 s beats an untick and a later single label,
                    # 1.0 + 2.5 s) unless the reviewer misses it and it stays ticked.
                    missed = [i for i in wrong if self.slips.random() < self.o.reviewer_miss_rate]
                    corrected = {i: self.truth[i] for i in wrong if i not in missed}
                    accepted = [i for i in ids if i not in corrected]
                    do_confirm_batch(
                        project, user=self.user, label=label, accepted=accepted, rejected=[], corrected=corrected,
                        time_taken=len(ids) * SECONDS_PER_BATCH_ITEM + len(corrected) * SECONDS_PER_CORRECTION,
                        rng=self.rng,
                    )
                    counts.batches += 1
                    counts.batch_items_seen += len(ids)
                    counts.corrections += len(corrected)
                    counts.missed += len(missed)
                    continue
            single = self._label_one()
            if single is None:
                break  # nothing left that the queue hands out (should not happen: reported below)
            counts.single_labels += 1
            # An audit labels a confirmed item again, blind: a person's time, but no item newly labelled.
            counts.audit_labels += single.picked_by == AUDIT
            self._note_first_batch(counts.single_labels)
        current = dict(
            Judgement.objects.filter(project=project, is_current=True).values_list("item_id", "label")
        )
        autos = set(
            Judgement.objects.filter(project=project, is_current=True, source=JudgementSource.AUTO)
            .values_list("item_id", flat=True)
        )
        pool_ids = list(pool.values_list("id", flat=True))
        correct = sum(current.get(i) == self.truth[i] for i in pool_ids)
        auto_right = sum(current[i] == self.truth[i] for i in autos)
        seen = counts.batch_items_seen
        wrong_seen = counts.batch_rejections + counts.corrections + counts.missed
        return {
            "single_labels": counts.single_labels,
            "batch_items_seen": seen,
            "batch_rejections": counts.batch_rejections,
            "corrections": counts.corrections,
            "missed": counts.missed,
            "audit_labels": counts.audit_labels,
            "reviewer_miss_rate": self.o.reviewer_miss_rate,
            "first_batch_at": self.first_batch_at,
            "batches": counts.batches,
            "unlabelled_left": sum(i not in current for i in pool_ids),
            "final_label_accuracy": round(correct / len(pool_ids), 6) if pool_ids else None,
            "auto_label": self.o.auto_label,
            "auto_labels": len(autos),
            "auto_label_accuracy": round(auto_right / len(autos), 6) if autos else None,
            "auto_label_runs": counts.auto_label_runs,
            "proposal_precision": round((seen - wrong_seen) / seen, 6) if seen else None,
            "seconds": round(counts.modeled_seconds(), 1),
            "seconds_per_item": round(counts.modeled_seconds() / len(pool_ids), 4) if pool_ids else None,
        }

    def _auto_label(self, counts: LabelAll, offered: int | None, judged: int) -> int | None:
        """The owner's "label the rest automatically", taken once per model version that can (the plan is
        read only when the version changed: it scans the pool's predictions)."""
        from labeling.errors import AutoLabelError
        from modeling.autolabels import auto_label_plan, do_auto_label

        version = ModelState.objects.filter(project=self.project).values_list("proposed_version", flat=True).first()
        if version is None or version == offered:
            return offered
        if not auto_label_plan(self.project)["ready"]:
            return version
        try:
            run = do_auto_label(self.project, user=self.user)
        except AutoLabelError:
            return version
        counts.auto_label_runs.append(
            {"version": run.version, "labelled": run.labelled, "labels_by_people_before": judged - counts.auto_labels,
             "target": run.target}
        )
        counts.auto_labels += run.labelled
        return version

    # -- measuring --------------------------------------------------------------------------------

    def holdout_accuracy(self) -> float | None:
        """The current version's accuracy on the held-out items (None before the first version)."""
        if not self.holdout_y:
            return None
        try:
            version = current_version(self.project)
        except NoModelYet:
            return None
        head = Head.load(self.project.model_path / version.file)
        predicted = np.asarray(head.classes)[head.predict_proba(self.holdout_x).argmax(axis=1)]
        return round(float(np.mean(predicted == np.asarray(self.holdout_y))), 6)

    def _reference_accuracy(self, x: np.ndarray, labels: list[str]) -> float | None:
        """Holdout accuracy of the product's own head fitted on every pool item's true label."""
        from modeling.ml.training import train_head

        if not self.holdout_y or len(set(labels)) < 2:
            return None
        spec, _ = store_for(self.project)
        classes = list(self.project.classes)
        index = {c: k for k, c in enumerate(classes)}
        trained = train_head(
            classes=classes, x_train=x, y_train=np.array([index[c] for c in labels]),
            x_test=self.holdout_x, y_test=np.array([index[c] for c in self.holdout_y]), pool=x,
            encoder=spec.name, encoder_version=spec.version,
        )
        predicted = np.asarray(classes)[trained.head.predict_proba(self.holdout_x).argmax(axis=1)]
        return round(float(np.mean(predicted == np.asarray(self.holdout_y))), 6)

    def _progress(self, phase: str, done: int, total: int) -> None:
        if self.o.progress is not None:
            self.o.progress(phase, done, total)


def text_progress(stream=sys.stderr) -> Callable[[str, int, int], None]:
    """A one-line progress bar redrawn in place on a terminal; a line per tenth in a log file."""
    started = time.monotonic()
    interactive = stream.isatty()
    shown: dict[str, int] = {}

    def draw(phase: str, done: int, total: int) -> None:
        elapsed = time.monotonic() - started
        if not interactive:
            tenth = 10 * done // total if total else 10
            if shown.get(phase, -1) < tenth:
                shown[phase] = tenth
                stream.write(f"{phase}: {done}/{total} after {elapsed:.0f} s\n")
                stream.flush()
            return
        width = 30
        filled = int(width * done / total) if total else width
        stream.write(f"\r{phase:>9} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {elapsed:6.0f} s")
        if done >= total:
            stream.write("\n")
        stream.flush()

    return draw


def write_result(result: Result, out: Path) -> None:
    atomic_write(out, lambda fh: fh.write(json.dumps(result.as_json(), indent=1)), text=True)


# --------------------------------------------------------------------------------------------------
# Running it: a child process with a throwaway database and data folder
# --------------------------------------------------------------------------------------------------


def run_in_throwaway_database(options: dict, *, stdout: OutputWrapper | TextIO, stderr: OutputWrapper | TextIO) -> None:
    """Run the simulation in a child process whose database and data folder are temporary."""
    with tempfile.TemporaryDirectory(prefix="lightbulb-simulate-") as tmp:
        env = {
            **os.environ,
            "LIGHTBULB_SIMULATE_INNER": "1",
            "DATABASE_URL": f"sqlite:///{tmp}/simulate.sqlite3",
            "LIGHTBULB_DATA_ROOT": tmp,
            "LIGHTBULB_MODEL_ROOT": f"{tmp}/models",
            "LIGHTBULB_Q_SYNC": "1",  # the real tasks, run inline
            "LIGHTBULB_MODEL_IN_THE_LOOP": "0",  # the simulation switches it on once it is set up
            "LIGHTBULB_TRAIN_DEBOUNCE_SECONDS": "0",
            "LIGHTBULB_EMBED_TASK_SECONDS": "0",
            # Tasks run inline here: a fine-tune would stop the simulated annotator for minutes. The deep tier
            # is measured on its own (bench_finetune).
            "LIGHTBULB_FINETUNE_AUTO": "0",
            "LOG_LEVEL": "WARNING",  # a line per task would drown the progress bar
        }
        if not env.get("SECRET_KEY"):
            env["LIGHTBULB_INSECURE_DEV_KEY"] = "1"  # a private child process that serves nothing
        manage = str(Path(settings.BASE_DIR) / "manage.py")
        migrate = subprocess.run([sys.executable, manage, "migrate", "--noinput", "-v", "0"], env=env,
                                 capture_output=True, text=True)
        if migrate.returncode != 0:
            raise SimulationError(f"cannot create the throwaway database:\n{migrate.stderr[-2000:]}")
        argv = [
            sys.executable, manage, "simulate",
            "--config", str(Path(options["config"]).resolve()),
            "--oracle", str(Path(options["oracle"]).resolve()),
            "--out", str(Path(options["out"]).resolve()),
            "--strategy", options["strategy"], "--budget", str(options["budget"]), "--step", str(options["step"]),
            "--holdout", str(options["holdout"]), "--seed", str(options["seed"]),
            "--cache", str(Path(options["cache"]).resolve()),
            "--reviewer-miss-rate", str(options["reviewer_miss_rate"]),
            "--label-noise", str(options.get("label_noise", 0.0)),
        ]
        if options.get("checkpoints"):
            argv += ["--checkpoints", str(options["checkpoints"])]
        if options.get("sampling"):
            argv += ["--sampling", str(options["sampling"])]
        argv += ["--annotators", str(options.get("annotators", 1)),
                 "--annotator-error", str(options.get("annotator_error", 0.1)),
                 "--overlap-share", str(options.get("overlap_share", 0.25)),
                 "--overlap-k", str(options.get("overlap_k", 2)),
                 "--reviewer-error", str(options.get("reviewer_error", 0.0))]
        if options["label_all"]:
            argv.append("--label-all")
        if options.get("auto_label"):
            argv.append("--auto-label")
        if options["reference"]:
            argv.append("--reference")
        if options["no_progress"]:
            argv.append("--no-progress")
        done = subprocess.run(argv, env=env, stdout=sys.stdout, stderr=sys.stderr)
        if done.returncode != 0:
            raise SimulationError(f"the simulation failed (exit {done.returncode})")


def run_or_exit(run: Callable[[], R], *, stderr: OutputWrapper | TextIO) -> R:
    """`run()`, or exit 2 with the reason for bad input (the parent command reports the exit)."""
    try:
        return run()
    except (SimulationError, ConfigError, ProjectError) as exc:
        stderr.write(f"simulate: {exc}")
        raise SystemExit(2) from None


def simulate_here(options: dict, *, stdout: OutputWrapper | TextIO, stderr: OutputWrapper | TextIO) -> None:
    """Run the simulation in this process (the child that `run_in_throwaway_database` starts)."""
    from interchange.config import load_config

    label_type = load_config(Path(options["config"])).label_type
    if label_type == "sequence":
        from .sequence import simulate_sequence_here

        simulate_sequence_here(options, stdout=stdout, stderr=stderr)
        return
    if label_type == "object_detection":
        from .detection import DetectionOracleError, simulate_detection_here

        def detection() -> None:
            try:
                simulate_detection_here(options, stdout=stdout, stderr=stderr)
            except DetectionOracleError as exc:
                raise SimulationError(str(exc)) from None

        run_or_exit(detection, stderr=stderr)
        return
    opts = Options(
        config=Path(options["config"]), oracle=Path(options["oracle"]), strategy=options["strategy"],
        budget=options["budget"], step=options["step"], holdout=options["holdout"], seed=options["seed"],
        label_all=options["label_all"] or bool(options.get("auto_label")), reference=options["reference"],
        auto_label=bool(options.get("auto_label")), label_noise=float(options.get("label_noise") or 0.0),
        cache=Path(options["cache"]) if options["cache"] else None, reviewer_miss_rate=options["reviewer_miss_rate"],
        progress=None if options["no_progress"] else text_progress(),
    )
    started = time.monotonic()
    result = run_or_exit(Simulation(opts, work=Path(settings.DATA_ROOT)).run, stderr=stderr)
    write_result(result, Path(options["out"]))
    last = result.curve[-1] if result.curve else {}
    summary = (f"{result.strategy}, seed {result.seed}: {last.get('labels', 0)} labels -> "
               f"holdout accuracy {last.get('accuracy')}")
    if result.reference:
        summary += f" (all {result.reference['labels']} labels: {result.reference['accuracy']})"
    if result.label_check:
        lc = result.label_check
        summary += (f"; label check: {lc['planted']} planted errors, top {lc['n']} candidates found "
                    f"{lc['candidates']['found']} (precision {lc['candidates']['precision']}, "
                    f"recall {lc['candidates']['recall']})")
    if result.label_all:
        la = result.label_all
        summary += (f"; label-all: {la['single_labels']} single labels, {la['batch_items_seen']} batch items "
                    f"({la['corrections']} corrected, {la['missed']} missed), {la['seconds_per_item']} s/item modeled, "
                    f"final label accuracy {la['final_label_accuracy']}")
        if la["auto_label"]:
            summary += f"; {la['auto_labels']} auto-labelled (accuracy {la['auto_label_accuracy']})"
    stdout.write(f"{summary} ({time.monotonic() - started:.0f} s)")

