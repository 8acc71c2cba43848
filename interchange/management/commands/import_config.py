from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from interchange.config import ConfigError, load_config
from interchange.importer import do_import_config
from projects.services import ProjectError


class Command(BaseCommand):
    help = "Import a Light Bulb YAML config as a project (idempotent: re-run to pick up new files)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("config", help="path to the Light Bulb YAML config")
        parser.add_argument("--slug", help="project slug (default: the config file's name)")
        parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    def handle(self, *args, **options) -> None:
        try:
            config = load_config(options["config"], slug=options.get("slug"))
            result = do_import_config(config, progress=not options["no_progress"])
        except (ConfigError, ProjectError) as exc:
            # One clear line; CommandError makes the exit status non-zero.
            raise CommandError(f"{options['config']}: {exc}") from exc

        project = result.project
        verb = "Created" if result.created_project else "Updated"
        self.stdout.write(self.style.SUCCESS(f"{verb} project '{project.slug}' (id {project.pk}): {project.title}"))
        self.stdout.write(
            f"  items: {result.items_added} added ({result.items_rejected} rejected), "
            f"{result.items_existing} already present; {project.items.count()} in total"
        )
        if config.judgements_file:
            self.stdout.write(
                f"  judgements: {result.judgements_imported} imported from {config.judgements_file}"
                + (f", {result.judgements_unimported} not imported" if result.judgements_unimported else "")
            )
        if result.backup_path:
            self.stdout.write(f"  the original judgements file was copied to {result.backup_path}")
        for warning in result.warnings:
            self.stderr.write(self.style.WARNING(f"  warning: {warning}"))
        if result.created_user:
            self.stdout.write(
                f"  owner '{config.user}' was created without a usable password; set one with:\n"
                f"    python manage.py changepassword {config.user}"
            )
