from django.apps import AppConfig


class ModelingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "modeling"
    verbose_name = "Model in the loop"

    def ready(self) -> None:
        # The queue asks these hooks for the ranking, predictions and status; they read the database
        # only (no torch), so registering them in every process is cheap.
        from labeling.queue import set_model_hooks

        from . import receivers  # noqa: F401  (connects the signal receivers: events -> request_*)
        from .hooks import ModelInTheLoop

        set_model_hooks(ModelInTheLoop())

        # Worker processes of `manage.py worker` stop their task at its next batch when asked.
        from django_q.signals import post_spawn

        from .stopping import arm

        post_spawn.connect(arm, dispatch_uid="modeling.stopping.arm")
