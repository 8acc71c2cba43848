"""`manage.py bench_load`: N annotators against gunicorn, on SQLite and on PostgreSQL.

Each annotator is a separate user with their own token and their own keep-alive HTTP connection to a
real gunicorn (lightbulb_site/gunicorn_conf.py, the production settings, DEBUG off), as the TLS proxy of
docs/deploy.md keeps them towards it (`--connection-per-request`: a new connection for every request,
what a proxy without upstream keep-alive does). They work on a 100,000-item text project.
For `--seconds` (after `--warmup`) each one loops: `GET items/next/` (lease one item), then
`POST judgements/` for it. The report gives p50/p95/max of both calls and the judgements per second,
and checks what matters more than speed:

- **0 lost**: every judgement the server acknowledged (201) is in the database afterwards, current (or
  an overlap vote still waiting for the item's other labels);
- **0 doubly leased**: no item was handed to two annotators at once, and none has two current
  judgements.

`--kill` adds a second run (PostgreSQL, the model loop on, a qcluster and an inference worker beside
gunicorn) in which gunicorn, then the qcluster, then the inference worker are killed with SIGKILL and
started again while the annotators go on; they retry what failed, and the same two checks apply.

Each backend gets a throwaway database (a temporary SQLite file; a `lightbulb_bench_load` database
on the PostgreSQL server of `--postgres-url`), built by a child process with the real migrations and
the real CSV import, so nothing here touches the database `make bench` runs in.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from django.conf import settings

from .benchdoc import Bench, BenchError, publish

REPO = Path(settings.BASE_DIR)
MANAGE = REPO / "manage.py"
PG_DATABASE = "lightbulb_bench_load"
LEASE_SECONDS = 300  # a project's default lease: an item not judged stays held this long

SETUP = """
import csv, json, random, sys, time
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0, interactive=False)
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from interchange.config import load_config
from interchange.importer import do_import_config
from projects.models import Role
from projects.services import do_add_member

root, items, annotators = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(0)
words = ["match", "goal", "team", "score", "pasta", "bread", "soup", "cheese", "season", "recipe",
         "coach", "oven", "league", "spice", "final", "salad"]
with open(f"{root}/texts.csv", "w", newline="", encoding="utf-8") as fh:
    writer = csv.writer(fh)
    writer.writerow(["id", "text"])
    for i in range(items):
        writer.writerow([i, " ".join(rng.choice(words) for _ in range(12))])
owner = User.objects.create_user("owner", password=None)
with open(f"{root}/load.yml", "w", encoding="utf-8") as fh:
    fh.write("task: {title: Load}\\ndataset: {directory: texts.csv, data_type: text, id_column: id, "
             "text_column: text}\\nlabel: {type: classification, classes: [sport, food]}\\n"
             "model: {directory: model}\\nuser: owner\\n")
started = time.monotonic()
project = do_import_config(load_config(f"{root}/load.yml")).project
imported = time.monotonic() - started
tokens = []
for n in range(annotators):
    user = User.objects.create_user(f"annotator{n}", password=None)
    do_add_member(project, user=user, role=Role.ANNOTATOR)
    tokens.append(Token.objects.create(user=user).key)
from django.db import connection
if connection.vendor == "postgresql":
    # What autovacuum does within a minute of a large import (its insert threshold): planner statistics
    # and the visibility map, so that counts read the index alone. The run measures that steady state.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
print(json.dumps({"project": project.pk, "items": project.items.count(), "tokens": tokens,
                  "import_seconds": round(imported, 1)}))
"""

CHECK = """
import json, sys
import django
django.setup()
from django.db.models import Count, Q
from labeling.models import Judgement
acked = json.loads(open(sys.argv[1]).read())
project = int(sys.argv[2])
# An overlap item's label is a vote until the item's people have all labelled it: kept, not yet current.
kept = Judgement.objects.filter(Q(is_current=True) | Q(is_vote=True, undone_at__isnull=True), project_id=project)
current = {(j["item_id"], j["user__username"]) for j in kept.values("item_id", "user__username")}
lost = [pair for pair in map(tuple, acked) if pair not in current]
doubled = Judgement.objects.filter(project_id=project, is_current=True).values("item_id").annotate(
    n=Count("id")).filter(n__gt=1).count()
print(json.dumps({"lost": len(lost), "lost_examples": lost[:5], "items_with_two_current": doubled,
                  "current_judgements": len(current)}))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# `lightbulb_site/gunicorn_conf.py`'s access log: the request line, the status, ..., the microseconds last.
LOG_TIME = re.compile(r"\[([^\]]+)\]")
ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) [^"]*" (?P<status>\d{3}) .* (?P<us>\d+)$')


def server_timings(log: Path, project: int, *, since: float = 0.0) -> dict[str, list[float]]:
    """What gunicorn itself measured (ms), from reading each request to writing its answer, by endpoint,
    for the requests logged after `since` (a time.time(); the log's clock has whole seconds)."""
    timings: dict[str, list[float]] = {"next": [], "judgement": []}
    base = f"/api/projects/{project}/"
    if not log.exists():
        return timings
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        match = ACCESS_LINE.search(line)
        if not match or not match["path"].startswith(base):
            continue
        logged = LOG_TIME.search(line)
        if logged and datetime.strptime(logged[1], "%d/%b/%Y:%H:%M:%S %z").timestamp() < since:
            continue
        rest, status = match["path"][len(base):], match["status"]
        if match["method"] == "GET" and rest.startswith("items/next/") and status == "200":
            timings["next"].append(int(match["us"]) / 1000)
        elif match["method"] == "POST" and rest.startswith("judgements/") and status == "201":
            timings["judgement"].append(int(match["us"]) / 1000)
    return timings


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@dataclass
class Annotator:
    """One annotator's loop and what it saw."""

    token: str
    name: str
    port: int
    project: int
    think: float = 0.0
    seed: int = 0
    next_ms: list[float] = field(default_factory=list)
    post_ms: list[float] = field(default_factory=list)
    leased: list[tuple[int, float, float]] = field(default_factory=list)  # item, leased at, held until
    acked: list[tuple[int, str]] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    measure_from: float = 0.0  # time.monotonic() after the warm-up: latencies before it are not kept
    keep_alive: bool = True  # one connection kept open, or a new one per request
    _conn: http.client.HTTPConnection | None = None

    def _call(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        for attempt in range(2):
            conn = self._conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self._conn = conn if self.keep_alive else None
            try:
                conn.request(method, path, body=None if body is None else json.dumps(body),
                             headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json",
                                      "Host": "127.0.0.1"})
                response = conn.getresponse()
                data = response.read()
                if not self.keep_alive:
                    conn.close()
                return response.status, json.loads(data) if data else None
            except (OSError, http.client.HTTPException):
                conn.close()
                self._conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _note(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    def run(self, until: float) -> None:
        base = f"/api/projects/{self.project}"
        # People do not act in step: each starts somewhere in the first pause and looks at each item
        # for 0.5-1.5 times the mean (20 clients pausing exactly alike would arrive in bursts of 20).
        rng = random.Random(self.seed)
        if self.think:
            time.sleep(rng.uniform(0, self.think))
        while time.monotonic() < until:
            try:
                measured = time.monotonic() >= self.measure_from
                started = time.perf_counter()
                status, body = self._call("GET", f"{base}/items/next/")
                elapsed = (time.perf_counter() - started) * 1000
                if status != 200:
                    self._note(f"next {status}")
                    time.sleep(0.2)
                    continue
                if measured:
                    self.next_ms.append(elapsed)
                items = body if isinstance(body, list) else []
                if not items:
                    self._note("next: nothing left")
                    time.sleep(0.2)
                    continue
                item = items[0]
                leased_at = time.time()
                label = "sport" if item["id"] % 2 else "food"
                started = time.perf_counter()
                status, body = self._call("POST", f"{base}/judgements/", {"item": item["id"], "label": label})
                elapsed = (time.perf_counter() - started) * 1000
                if status == 201:
                    if measured:
                        self.post_ms.append(elapsed)
                    self.acked.append((item["id"], self.name))
                    self.leased.append((item["id"], leased_at, time.time()))  # held until judged
                    if self.think:
                        time.sleep(self.think * rng.uniform(0.5, 1.5))  # a person looking at the next item
                else:
                    self._note(f"judgement {status}")
                    self.leased.append((item["id"], leased_at, leased_at + LEASE_SECONDS))
            except (OSError, http.client.HTTPException) as exc:
                self._note(type(exc).__name__)
                time.sleep(0.2)  # the server is restarting: try again shortly


class LoadBench(Bench):
    def run(self, options: dict[str, Any]) -> None:
        backends = options["backend"]
        report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
                                  "annotators": options["annotators"], "items": options["items"],
                                  "keep_alive": not options["connection_per_request"], "warmup": options["warmup"],
                                  "seconds": options["seconds"], "think": options["think"], "runs": {}}
        for backend in backends:
            report["runs"][backend] = self.one_run(backend, options, kill=False)
        if options["kill"]:
            report["runs"]["postgres-kill"] = self.one_run("postgres", options, kill=True)
        publish(report, self.markdown(report), stdout=self.stdout, out=options["out"], doc=options["doc"],
                block="load", command="manage.py bench_load", title="Load: annotators against gunicorn")

    # -- one backend --------------------------------------------------------------------------------

    def database_url(self, backend: str, options: dict[str, Any], folder: Path) -> str:
        if backend == "sqlite":
            return f"sqlite:///{folder}/load.sqlite3"
        url = urlparse(options["postgres_url"])
        self._recreate_pg_database(options["postgres_url"])
        return url._replace(path=f"/{PG_DATABASE}").geturl()

    def _recreate_pg_database(self, admin_url: str) -> None:
        import psycopg

        try:
            with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')
        except psycopg.Error as exc:
            raise BenchError(f"PostgreSQL at {admin_url} is not usable ({exc}); `make services` starts one") from None

    def env(self, database_url: str, folder: Path, *, loop: bool) -> dict[str, str]:
        env = {**os.environ, "DATABASE_URL": database_url, "DEBUG": "0", "SECRET_KEY": self.secret,
               "ALLOWED_HOSTS": "127.0.0.1", "LIGHTBULB_DATA_ROOT": str(folder), "LIGHTBULB_Q_SYNC": "0",
               "LIGHTBULB_MODEL_IN_THE_LOOP": "1" if loop else "0", "LIGHTBULB_STATIC_MANIFEST": "0",
               "LIGHTBULB_ACCESS_LOG": str(folder / "access.log"), "LIGHTBULB_TORCH_THREADS": "1"}
        env.pop("LIGHTBULB_INSECURE_DEV_KEY", None)
        if database_url.startswith("postgres") and os.environ.get("REDIS_URL"):
            env["REDIS_URL"] = os.environ["REDIS_URL"]
        return env

    def one_run(self, backend: str, options: dict[str, Any], *, kill: bool) -> dict[str, Any]:
        self.secret = secrets.token_urlsafe(50)
        with tempfile.TemporaryDirectory(prefix="lightbulb-load-") as tmp:
            folder = Path(tmp)
            url = self.database_url(backend, options, folder)
            env = self.env(url, folder, loop=kill)
            self.stdout.write(f"== {backend}{' (kill -9)' if kill else ''}: importing {options['items']:,} items")
            setup = subprocess.run([sys.executable, "-c", textwrap.dedent(SETUP), str(folder), str(options["items"]),
                                    str(options["annotators"])], cwd=REPO, env=env, capture_output=True, text=True)
            if setup.returncode:
                raise BenchError(f"setting up the {backend} database failed:\n{setup.stderr[-3000:]}")
            made = json.loads(setup.stdout.strip().splitlines()[-1])
            port = free_port()
            web_env = {**env, "LIGHTBULB_BIND": f"127.0.0.1:{port}", "LIGHTBULB_WEB_WORKERS": str(options["workers"])}
            processes: dict[str, subprocess.Popen] = {}
            processes["gunicorn"] = self.start_gunicorn(web_env, folder)
            if kill:
                processes["qcluster"] = self.start_qcluster(env, folder)
                processes["inference worker"] = self.start_inference(env, folder)
            try:
                self.wait_until_up(port)
                annotators = [Annotator(token=t, name=f"annotator{n}", port=port, project=made["project"],
                                        keep_alive=not options["connection_per_request"],
                                        think=options["think"], seed=n) for n, t in enumerate(made["tokens"])]
                # The first requests of each gunicorn thread open its database connection (a PostgreSQL
                # backend starts for each): a warm-up, not kept, so the figures are the steady state.
                measure_from = time.monotonic() + options["warmup"]
                measure_from_wall = time.time() + options["warmup"]
                for a in annotators:
                    a.measure_from = measure_from
                until = measure_from + options["seconds"]
                threads = [threading.Thread(target=a.run, args=(until,)) for a in annotators]
                started = time.monotonic()
                for t in threads:
                    t.start()
                lasts = options["warmup"] + options["seconds"]
                kills = self.kill_and_restart(processes, web_env, env, folder, port, lasts) if kill else []
                for t in threads:
                    t.join()
                wall = time.monotonic() - max(started, measure_from)
            finally:
                for proc in processes.values():
                    self.stop(proc)
            acked_file = folder / "acked.json"
            acked = [pair for a in annotators for pair in a.acked]
            acked_file.write_text(json.dumps(acked), encoding="utf-8")
            check = subprocess.run(
                [sys.executable, "-c", textwrap.dedent(CHECK), str(acked_file), str(made["project"])],
                cwd=REPO, env=env, capture_output=True, text=True,
            )
            if check.returncode:
                raise BenchError(f"checking the {backend} database failed:\n{check.stderr[-3000:]}")
            checked = json.loads(check.stdout.strip().splitlines()[-1])
            server = server_timings(folder / "access.log", made["project"], since=measure_from_wall)
        return self.summarise(annotators, made, checked, wall, kills, server=server)

    def start_gunicorn(self, env: dict[str, str], folder: Path) -> subprocess.Popen:
        return self.start(folder, "gunicorn", ["-m", "gunicorn", "-c", "python:lightbulb_site.gunicorn_conf",
                                               "lightbulb_site.wsgi"], env)

    def start_qcluster(self, env: dict[str, str], folder: Path) -> subprocess.Popen:
        return self.start(folder, "qcluster", [str(MANAGE), "qcluster"], env)

    def start_inference(self, env: dict[str, str], folder: Path) -> subprocess.Popen:
        return self.start(folder, "inference", [str(MANAGE), "inference_worker", "--no-warm",
                                                "--address", f"127.0.0.1:{free_port()}"], env)

    @staticmethod
    def start(folder: Path, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(folder / f"{name}.log", "ab")  # noqa: SIM115 (the process owns it)
        return subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)

    @staticmethod
    def stop(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    @staticmethod
    def wait_until_up(port: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/accounts/login/", headers={"Host": "127.0.0.1"})
                if conn.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.3)
        raise BenchError(f"gunicorn did not answer on port {port} within {timeout:.0f} s")

    def kill_and_restart(self, processes: dict[str, subprocess.Popen], web_env: dict[str, str],
                         env: dict[str, str], folder: Path, port: int, seconds: float) -> list[str]:
        """SIGKILL gunicorn (every process of it), then the qcluster, then the inference worker, each at its
        quarter of the run, and start each again as systemd's Restart=always would."""
        done = []
        for k, name in enumerate(("gunicorn", "qcluster", "inference worker"), start=1):
            time.sleep(seconds / 4)
            proc = processes[name]
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            self.stdout.write(f"   killed {name} (-9) at {k}/4 of the run; starting it again")
            if name == "gunicorn":
                processes[name] = self.start_gunicorn(web_env, folder)
                self.wait_until_up(port)
            elif name == "qcluster":
                subprocess.run([sys.executable, str(MANAGE), "resume_model_work"], cwd=REPO, env=env,
                               capture_output=True)
                processes[name] = self.start_qcluster(env, folder)
            else:
                processes[name] = self.start_inference(env, folder)
            done.append(name)
        return done

    @staticmethod
    def summarise(annotators: list[Annotator], made: dict, checked: dict, wall: float,
                  kills: list[str], server: dict[str, list[float]] | None = None) -> dict[str, Any]:
        next_ms = [x for a in annotators for x in a.next_ms]
        post_ms = [x for a in annotators for x in a.post_ms]
        # Doubly leased: one item handed to two annotators whose leases overlapped in time.
        by_item: dict[int, list[tuple[float, float, str]]] = {}
        for a in annotators:
            for item, at, expiry in a.leased:
                by_item.setdefault(item, []).append((at, expiry, a.name))
        doubly = 0
        for leases in by_item.values():
            leases.sort()
            doubly += sum(1 for (_, e1, n1), (s2, _, n2) in zip(leases, leases[1:], strict=False)
                          if n1 != n2 and s2 < e1)
        errors: dict[str, int] = {}
        for a in annotators:
            for k, v in a.errors.items():
                errors[k] = errors.get(k, 0) + v

        def stats(values: list[float]) -> dict[str, float | None]:
            return {"n": len(values), "p50_ms": percentile(values, 0.5), "p95_ms": percentile(values, 0.95),
                    "max_ms": max(values) if values else None,
                    "mean_ms": statistics.fmean(values) if values else None}

        return {"items": made["items"], "import_seconds": made["import_seconds"], "wall_seconds": round(wall, 1),
                "next": stats(next_ms), "judgement": stats(post_ms),
                "server_next": stats((server or {}).get("next", [])),
                "server_judgement": stats((server or {}).get("judgement", [])),
                "judgements_per_second": round(len(post_ms) / wall, 1) if wall else None,
                "acknowledged": sum(len(a.acked) for a in annotators), "lost": checked["lost"],
                "lost_examples": checked["lost_examples"],
                "doubly_leased": doubly, "items_with_two_current": checked["items_with_two_current"],
                "errors": errors, "killed": kills}

    @staticmethod
    def markdown(report: dict[str, Any]) -> str:
        def ms(v: float | None) -> str:
            return "–" if v is None else f"{v:.0f}" if v >= 10 else f"{v:.1f}"

        pace = (f"each looking at an item for {report['think']:g} s on average (0.5-1.5 times that, starts "
                f"spread over the first pause: a person's pace), then labelling it"
                if report.get("think") else "each as fast as the server answers (no pause between items)")
        connections = ("a keep-alive connection each" if report.get("keep_alive", True)
                       else "a new connection per request")
        lines = [f"{report['annotators']} annotators (a user and a token each, {connections}), {pace}, "
                 f"against gunicorn (`lightbulb_site/gunicorn_conf.py`, DEBUG off) on a {report['items']:,}-item "
                 f"text project, {report['seconds']:.0f} s per run after a {report.get('warmup', 0):g} s warm-up; "
                 f"the clients run on the same cores as the server.",
                 "",
                 "Times in ms as p50 / p95 / max: *clients* as the annotators saw them (their 20 threads share "
                 "the cores and one interpreter), *server* as gunicorn timed each request, from reading it to "
                 "writing the answer (its access log).",
                 "",
                 "| run | `items/next` clients | `items/next` server | judgement POST clients "
                 "| judgement POST server | judgements / s | acknowledged | lost | doubly leased |",
                 "|---|---|---|---|---|---|---|---|---|"]

        def three(s: dict) -> str:
            return f"{ms(s['p50_ms'])} / {ms(s['p95_ms'])} / {ms(s['max_ms'])}"

        for name, run in report["runs"].items():
            doubled = run["doubly_leased"] + run["items_with_two_current"]
            server_next = run.get("server_next") or {"p50_ms": None, "p95_ms": None, "max_ms": None}
            server_post = run.get("server_judgement") or {"p50_ms": None, "p95_ms": None, "max_ms": None}
            lines.append(f"| {name} | {three(run['next'])} | {three(server_next)} | {three(run['judgement'])} | "
                         f"{three(server_post)} | {run['judgements_per_second']} | {run['acknowledged']:,} | "
                         f"{run['lost']} | {doubled} |")
        for name, run in report["runs"].items():
            if run["killed"]:
                lines += ["", f"`{name}`: killed with SIGKILL and started again during the run: "
                          f"{', '.join(run['killed'])}; client errors while they were down: "
                          f"{json.dumps(run['errors'])}."]
        return "\n".join(lines) + "\n"
