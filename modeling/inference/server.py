"""The inference worker behind /score: a long-lived process that keeps encoders and heads loaded.

Why a dedicated process rather than a django-q2 task with a result wait: the django-q2 worker is the
one ML worker of the machine and is busy for seconds at a time (embedding chunks, fitting heads), and
the ORM broker polls every 0.5 s, so a score would wait behind training and pay the poll on top.
This worker answers in milliseconds, keeps the encoders warm, and batches concurrent requests.

    web process (no torch) --TCP, one framed request per connection--> InferenceServer
        handler threads: read + authenticate a request, queue it, wait for its answer
        one compute thread: take every queued request for the same encoder (up to `max_batch`
        inputs), run the encoder once over all of them, apply each request's head

The encoder code and the head arithmetic are the ones training and ranking use (`ml/encoders.py`,
`ml.head.Head`), so a score equals what the project page shows and what an exported bundle gives.

The protocol is small and private: a frame is `LBI1`, the header length and the payload length
(network order), a JSON header, then the payload (inputs as raw bytes, sizes in the header). Every
request carries a key derived from the site's SECRET_KEY, so only processes holding it can score.

Nothing here imports Django; torch is imported only inside the compute thread.
"""

from __future__ import annotations

import hmac
import logging
import os
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np

from projects.encoders import REGISTRY, EncoderError

from ..ml.head import Head
from .protocol import (
    DEFAULT_MAX_PAYLOAD,
    InferenceUnavailable,
    read_frame,
    split_payload,
    write_frame,
)

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# Server (the worker process)
# --------------------------------------------------------------------------------------------------


@dataclass
class _Job:
    encoder: str
    encoder_version: str
    head_path: str
    inputs: list  # bytes (images) or str (texts)
    finetuned: str = ""  # the folder of a project's fine-tuned weights for the encoder ("" = the pretrained one)
    done: threading.Event = field(default_factory=threading.Event)
    answer: dict = field(default_factory=dict)


@dataclass
class Stats:
    started: float = field(default_factory=time.time)
    requests: int = 0
    inputs: int = 0
    batches: int = 0
    max_batch_inputs: int = 0
    max_batch_requests: int = 0
    compute_seconds: float = 0.0


class InferenceServer:
    """Serve scores on `host:port` until `shutdown()`. Port 0 picks a free port (see `.address`)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 8765,
        key: bytes,
        max_batch: int = 64,
        batch_wait: float = 0.0,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        head_cache: int = 64,
        threads: int | None = None,
    ) -> None:
        self.key = key
        self.max_batch = max_batch
        # 0: "natural" batching, no added latency. Requests that arrive while the encoder runs are
        # queued and all go into the next batch, so batches grow exactly when the load does.
        self.batch_wait = batch_wait
        self.max_payload = max_payload
        self.threads = threads
        self.stats = Stats()
        self._jobs: deque[_Job] = deque()
        self._cv = threading.Condition()
        self._stopping = False
        self._heads: OrderedDict[tuple, Head] = OrderedDict()
        self._head_cache = head_cache
        self._heads_lock = threading.Lock()  # handler threads and the compute thread share the cache
        self._encoders: dict[str, object] = {}
        server = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                server._handle(self.request)

        class TCPServer(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        self._tcp = TCPServer((host, port), Handler)
        self._compute = threading.Thread(target=self._compute_loop, name="inference-compute", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        # An AF_INET/AF_INET6 server's address is (host, port[, flowinfo, scope_id]); the stubs allow
        # any socket address (a path, bytes) there.
        return cast(tuple[str, int], self._tcp.server_address[:2])

    def warm(self, encoders: Sequence[str]) -> None:
        """Load encoders now (seconds each), so the first request does not pay for it."""
        for name in encoders:
            self._encoder(name)

    def serve_forever(self) -> None:
        self._compute.start()
        try:
            self._tcp.serve_forever(poll_interval=0.5)
        finally:
            self._stop_compute()

    def shutdown(self) -> None:
        self._tcp.shutdown()
        self._tcp.server_close()
        self._stop_compute()

    def _stop_compute(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify_all()

    # -- connection handling (one thread per connection) --------------------------------------------

    def _handle(self, sock: socket.socket) -> None:
        try:
            sock.settimeout(60)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            header, payload = read_frame(sock, max_payload=self.max_payload)
        except (ConnectionError, OSError, ValueError, struct.error) as exc:
            logger.warning("bad inference request: %s", exc)
            return
        try:
            answer = self._answer(header, payload)
        except Exception as exc:  # noqa: BLE001 - any failure becomes an error answer, never a dead socket
            logger.exception("inference request failed")
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        try:
            write_frame(sock, answer)
        except OSError as exc:
            logger.info("client went away before its answer: %s", exc)

    def _answer(self, header: dict, payload: bytes) -> dict:
        if not hmac.compare_digest(str(header.get("auth", "")), self.key.hex()):
            return {"ok": False, "error": "wrong key: the web process and the worker must share SECRET_KEY"}
        op = header.get("op")
        if op == "status":
            return {"ok": True, "pid": os.getpid(), "encoders": sorted(self._encoders), **self.stats.__dict__,
                    "heads_cached": len(self._heads), "queued": len(self._jobs)}
        if op != "score":
            return {"ok": False, "error": f"unknown operation {op!r}"}
        blobs = split_payload(payload, [int(s) for s in header.get("sizes", [])])
        inputs: list = [b.decode("utf-8", errors="replace") for b in blobs] if header.get("text") else blobs
        job = _Job(
            encoder=str(header.get("encoder")),
            encoder_version=str(header.get("encoder_version")),
            head_path=str(header.get("head")),
            inputs=inputs,
            finetuned=str(header.get("finetuned") or ""),
        )
        if not job.inputs:
            if is_box_model(job.encoder):
                return {"ok": True, "classes": list(self._detector(job.head_path)[1]["classes"]), "scores": [],
                        "boxes": [], "errors": {}, "batch_inputs": 0}
            if is_span_model(job.encoder):
                return {"ok": True, "classes": self._ner(job.head_path).meta["lightbulb"]["types"], "scores": [],
                        "spans": [], "errors": {}, "batch_inputs": 0}
            head = self._head(job.head_path)
            return {"ok": True, "classes": head.classes, "scores": [], "errors": {}, "batch_inputs": 0}
        with self._cv:
            self._jobs.append(job)
            self._cv.notify_all()
        job.done.wait()
        return job.answer

    # -- the compute thread ---------------------------------------------------------------------

    def _next_batch(self) -> list[_Job] | None:
        """The oldest job plus every queued job for the same encoder, up to `max_batch` inputs."""
        with self._cv:
            while not self._jobs and not self._stopping:
                self._cv.wait()
            if self._stopping:
                return None
            if self.batch_wait > 0:
                deadline = time.monotonic() + self.batch_wait
                while (
                    sum(len(j.inputs) for j in self._jobs) < self.max_batch
                    and (left := deadline - time.monotonic()) > 0
                ):
                    self._cv.wait(left)
            first = self._jobs.popleft()
            batch, size = [first], len(first.inputs)
            kept: deque[_Job] = deque()
            while self._jobs:
                job = self._jobs.popleft()
                same = (job.encoder, job.finetuned) == (first.encoder, first.finetuned)
                if same and size + len(job.inputs) <= self.max_batch:
                    batch.append(job)
                    size += len(job.inputs)
                else:
                    kept.append(job)
            self._jobs.extendleft(reversed(kept))
            return batch

    def _compute_loop(self) -> None:
        if self.threads:
            from ..ml.encoders import configure_torch

            configure_torch(self.threads)
        while (batch := self._next_batch()) is not None:
            started = time.perf_counter()
            try:
                self._run_batch(batch)
            except Exception as exc:  # noqa: BLE001 - the worker must survive any one batch
                logger.exception("inference batch failed")
                for job in batch:
                    if not job.done.is_set():
                        job.answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            finally:
                for job in batch:
                    job.done.set()
            n = sum(len(j.inputs) for j in batch)
            s = self.stats
            s.requests += len(batch)
            s.inputs += n
            s.batches += 1
            s.max_batch_inputs = max(s.max_batch_inputs, n)
            s.max_batch_requests = max(s.max_batch_requests, len(batch))
            s.compute_seconds += time.perf_counter() - started

    # Fine-tuned copies kept loaded at once (each 25-90 MB); the catalogued encoders always stay.
    FINETUNED_CACHE = 4

    def _encoder(self, name: str, finetuned: str = ""):
        key = f"{name}@{finetuned}" if finetuned else name
        if key not in self._encoders:
            from ..ml.encoders import load_encoder

            if finetuned:
                tuned = [k for k in self._encoders if "@" in k]
                for old in tuned[: max(0, len(tuned) - self.FINETUNED_CACHE + 1)]:
                    del self._encoders[old]  # oldest first (dicts keep insertion order)
            self._encoders[key] = load_encoder(name, finetuned=finetuned or None)
        return self._encoders[key]

    def _head(self, path: str) -> Head:
        """Heads cached by (path, mtime, size): a retrained version is a new file, read once."""
        file = Path(path)
        if file.suffix != ".npz":
            raise ValueError(f"not a model head file: {path}")
        st = file.stat()
        return self._cached((str(file), st.st_mtime_ns, st.st_size), lambda: Head.load(file))

    def _cached(self, key: tuple, load):
        """A loaded model from the shared LRU cache (heads and NER pipelines), loading it on a miss."""
        with self._heads_lock:
            model = self._heads.get(key)
            if model is None:
                model = load()
                self._heads[key] = model
                while len(self._heads) > self._head_cache:
                    self._heads.popitem(last=False)
            else:
                self._heads.move_to_end(key)
            return model

    def _ner(self, path: str):
        """A sequence project's spaCy NER version (a pipeline folder), cached by (path, its meta's mtime)."""
        folder = Path(path)
        if folder.suffix != ".spacy" or not (folder / "meta.json").is_file():
            raise ValueError(f"not a sequence tagging model: {path}")
        st = (folder / "meta.json").stat()
        from ..ml.ner import load_head

        return self._cached((str(folder), st.st_mtime_ns, st.st_size), lambda: load_head(folder))

    def _run_spans(self, batch: list[_Job]) -> None:
        """Sequence tagging: each job's NER version tags its texts (spans of the project's types only)."""
        import spacy

        from ..ml.ner import predict

        for job in batch:
            pipeline = job.encoder.split(":", 1)[1]
            installed = spacy.util.get_package_version(pipeline)
            if installed != job.encoder_version:
                job.answer = {"ok": False, "error": f"the model was trained on {pipeline}@{job.encoder_version}; "
                                                    f"this worker has {pipeline}@{installed or 'nothing'}"}
                continue
            try:
                nlp = self._ner(job.head_path)
            except (OSError, ValueError) as exc:
                job.answer = {"ok": False, "error": f"cannot read the model: {exc}"}
                continue
            types = list(nlp.meta.get("lightbulb", {}).get("types", []))
            spans: list[list[dict] | None] = []
            errors: dict[str, str] = {}
            for i, text in enumerate(job.inputs):
                try:
                    found = predict(nlp, [text], types=types)[0]
                except Exception as exc:  # noqa: BLE001 - reported for this input only; the others are tagged
                    spans.append(None)
                    errors[str(i)] = f"cannot be tagged: {exc}"
                    continue
                spans.append([{**s, "text": text[s["start"]:s["end"]]} for s in found])
            job.answer = {"ok": True, "classes": types, "scores": [None] * len(job.inputs), "spans": spans,
                          "errors": errors, "batch_inputs": len(job.inputs)}

    def _detector(self, path: str):
        """A detection project's version (model, meta), cached by (path, mtime, size) like the heads."""
        file = Path(path)
        if not file.name.endswith(".detector.pt"):
            raise ValueError(f"not an object detection model: {path}")
        st = file.stat()
        from ..ml.detection import load_detector

        return self._cached((str(file), st.st_mtime_ns, st.st_size), lambda: load_detector(file))

    def _run_boxes(self, batch: list[_Job]) -> None:
        """Object detection: each job's detector finds the boxes of its images (every detection above the
        detector's floor, best first; the web process keeps those at the caller's minimum score)."""
        import torchvision

        from ..ml.detection import detect

        for job in batch:
            if job.encoder_version != torchvision.__version__:
                job.answer = {"ok": False, "error": f"the model was trained with torchvision@{job.encoder_version}; "
                                                    f"this worker has torchvision@{torchvision.__version__}"}
                continue
            try:
                model, meta = self._detector(job.head_path)
            except (OSError, ValueError, RuntimeError, KeyError) as exc:
                job.answer = {"ok": False, "error": f"cannot read the model: {exc}"}
                continue
            classes = list(meta["classes"])
            boxes: list[list[dict] | None] = []
            errors: dict[str, str] = {}
            for i, raw in enumerate(job.inputs):
                try:
                    boxes.append(detect(model, [bytes(raw)], classes=classes)[0].boxes)
                except Exception as exc:  # noqa: BLE001 - reported for this input only; the others are detected
                    boxes.append(None)
                    errors[str(i)] = f"cannot be detected: {exc}"
            job.answer = {"ok": True, "classes": classes, "scores": [None] * len(job.inputs), "boxes": boxes,
                          "errors": errors, "batch_inputs": len(job.inputs)}

    def _run_batch(self, batch: list[_Job]) -> None:
        name = batch[0].encoder
        if is_span_model(name):
            self._run_spans(batch)
            return
        if is_box_model(name):
            self._run_boxes(batch)
            return
        spec = REGISTRY.get(name)
        if spec is None:
            for job in batch:
                job.answer = {"ok": False, "error": f"unknown encoder {name!r}"}
            return
        for job in batch:
            # A fine-tuned copy has the catalogued version plus its run ("...+ft-p3-r2").
            expected = job.encoder_version.split("+ft-")[0] if job.finetuned else job.encoder_version
            if expected != spec.version:
                job.answer = {"ok": False, "error": f"the model was trained on {name}@{job.encoder_version}; "
                                                    f"this worker has {name}@{spec.version}"}
        live = [job for job in batch if not job.answer]
        if not live:
            return
        try:
            encoder = self._encoder(name, batch[0].finetuned)
        except EncoderError as exc:
            for job in live:
                job.answer = {"ok": False, "error": str(exc)}
            return
        inputs = [x for job in live for x in job.inputs]
        features, failed = _embed(encoder, inputs, spec.dim)
        start = 0
        for job in live:
            rows = range(start, start + len(job.inputs))
            start += len(job.inputs)
            try:
                head = self._head(job.head_path)
            except (OSError, ValueError, KeyError) as exc:
                job.answer = {"ok": False, "error": f"cannot read the model head: {exc}"}
                continue
            if head.encoder != name:
                job.answer = {"ok": False, "error": f"the head was trained on {head.encoder}, not {name}"}
                continue
            probs = head.predict_proba(features[list(rows)]) if len(rows) else np.zeros((0, len(head.classes)))
            scores: list[list[float] | None] = []
            errors: dict[str, str] = {}
            for i, row in enumerate(rows):
                if row in failed:
                    scores.append(None)
                    errors[str(i)] = failed[row]
                else:
                    scores.append([float(p) for p in probs[i]])
            job.answer = {"ok": True, "classes": head.classes, "scores": scores, "errors": errors,
                          "batch_inputs": len(inputs)}


def is_span_model(encoder: str) -> bool:
    """A sequence tagging version names its spaCy pipeline as its encoder ("spacy:<package>")."""
    return encoder.startswith("spacy:")


def is_box_model(encoder: str) -> bool:
    """A detection version names its detector as its encoder ("torchvision:fasterrcnn_mobilenet_v2_fpn")."""
    return encoder.startswith("torchvision:")


def _embed(encoder, inputs: list, dim: int) -> tuple[np.ndarray, dict[int, str]]:
    """Features for all inputs in one call; if that fails, item by item, so one bad input fails alone."""
    try:
        return encoder.embed(inputs), {}
    except Exception:  # noqa: BLE001 - find the culprit below; the others still get scores
        logger.info("batch of %d failed; embedding one by one", len(inputs))
    rows, failed = [], {}
    for i, x in enumerate(inputs):
        try:
            rows.append(encoder.embed([x])[0])
        except Exception as exc:  # noqa: BLE001 - reported to the caller for this input only
            failed[i] = f"cannot be read: {exc}"
            rows.append(np.zeros(dim, np.float32))
    return (np.stack(rows) if rows else np.zeros((0, dim), np.float32)), failed


@contextmanager
def worker_process(
    manage: Path, folder: Path, *, env: dict | None = None, timeout: float = 180, warm: Sequence[str] = ()
) -> Iterator[str]:
    """Run `manage.py inference_worker` on a free local port for the duration (tests, benchmarks).

    `warm`: encoders it loads before it reports ready (it reads no database for them). Yields its
    'host:port'. The log is `folder/inference.log`; a worker that does not come up within
    `timeout` seconds raises InferenceUnavailable with the end of that log.
    """
    port_file, log_path = folder / "inference.port", folder / "inference.log"
    port_file.unlink(missing_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(manage), "inference_worker", "--address", "127.0.0.1:0", "--port-file",
             str(port_file), "--no-warm", *(f"--warm={name}" for name in warm)],
            cwd=manage.parent, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + timeout
            while not port_file.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text(errors="replace")[-3000:]
                    raise InferenceUnavailable(f"the inference worker did not start:\n{tail}")
                time.sleep(0.1)
            yield f"127.0.0.1:{port_file.read_text()}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
