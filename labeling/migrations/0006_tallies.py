"""The current TEST and TRAIN judgement counters on projects_project, kept by triggers (lightbulb_site/tallies.py)."""

from django.db import migrations

from lightbulb_site.tallies import CURRENT_TEST, CURRENT_TRAIN, migration_operations

forward, backward = migration_operations(CURRENT_TEST, CURRENT_TRAIN)


class Migration(migrations.Migration):

    dependencies = [
        ("labeling", "0005_auto_labels"),
        ("projects", "0011_tallies"),
    ]

    operations = [migrations.RunPython(forward, backward)]
