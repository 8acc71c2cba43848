from django.core.management.base import BaseCommand

from modeling.deep import recover_finetunes
from modeling.services import resume_pending_work


class Command(BaseCommand):
    help = ("Enqueue the embedding, training and ranking a stopped or crashed worker left undone; mark fine-tunes "
            "whose worker stopped as failed (their files removed) and enqueue queued ones again.")

    def handle(self, *args, **options) -> None:
        done = resume_pending_work() + recover_finetunes()
        self.stdout.write("resumed: " + (", ".join(done) if done else "nothing pending"))
