from django.core.management.base import BaseCommand

from modeling.services import resume_pending_work


class Command(BaseCommand):
    help = "Enqueue the embedding, training and ranking a stopped or crashed worker left undone."

    def handle(self, *args, **options) -> None:
        done = resume_pending_work()
        self.stdout.write("resumed: " + (", ".join(done) if done else "nothing pending"))
