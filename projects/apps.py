from django.apps import AppConfig
from django.db.models.signals import post_migrate, pre_migrate


def _drop_tally_triggers(sender, using: str = "default", **kwargs) -> None:
    """SQLite only: a migration that rebuilds a table would fail (or silently drop triggers) with them in."""
    from django.db import connections

    from lightbulb_site.tallies import uninstall

    if connections[using].vendor == "sqlite":
        uninstall(connections[using])


def _install_tally_triggers(sender, using: str = "default", **kwargs) -> None:
    from django.db import connections

    from lightbulb_site.tallies import install

    install(connections[using])


class ProjectsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "projects"

    def ready(self) -> None:
        # Once per migrate (sent for each app; this one only): the tallies' triggers, lightbulb_site/tallies.py.
        pre_migrate.connect(_drop_tally_triggers, sender=self, dispatch_uid="lightbulb-tallies-drop")
        post_migrate.connect(_install_tally_triggers, sender=self, dispatch_uid="lightbulb-tallies-install")
