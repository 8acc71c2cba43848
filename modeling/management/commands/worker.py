"""`manage.py worker`: the background worker (django-q2's qcluster) that stops within seconds.

qcluster waits for the task each worker is running: an embedding chunk could keep `make run`'s Ctrl-C or a
`systemctl stop` waiting for minutes. This command starts the same cluster, and on TERM or INT first asks the
running tasks to stop at their next batch (modeling.stopping), then stops the cluster as qcluster does.
"""

from __future__ import annotations

import os
import signal

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the background worker (django-q2 cluster); TERM or Ctrl-C stops it within seconds"

    def handle(self, *args, **options) -> None:
        from django_q.cluster import Cluster

        from modeling.stopping import ask_descendants_to_stop

        settings.SECRET_KEY  # noqa: B018 - fail now, as qcluster does, rather than in every task
        # Inherited by every process the cluster forks; the worker processes re-arm it (modeling.stopping.arm).
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        if os.environ.get("Q_CLUSTER_NAME") == settings.LIGHTBULB_DEEP_CLUSTER:
            from modeling.priority import run_in_background

            # Before the cluster forks its workers, which inherit it: fine-tunes never slow the fast head.
            self.stdout.write(f"deep worker: {run_in_background()}")
        cluster = Cluster()

        def stop(signum, frame) -> None:
            ask_descendants_to_stop()
            cluster.sig_handler(signum, frame)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        cluster.start()
