"""Loaded as a pytest plugin (`-p tests.env` in pytest.ini) so it runs before Django reads settings.

django-q2 reads `sync` once at import, so sync mode comes from an environment variable here rather
than override_settings.
"""

import os

os.environ.setdefault("LIGHTBULB_INSECURE_DEV_KEY", "1")
# The development SECRET_KEY never keys the inference worker outside DEBUG: a run gets its own secret,
# which the inference workers the tests start inherit.
import secrets  # noqa: E402

os.environ.setdefault("LIGHTBULB_INFERENCE_SECRET", secrets.token_hex(16))
os.environ.setdefault("LIGHTBULB_Q_SYNC", "1")
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LIGHTBULB_STATIC_MANIFEST", "0")
# The labeling and project tests exercise the queue without a model; tests/modeling switch the loop on
# (settings fixture) and run its real tasks synchronously.
os.environ.setdefault("LIGHTBULB_MODEL_IN_THE_LOOP", "0")
os.environ.setdefault("LIGHTBULB_TRAIN_DEBOUNCE_SECONDS", "0")
# Tasks run inline in the tests: a fine-tune starting by itself at 100 TRAIN labels would run inside whatever
# test labelled them. The deep-tier tests switch it on.
os.environ.setdefault("LIGHTBULB_FINETUNE_AUTO", "0")

# Tests run on a real SQLite file (WAL + IMMEDIATE, as in production) rather than the in-memory
# shared-cache database, so concurrent connections behave as they will for users. A DATABASE_URL
# already set (e.g. PostgreSQL) is respected.
import tempfile  # noqa: E402

_tmp = tempfile.mkdtemp(prefix="lightbulb-tests-")
os.environ.setdefault("DATABASE_URL", f"sqlite:///{_tmp}/lightbulb.sqlite3?test_name={_tmp}/test.sqlite3")
os.environ.setdefault("LIGHTBULB_DATA_ROOT", _tmp)
