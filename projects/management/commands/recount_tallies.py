"""`manage.py recount_tallies`: set every project's database-kept counts from the rows themselves.

The triggers of lightbulb_site/tallies.py keep them exact on every write; this is for a database restored
without its triggers (a data-only dump) or edited by hand with the triggers dropped. It prints what changed.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.db import connection, transaction

from lightbulb_site.tallies import CURRENT_TEST, CURRENT_TRAIN, UNLABELLED
from projects.models import Project

FIELDS = ("tally_unlabelled", "tally_test", "tally_train")


class Command(BaseCommand):
    help = "Recount each project's unlabelled items and current TEST/TRAIN judgements (the tallies)."

    def handle(self, *args, **options) -> None:
        with transaction.atomic():
            before = {pk: rest for pk, *rest in Project.objects.values_list("pk", *FIELDS)}
            with connection.cursor() as cursor:
                for tally in (UNLABELLED, CURRENT_TEST, CURRENT_TRAIN):
                    cursor.execute(tally.recount_sql())
            after = {pk: rest for pk, *rest in Project.objects.values_list("pk", *FIELDS)}
        changed = [pk for pk in after if after[pk] != before.get(pk)]
        for pk in changed:
            self.stdout.write(f"project {pk}: {dict(zip(FIELDS, before[pk], strict=True))} -> "
                              f"{dict(zip(FIELDS, after[pk], strict=True))}")
        self.stdout.write(f"{len(after)} projects counted, {len(changed)} corrected")
