"""Fine-tuning against the head: does the deep tier (modeling/ml/finetune.py) beat the fast head here?

    python manage.py bench_finetune [--dataset NAME ...] [--labels 200,500,all] [--seeds 1]

Without the database, on each dataset of ../shared/datasets: a seeded 20% holdout (as simulate's), then `n`
random labelled items of the rest split as the product splits them (a quarter TEST, the rest TRAIN). The head
is the product's (`training.train_head`: standardiser, cross-validated L2, label spreading over the pool,
calibration) on the project's default encoder, pretrained; the fine-tuned model is the same head on the same
encoder after the product's fine-tune on TRAIN (images: `LIGHTBULB_FINETUNE_EPOCHS` epochs after one frozen;
text: SetFit pairs). Both are scored on the holdout; the comparison the product would make on TEST (exact
McNemar, one-sided) is reported too, with the fine-tune's and the re-embedding's time on this machine.
Raw results: OUT/finetune.json; the `bench:finetune` block of the document.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from django.conf import settings

from .benchdoc import Bench, BenchError, provenance, torch_machine, write_block
from .feature_study import _inputs, _items, encoder_features
from .label_efficiency import DATASETS

IMAGES = {"fashion_mnist_2k", "emoji"}


def _encoder(name: str) -> str:
    from projects.encoders import default_encoder

    return default_encoder("images" if name in IMAGES else "text")


def one(root: Path, name: str, n_labels: int | None, seed: int, *, work: Path, log=print) -> dict:
    from modeling.ml import finetune as ft
    from modeling.ml.encoders import load_encoder
    from modeling.ml.provisioning import minilm_model_dir
    from modeling.ml.training import train_head

    rows = _items(root, name)
    classes = sorted({label for _, label in rows})
    y = np.array([classes.index(label) for _, label in rows])
    inputs = _inputs(root, name)
    order = np.random.default_rng(seed).permutation(len(y))
    hold, pool = order[: round(0.2 * len(y))], order[round(0.2 * len(y)) :]
    labelled = pool if n_labels is None else pool[:n_labels]
    test, train = labelled[: len(labelled) // 4], labelled[len(labelled) // 4 :]
    encoder = _encoder(name)

    def scores(x: np.ndarray) -> tuple[float, np.ndarray]:
        fitted = train_head(classes=classes, x_train=x[train], y_train=y[train], x_test=x[test], y_test=y[test],
                            pool=x[pool], encoder=encoder, encoder_version="bench",
                            unlabelled=np.asarray(x[np.setdiff1d(pool, train)]))
        holdout = float((fitted.head.predict_proba(x[hold]).argmax(1) == y[hold]).mean())
        return holdout, fitted.head.predict_proba(x[test]).argmax(1) == y[test]

    x = encoder_features(root, name, encoder).astype(np.float32)
    head_holdout, head_test = scores(x)
    log(f"{name} {len(labelled)} labels seed {seed}: head {head_holdout:.4f}")
    started = time.perf_counter()
    if name in IMAGES:
        result: ft.ImageResult | ft.TextResult = ft.finetune_images(
            encoder, [inputs[i] for i in train], y[train], len(classes), epochs=settings.LIGHTBULB_FINETUNE_EPOCHS,
            seed=seed)
    else:
        model_dir = minilm_model_dir()
        if model_dir is None:
            raise BenchError("all-MiniLM-L6-v2 is not installed (make install)")
        result = ft.finetune_text([inputs[i] for i in train], y[train], model_dir=model_dir, seed=seed)
    train_seconds = time.perf_counter() - started
    folder = ft.save_encoder(result, work / f"{name}-{len(labelled)}-{seed}")
    started = time.perf_counter()
    x2 = load_encoder(encoder, finetuned=str(folder)).embed(inputs).astype(np.float32)
    embed_seconds = time.perf_counter() - started
    tuned_holdout, tuned_test = scores(x2)
    comparison = ft.compare(head_test, tuned_test)
    log(f"  fine-tuned {tuned_holdout:.4f} ({train_seconds:.0f} s + {embed_seconds:.0f} s to re-embed "
        f"{len(inputs)}); on TEST: {comparison.only_candidate_right} vs {comparison.only_current_right}, "
        f"p = {comparison.p_value:.3f}")
    return {"dataset": name, "labels": len(labelled), "train": len(train), "test": len(test), "seed": seed,
            "encoder": encoder, "head": round(head_holdout, 4), "finetuned": round(tuned_holdout, 4),
            "gain": round(tuned_holdout - head_holdout, 4), "train_seconds": round(train_seconds, 1),
            "embed_seconds": round(embed_seconds, 1), "items": len(inputs), "comparison": comparison.as_dict(),
            "epochs": settings.LIGHTBULB_FINETUNE_EPOCHS if name in IMAGES else None,
            "pairs": getattr(result, "pairs", None)}


class FineTuneBench(Bench):
    def run(self, options: dict) -> dict:
        import tempfile

        root = self.datasets_folder(options)
        if options.get("background"):
            from modeling.priority import run_in_background

            self.stdout.write(f"priority: {run_in_background()} (as the deep worker)")
        names = options["dataset"] or list(DATASETS)
        counts = [None if c.strip() == "all" else int(c) for c in options["labels"].split(",") if c.strip()]
        out = Path(options["out"])
        file = out / "finetune.json"
        kept = json.loads(file.read_text(encoding="utf-8")) if options["resume"] and file.exists() else {"runs": []}
        runs = kept["runs"]
        done = {(r["dataset"], r["requested"], r["seed"]) for r in runs}
        with tempfile.TemporaryDirectory(prefix="lightbulb-finetune-") as tmp:
            for name in names:
                if not (root / name / "labels.csv").exists():
                    raise BenchError(f"no dataset {name!r} in {root}")
                for n in counts:
                    for seed in range(options["seeds"]):
                        if (name, n or "all", seed) in done:
                            continue
                        run = one(root, name, n, seed, work=Path(tmp), log=lambda s: self.stdout.write(s))
                        run["requested"] = n or "all"
                        runs.append(run)
                        report = {"machine": torch_machine(), "runs": runs}
                        out.mkdir(parents=True, exist_ok=True)
                        file.write_text(json.dumps(report, indent=1), encoding="utf-8")
        report = {"machine": torch_machine(), "runs": runs}
        if options["doc"]:
            write_block(Path(options["doc"]), "finetune", markdown(report),
                        title="Fine-tuning against the head (issue 22)")
        return report


def markdown(report: dict) -> str:
    lines = [provenance("manage.py bench_finetune", report["machine"]), "",
             "| dataset | labels (TRAIN / TEST) | encoder | head | fine-tuned | gain "
             "| TEST: only fine-tuned right / only head right, p | fine-tune (s) | re-embed (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    order = {name: i for i, name in enumerate(DATASETS)}
    for r in sorted(report["runs"], key=lambda r: (order.get(r["dataset"], 99), r["labels"], r["seed"])):
        c = r["comparison"]
        lines.append(
            f"| {r['dataset']} | {r['labels']:,} ({r['train']:,} / {r['test']:,}) | {r['encoder']} | {r['head']:.3f} "
            f"| {r['finetuned']:.3f} | {r['gain'] * 100:+.1f} | {c['only_candidate_right']} / "
            f"{c['only_current_right']}, {c['p_value']:.2f} | {r['train_seconds']:.0f} | {r['embed_seconds']:.0f} |"
        )
    return "\n".join(lines)
