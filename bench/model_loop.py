"""Benchmark the model loop on real labelled data: embedding throughput (pipeline vs the raw encoder in
the same run) and the seconds from a judgement to a new model version plus a re-ranked queue.

Drives the product's own code: config import, the queue, judgements through the services, and the
django-q2 task functions called directly (as the worker would). Run it against a throwaway database
(`make bench` does); it creates projects and judgements.
"""

from __future__ import annotations

import csv
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from django.conf import settings

from .benchdoc import Bench, BenchError, publish, torch_machine

SCENARIOS = ("images-2k", "text-2k", "text-10k", "store-100k")


class ModelLoopBench(Bench):
    def run(self, options: dict) -> None:
        datasets = self.datasets_folder(options)
        settings.LIGHTBULB_EMBED_TASK_SECONDS = 0  # one task run embeds everything: we time it whole
        settings.LIGHTBULB_TRAIN_DEBOUNCE_SECONDS = 0  # the debounce is a wait, reported separately
        results = []
        with tempfile.TemporaryDirectory(prefix="lightbulb-bench-") as tmp:
            for name in options["scenario"] or SCENARIOS:
                self.stdout.write(f"== {name}")
                if name == "store-100k":
                    results.append(self._store_load(Path(tmp) / name))
                else:
                    results.append(self._scenario(name, datasets, Path(tmp) / name, options["repeats"],
                                                  beside=options.get("finetune_beside", False)))
                self.stdout.write(json.dumps(results[-1], indent=1))
        report: dict[str, Any] = {
            "machine": torch_machine(),
            "results": results,
        }
        publish(report, self._markdown(report), stdout=self.stdout, out=options["out"], doc=options["doc"],
                block="model", command="manage.py bench_model", title="Model in the loop: latest `make bench`")

    # ----------------------------------------------------------------------------------------------

    def _scenario(self, name: str, datasets: Path, root: Path, repeats: int, *, beside: bool = False) -> dict:
        from interchange.config import load_config
        from interchange.importer import do_import_config
        from labeling.services import do_record_judgement, next_items
        from modeling.ml.embeddings import raw_input
        from modeling.ml.encoders import load_encoder
        from modeling.models import ModelState, ModelVersion
        from modeling.tasks import embed_until_done, train_project

        root.mkdir(parents=True)
        config, truth = self._dataset(name, datasets, root)
        settings.LIGHTBULB_MODEL_IN_THE_LOOP = False  # import and label without triggering tasks
        project = do_import_config(load_config(config)).project
        items = project.items.count()

        # Raw encoder on the same items, in the same process (warm: loaded and run once first).
        t0 = time.perf_counter()
        encoder = load_encoder(project.encoder_name)
        load_seconds = time.perf_counter() - t0
        # The same items the embedding task starts with (id order), already read into memory: the
        # encoder's own speed, with no database, file reading or cache writing around it.
        sample = list(project.items.order_by("id")[:1024])
        inputs = [raw_input(project, item) for item in sample]
        encoder.embed(inputs[:64])  # warm-up: oneDNN picks its kernels on the first batches
        t0 = time.perf_counter()
        encoder.embed(inputs)
        raw_rate = len(inputs) / (time.perf_counter() - t0)

        t0 = time.perf_counter()
        embed_until_done(project.pk)
        pipeline_seconds = time.perf_counter() - t0

        # Labels from the ground truth through the real queue: 10 TEST, then TRAIN up to 50.
        rng = random.Random(0)
        user = project.memberships.get().user

        def label_one():
            leased = next_items(project, user=user, rng=rng)[0]
            do_record_judgement(project, item=leased.item, user=user, label=truth[leased.item.key])

        for _ in range(50):
            label_one()
        settings.LIGHTBULB_MODEL_IN_THE_LOOP = True
        t0 = time.perf_counter()
        train_project(project.pk)
        first_seconds = time.perf_counter() - t0

        def measure(times: int) -> tuple[list[float], list[float]]:
            latencies, fits = [], []
            for _ in range(times):
                settings.LIGHTBULB_MODEL_IN_THE_LOOP = False
                label_one()
                settings.LIGHTBULB_MODEL_IN_THE_LOOP = True
                t0 = time.perf_counter()
                train_project(project.pk)
                latencies.append(time.perf_counter() - t0)
                state = ModelState.objects.select_related("current_version").get(project=project)
                if state.current_version is None:
                    raise BenchError(f"{name}: training made no model version")
                assert state.ranked_version == state.current_version.number, "queue not re-ranked"
                fits.append(state.current_version.training_seconds)
            return latencies, fits

        latencies, fits = measure(repeats)
        beside_latencies: list[float] = []
        if beside:
            beside_latencies = self._beside_a_finetune(datasets, lambda: measure(repeats)[0])
        version = ModelVersion.objects.filter(project=project).order_by("-number").first()
        if version is None:
            raise BenchError(f"{name}: training made no model version")
        return {
            "scenario": name,
            "encoder": project.encoder_name,
            "items": items,
            "encoder_load_seconds": round(load_seconds, 2),
            "raw_encoder_items_per_second": round(raw_rate, 1),
            "pipeline_items_per_second": round(items / pipeline_seconds, 1),
            "pipeline_seconds": round(pipeline_seconds, 1),
            "first_version_seconds": round(first_seconds, 2),
            "judgement_to_ranked_version_seconds": {
                "median": round(statistics.median(latencies), 2), "max": round(max(latencies), 2),
            },
            "fit_seconds_median": round(statistics.median(fits), 2),
            **({"beside_a_finetune_seconds": {"median": round(statistics.median(beside_latencies), 2),
                                              "max": round(max(beside_latencies), 2)}} if beside_latencies else {}),
            "labels": version.labels_count,
            "accuracy": version.accuracy,
        }

    def _beside_a_finetune(self, datasets: Path, measure) -> list[float]:
        """`measure()` while a real fine-tune (fashion_mnist_2k, 500 labels, the deep tier's code) runs in another
        process as the deep worker runs it: its priority (nice 19, SCHED_IDLE), the same torch threads. It starts
        measuring once that process is training, and stops it after."""
        import os
        import subprocess
        import sys

        manage = str(Path(settings.BASE_DIR) / "manage.py")
        with tempfile.TemporaryDirectory(prefix="lightbulb-beside-") as out:
            process = subprocess.Popen(
                [sys.executable, manage, "bench_finetune", "--dataset", "fashion_mnist_2k", "--background",
                 "--labels", "500", "--datasets", str(datasets), "--out", out],
                env={**os.environ, "LIGHTBULB_FINETUNE_EPOCHS": "40", "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True,
            )
            try:
                assert process.stdout is not None
                for line in process.stdout:  # "... head 0.8475": the head is fitted, the fine-tune starts now
                    if " head " in line:
                        break
                else:
                    raise BenchError(f"the fine-tune beside did not start (exit {process.wait()})")
                time.sleep(20)  # past the first frozen batches, into the backward passes
                if process.poll() is not None:
                    raise BenchError("the fine-tune beside ended before the measurement")
                self.stdout.write("  measuring beside a running fine-tune")
                latencies = measure()
                if process.poll() is not None:
                    raise BenchError("the fine-tune beside ended during the measurement")
                return latencies
            finally:
                process.kill()
                process.wait()

    @staticmethod
    def _store_load(root: Path) -> dict:
        """How long the cache of 100,000 MobileNetV2 vectors takes to load (written as the worker does)."""
        import numpy as np

        from modeling.ml.embeddings import EmbeddingStore

        store = EmbeddingStore(root, 1280)
        rng = np.random.default_rng(0)
        for start in range(0, 100_000, 10_000):
            store.append(np.arange(start, start + 10_000), rng.random((10_000, 1280), dtype=np.float32))
        store.consolidate()
        timings = []
        for _ in range(3):
            t0 = time.perf_counter()
            loaded = store.load()
            np.asarray(loaded.vectors[-1000:], dtype=np.float32).sum()  # touch it: a map alone is not a load
            timings.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        full = np.asarray(store.load().vectors, dtype=np.float32)  # every vector in memory, as float32
        full_seconds = time.perf_counter() - t0
        del full
        assert loaded.vectors.shape == (100_000, 1280)
        return {"scenario": "store-100k", "items": 100_000, "dim": 1280,
                "file_mb": round(store.size_bytes() / 1e6, 1),
                "load_seconds_median": round(statistics.median(timings), 3),
                "load_all_float32_seconds": round(full_seconds, 3)}

    def _dataset(self, name: str, datasets: Path, root: Path) -> tuple[Path, dict[str, str]]:
        def read_labels(path: Path, key: str) -> dict[str, str]:
            with open(path, newline="", encoding="utf-8") as fh:
                return {row[key]: row["label"] for row in csv.DictReader(fh)}

        if name == "images-2k":
            source = datasets / "fashion_mnist_2k"
            truth = {k.removeprefix("images/"): v for k, v in read_labels(source / "labels.csv", "path").items()}
            classes = sorted(set(truth.values()))
            body = (f"task: {{title: bench {name}}}\ndataset: {{directory: {source / 'images'}, data_type: images}}\n"
                    f"label: {{type: classification, classes: {json.dumps(classes)}}}\n"
                    f"model: {{directory: {root / 'model'}}}\nuser: bench\n")
        else:
            tweets = datasets / "election_tweets"
            labels = read_labels(tweets / "labels.csv", "id")
            with open(tweets / "tweets.csv", newline="", encoding="utf-8") as fh:
                rows = [(r["id"], r["text"], labels[r["id"]]) for r in csv.DictReader(fh)]
            if name == "text-2k":
                rows = rows[:2000]
            else:
                # 10,000 items: every tweet plus Reuters news stories as a third class.
                with open(datasets / "reuters_r8" / "docs.jsonl", encoding="utf-8") as fh:
                    news = [json.loads(line) for line in fh if line.strip()]
                rows += [(d["id"], d["text"], "news") for d in news[: 10_000 - len(rows)]]
            with open(root / "items.csv", "w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh)
                writer.writerow(["id", "text"])
                writer.writerows((i, t) for i, t, _ in rows)
            truth = {i: label for i, _, label in rows}
            classes = sorted(set(truth.values()))
            body = (f"task: {{title: bench {name}}}\ndataset: {{directory: {root / 'items.csv'}, data_type: text}}\n"
                    f"label: {{type: classification, classes: {json.dumps(classes)}}}\n"
                    f"model: {{directory: {root / 'model'}}}\nuser: bench\n")
        config = root / f"bench-{name}.yml"  # the file name is the project slug
        config.write_text(body, encoding="utf-8")
        return config, truth

    @staticmethod
    def _markdown(report: dict) -> str:
        lines = [
            "",
            "| scenario | encoder | items | raw encoder (items/s) | embedding task (items/s) | "
            "judgement → new version + re-ranked queue (median / max) | of which fit | first version |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in report["results"]:
            if r["scenario"] == "store-100k":
                continue
            j = r["judgement_to_ranked_version_seconds"]
            lines.append(
                f"| {r['scenario']} | {r['encoder']} | {r['items']:,} | {r['raw_encoder_items_per_second']} | "
                f"{r['pipeline_items_per_second']} | {j['median']} s / {j['max']} s | {r['fit_seconds_median']} s | "
                f"{r['first_version_seconds']} s |"
            )
        beside = [r for r in report["results"] if r.get("beside_a_finetune_seconds")]
        if beside:
            lines += ["", "Judgement → new version + re-ranked queue while a fine-tune runs beside it (the deep "
                      "worker's way: another process at nice 19 and SCHED_IDLE fine-tuning MobileNetV2 + "
                      "EfficientNet-Lite0 on 375 images):", "",
                      "| scenario | alone (median / max) | beside a fine-tune (median / max) |", "|---|---|---|"]
            for r in beside:
                j, b = r["judgement_to_ranked_version_seconds"], r["beside_a_finetune_seconds"]
                lines.append(f"| {r['scenario']} | {j['median']} s / {j['max']} s | {b['median']} s / {b['max']} s |")
        for r in report["results"]:
            if r["scenario"] == "store-100k":
                lines.append(f"\nEmbedding cache: {r['items']:,} x {r['dim']} vectors ({r['file_mb']} MB) open in "
                             f"{r['load_seconds_median']} s (memory-mapped float16); reading every vector into "
                             f"memory as float32 takes {r['load_all_float32_seconds']} s.")
        return "\n".join(lines) + "\n"
