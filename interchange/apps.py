from django.apps import AppConfig


class InterchangeConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "interchange"
    verbose_name = "Import and export"

    def ready(self) -> None:
        from . import receivers  # noqa: F401  (connects the signal receivers)
