"""Benchmark serving: /score throughput at batch 1 and 32 against the raw encoder, in one run.

Builds two small projects from ../shared/datasets (fashion_mnist_2k images, election tweets), labels
them from the ground truth and trains once through the product's own services and tasks. It then
starts the real inference worker (`manage.py inference_worker`) as a subprocess and serves the real
Django application over HTTP from a threaded WSGI server in this process. Every request goes the
whole way: HTTP, token auth, parsing, image checks, the socket hop, the encoder and the head.

Run it against a throwaway database (`make bench` does).
"""

from __future__ import annotations

import csv
import http.client
import json
import random
import socket
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any, cast
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.conf import settings

from modeling.inference.server import worker_process

from .benchdoc import Bench, BenchError, publish, torch_machine

SAMPLE = 256  # inputs per measurement
CLIENTS = 8  # concurrent clients in the "many users at once" case


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def setup(self) -> None:
        super().setup()
        # As production WSGI servers do (gunicorn sets it): without it, wsgiref's separate writes of
        # headers and body wait on delayed ACKs, which would be measured as /score's latency.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args) -> None:
        pass


class ServingBench(Bench):
    def run(self, options: dict) -> None:
        datasets = self.datasets_folder(options)
        settings.LIGHTBULB_SCORE_RATE = ""  # no throttling: we measure the machine, not the limit
        settings.LIGHTBULB_EMBED_TASK_SECONDS = 0
        results = []
        with tempfile.TemporaryDirectory(prefix="lightbulb-bench-score-") as tmp:
            root = Path(tmp)
            projects = [self._project("images", datasets, root / "images"),
                        self._project("text", datasets, root / "text")]
            with worker_process(Path(settings.BASE_DIR) / "manage.py", root) as address, self._web() as base:
                settings.LIGHTBULB_INFERENCE_ADDRESS = address
                for project, inputs in projects:
                    self.stdout.write(f"== {project.data_type}")
                    results.append(self._measure(project, inputs, base, address))
                    self.stdout.write(json.dumps(results[-1], indent=1))
        report: dict[str, Any] = {
            "machine": torch_machine(),
            "results": results,
        }
        publish(report, self._markdown(report), stdout=self.stdout, out=options["out"], doc=options["doc"],
                block="score", command="manage.py bench_score", title="Serving: latest `make bench`")

    # -- setup ------------------------------------------------------------------------------------

    def _project(self, kind: str, datasets: Path, root: Path):
        """A trained project and SAMPLE raw inputs of the same kind that it has not seen."""
        from interchange.config import load_config
        from interchange.importer import do_import_config
        from labeling.services import do_record_judgement
        from modeling.tasks import embed_until_done, train_project

        root.mkdir(parents=True)
        inputs: list[bytes] | list[str]  # image files or texts, as /score takes them
        if kind == "images":
            source = datasets / "fashion_mnist_2k"
            with open(source / "labels.csv", newline="", encoding="utf-8") as fh:
                rows = [(r["path"], r["label"]) for r in csv.DictReader(fh)]
            (root / "images").mkdir()
            for path, _ in rows[:300]:
                (root / "images" / Path(path).name).write_bytes((source / path).read_bytes())
            truth = {Path(p).name: label for p, label in rows[:300]}
            inputs = [(source / p).read_bytes() for p, _ in rows[300 : 300 + SAMPLE]]
            dataset = f"{{directory: {root / 'images'}, data_type: images}}"
        else:
            source = datasets / "election_tweets"
            with open(source / "labels.csv", newline="", encoding="utf-8") as fh:
                labels = {r["id"]: r["label"] for r in csv.DictReader(fh)}
            with open(source / "tweets.csv", newline="", encoding="utf-8") as fh:
                rows = [(r["id"], r["text"]) for r in csv.DictReader(fh)]
            with open(root / "items.csv", "w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh)
                writer.writerow(["id", "text"])
                writer.writerows(rows[:300])
            truth = {i: labels[i] for i, _ in rows[:300]}
            inputs = [t for _, t in rows[300 : 300 + SAMPLE]]
            dataset = f"{{directory: {root / 'items.csv'}, data_type: text}}"
        classes = sorted(set(truth.values()))
        config = root / f"bench-score-{kind}.yml"
        config.write_text(
            f"task: {{title: bench score {kind}}}\ndataset: {dataset}\n"
            f"label: {{type: classification, classes: {json.dumps(classes)}}}\n"
            f"model: {{directory: {root / 'model'}}}\nuser: bench\n",
            encoding="utf-8",
        )
        settings.LIGHTBULB_MODEL_IN_THE_LOOP = False  # label first, then train once
        project = do_import_config(load_config(config)).project
        user = project.memberships.get().user
        items = list(project.items.order_by("id")[:60])
        for item in items:
            do_record_judgement(project, item=item, user=user, label=truth[item.key.split("/")[-1]])
        settings.LIGHTBULB_MODEL_IN_THE_LOOP = True
        embed_until_done(project.pk)
        train_project(project.pk)
        return project, inputs

    def _web(self):
        from django.core.wsgi import get_wsgi_application

        class Web:
            def __enter__(self) -> tuple[str, int]:
                self.httpd = make_server("127.0.0.1", 0, get_wsgi_application(), server_class=_ThreadingWSGIServer,
                                         handler_class=_QuietHandler)
                threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
                # An AF_INET server's address is (host, port); the stubs allow any socket address there.
                return cast(tuple[str, int], self.httpd.server_address[:2])

            def __exit__(self, *exc) -> None:
                self.httpd.shutdown()
                self.httpd.server_close()

        return Web()

    # -- measuring --------------------------------------------------------------------------------

    def _measure(self, project, inputs: list, base: tuple[str, int], address: str) -> dict:
        from rest_framework.authtoken.models import Token

        from modeling.ml.encoders import load_encoder
        from modeling.serving import inference_client

        token = Token.objects.get_or_create(user=project.memberships.get().user)[0].key
        path = f"/api/projects/{project.pk}/score/"
        images = project.data_type == "images"

        def post(batch: list) -> float:
            """One real HTTP request; its latency in seconds."""
            if images:
                boundary = uuid.uuid4().hex
                parts = [
                    f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="{i}.png"\r\n'
                    f"Content-Type: image/png\r\n\r\n".encode() + raw + b"\r\n"
                    for i, raw in enumerate(batch)
                ]
                body = b"".join(parts) + f"--{boundary}--\r\n".encode()
                content_type = f"multipart/form-data; boundary={boundary}"
            else:
                body = json.dumps({"type": "text", "texts": batch}).encode()
                content_type = "application/json"
            connection = http.client.HTTPConnection(*base, timeout=300)
            t0 = time.perf_counter()
            connection.request("POST", path, body=body, headers={
                "Authorization": f"Token {token}", "Content-Type": content_type, "Host": "127.0.0.1"})
            response = connection.getresponse()
            answer = response.read()
            elapsed = time.perf_counter() - t0
            connection.close()
            if response.status != 200:
                raise BenchError(f"/score answered {response.status}: {answer[:300]!r}")
            scores = json.loads(answer)["scores"]
            if len(scores) != len(batch) or any(row is None for row in scores):
                raise BenchError(f"/score did not score every input: {answer[:300]!r}")
            return elapsed

        # The raw encoder in this process: the same inputs already in memory, no HTTP, no head.
        encoder = load_encoder(project.encoder_name)
        encoder.embed(inputs[:32])  # warm-up
        t0 = time.perf_counter()
        for x in inputs[:64]:
            encoder.embed([x])
        raw_1 = 64 / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        encoder.embed(inputs)  # 32 inputs per request below; the encoder runs them at its own best size
        raw_32 = len(inputs) / (time.perf_counter() - t0)

        post(inputs[:32])  # the worker loads its encoder and warms up
        post(inputs[:1])

        latencies = [post([x]) for x in inputs[:64]]
        score_1 = 64 / sum(latencies)

        t0 = time.perf_counter()
        for start in range(0, len(inputs), 32):
            post(inputs[start : start + 32])
        score_32 = len(inputs) / (time.perf_counter() - t0)

        # Many users at once: CLIENTS threads, each sending single-input requests.
        before = inference_client().status()
        per_client = len(inputs) // CLIENTS
        shuffled = inputs[:]
        random.Random(0).shuffle(shuffled)
        concurrent_latencies: list[float] = []

        def client(k: int) -> None:
            for x in shuffled[k * per_client : (k + 1) * per_client]:
                concurrent_latencies.append(post([x]))

        threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        concurrent = per_client * CLIENTS / (time.perf_counter() - t0)
        after = inference_client().status()
        batches = after["batches"] - before["batches"]

        def ms(values: list[float], q: float) -> float:
            values = sorted(values)
            return round(1000 * values[min(len(values) - 1, int(q * len(values)))], 1)

        return {
            "data_type": project.data_type,
            "encoder": project.encoder_name,
            "inputs": len(inputs),
            "raw_encoder_batch_1_per_second": round(raw_1, 1),
            "raw_encoder_batch_32_per_second": round(raw_32, 1),
            "score_batch_1_per_second": round(score_1, 1),
            "score_batch_1_latency_ms": {"p50": ms(latencies, 0.5), "p95": ms(latencies, 0.95)},
            "score_batch_32_per_second": round(score_32, 1),
            "score_concurrent_batch_1_per_second": round(concurrent, 1),
            "score_concurrent_latency_ms": {"p50": ms(concurrent_latencies, 0.5),
                                            "p95": ms(concurrent_latencies, 0.95)},
            "concurrent_mean_batch": round(per_client * CLIENTS / batches, 2) if batches else None,
            "median_input_bytes": int(
                statistics.median(len(x) if isinstance(x, bytes) else len(x.encode()) for x in inputs)
            ),
        }

    @staticmethod
    def _markdown(report: dict) -> str:
        lines = [
            "",
            "| data | encoder | raw encoder, batch 1 | /score, batch 1 (p50 / p95 latency) | "
            f"raw encoder, 32 at a time | /score, 32 per request | /score, {CLIENTS} clients at batch 1 "
            "(mean encoder batch) |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in report["results"]:
            lat, clat = r["score_batch_1_latency_ms"], r["score_concurrent_latency_ms"]
            lines.append(
                f"| {r['data_type']} | {r['encoder']} | {r['raw_encoder_batch_1_per_second']}/s | "
                f"{r['score_batch_1_per_second']}/s ({lat['p50']} / {lat['p95']} ms) | "
                f"{r['raw_encoder_batch_32_per_second']}/s | {r['score_batch_32_per_second']}/s | "
                f"{r['score_concurrent_batch_1_per_second']}/s (p50 {clat['p50']} ms; {r['concurrent_mean_batch']}) |"
            )
        return "\n".join(lines) + "\n"
