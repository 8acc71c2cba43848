"""Run the inference worker that serves /score (see modeling/inference/ for why it is its own process)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from modeling.inference.protocol import InferenceUnavailable, parse_address
from modeling.inference.server import InferenceServer
from modeling.serving import inference_key
from projects.encoders import EncoderError


class Command(BaseCommand):
    help = "Serve model scores to the web process, keeping encoders and heads loaded (one per machine)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--address", default=settings.LIGHTBULB_INFERENCE_ADDRESS,
                            help="host:port to listen on (default LIGHTBULB_INFERENCE_ADDRESS); port 0 picks one")
        parser.add_argument("--port-file", default="", help="write the port actually bound here (for port 0)")
        parser.add_argument("--threads", type=int, default=settings.LIGHTBULB_INFERENCE_THREADS,
                            help="torch threads (default LIGHTBULB_INFERENCE_THREADS; 0: all cores)")
        parser.add_argument("--no-warm", action="store_true",
                            help="do not load the projects' encoders at start (they load on first use)")
        parser.add_argument("--warm", action="append", default=[], metavar="ENCODER",
                            help="load this encoder at start whatever the database says (repeatable)")

    def handle(self, *args, **options) -> None:
        try:
            host, port = parse_address(options["address"])
            key = inference_key()
        except (ValueError, InferenceUnavailable) as exc:
            raise CommandError(str(exc)) from None
        try:
            server = InferenceServer(
                host=host,
                port=port,
                key=key,
                max_batch=settings.LIGHTBULB_INFERENCE_MAX_BATCH,
                batch_wait=settings.LIGHTBULB_INFERENCE_BATCH_WAIT_MS / 1000,
                max_payload=settings.LIGHTBULB_SCORE_MAX_REQUEST_BYTES * 2,
                threads=options["threads"] or None,
            )
        except OSError as exc:
            raise CommandError(f"cannot listen on {host}:{port}: {exc}") from None
        bound = server.address
        names = list(dict.fromkeys([*options["warm"], *([] if options["no_warm"] else self._encoders_in_use())]))
        if names or not options["no_warm"]:
            from modeling.ml.encoders import configure_torch

            configure_torch(options["threads"] or None)
            self.stdout.write(f"loading {', '.join(names) or 'no encoders (no projects yet)'} ...")
            try:
                server.warm(names)
            except EncoderError as exc:
                raise CommandError(str(exc)) from None
        # Stop cleanly on TERM (make run's loop, systemd) as on Ctrl-C.
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
        if options["port_file"]:
            Path(options["port_file"]).write_text(str(bound[1]), encoding="utf-8")
        self.stdout.write(f"inference worker ready on {bound[0]}:{bound[1]}")
        self.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass

    def _encoders_in_use(self) -> list[str]:
        from django.db import DatabaseError

        from projects.models import Project

        try:
            projects = list(Project.objects.all())
        except DatabaseError:
            return []  # no database yet (before migrate): load on first use
        return sorted({p.encoder_name for p in projects if p.modelled})
