"""gunicorn's settings for Light Bulb in production (docs/deploy.md):

    gunicorn -c python:lightbulb_site.gunicorn_conf lightbulb_site.wsgi

Every value comes from the environment, like the Django settings. The web process never imports torch:
it checks requests, reads and writes the database and hands scoring to the inference worker, so its
workers are small and many threads each wait on the database or the worker, not on the CPU.
"""

from __future__ import annotations

import multiprocessing
import os


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    return int(raw) if raw.strip() else default


bind = os.environ.get("LIGHTBULB_BIND", "127.0.0.1:8000")  # behind the TLS proxy; "0.0.0.0:8000" to expose
# Processes: one per core is enough for a process that mostly waits (threads carry the concurrency).
workers = _int("LIGHTBULB_WEB_WORKERS", max(2, multiprocessing.cpu_count()))
worker_class = "gthread"
threads = _int("LIGHTBULB_WEB_THREADS", 8)
# /score waits on the inference worker (LIGHTBULB_INFERENCE_TIMEOUT, 60 s with a cold encoder) and an
# upload can be large: a request may take that long before gunicorn counts its worker as hung.
timeout = _int("LIGHTBULB_WEB_TIMEOUT", 90)
graceful_timeout = _int("LIGHTBULB_WEB_GRACEFUL_TIMEOUT", 30)  # finish what is in flight on TERM / HUP
keepalive = 5
# Recycle workers now and then so a slow leak in any library cannot grow without bound.
max_requests = _int("LIGHTBULB_WEB_MAX_REQUESTS", 5000)
max_requests_jitter = max_requests // 10
limit_request_line = 8190
accesslog = os.environ.get("LIGHTBULB_ACCESS_LOG", "-")  # "-": stdout, for journald or docker
# The combined format plus how long each request took in microseconds (%(D)s, last): slow endpoints show
# in the log itself, and bench_load reads the server's own timings from it.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(D)s'
errorlog = "-"
# The proxy in front terminates TLS and sets X-Forwarded-*; gunicorn trusts only what it names here.
forwarded_allow_ips = os.environ.get("LIGHTBULB_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
proc_name = "lightbulb-web"
