"""Django settings, read from :mod:`supportbot.config` (never from os.environ directly)."""

from __future__ import annotations

from pathlib import Path

import dj_database_url

from supportbot.config import get_settings

_cfg = get_settings()
#: supportbot's own settings, read once: the Django side (admin, sandbox page) reads them here.
SUPPORTBOT = _cfg

BASE_DIR = Path(__file__).resolve().parent
DATA_DIR = _cfg.data_dir
DATA_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = _cfg.secret_key()
DEBUG = _cfg.debug
ALLOWED_HOSTS = _cfg.hosts
#: The task queue's broker (``CELERY_BROKER_URL``), for the health check of every process
#: (``ops/health.py``); None: jobs run in-process.
SUPPORTBOT_BROKER_SECRET_URL = _cfg.tasks.broker_url  # "SECRET": hidden on error pages
#: A ticket waiting for a person longer than this (OVERDUE_MINUTES) is flagged in the desk's queue.
SUPPORTBOT_OVERDUE_MINUTES = _cfg.desk.overdue_minutes

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "supportbot.support.apps.SupportConfig",
    # No models: wires FAQ changes (support.signals.faq_changed) to the FAQ index's sync.
    "supportbot.web.apps.WebConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The admin in the operator's language: the switcher's choice (cookie), else the browser's
    # Accept-Language, else LANGUAGE_CODE (uk, ru, en: LANGUAGES below).
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "supportbot.web.urls"

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

ASGI_APPLICATION = "supportbot.web.asgi.application"
WSGI_APPLICATION = "supportbot.web.wsgi.application"

_db = dj_database_url.parse(_cfg.resolved_database_url(), conn_max_age=0)
if _db["ENGINE"] == "django.db.backends.sqlite3":
    Path(_db["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # WAL lets the bot, the web process and the outbox read while one writes;
    # the timeout makes writers wait instead of failing with "database is locked".
    _db["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    _db["TEST"] = {"NAME": str(DATA_DIR / "test_supportbot.sqlite3")}
DATABASES = {"default": _db}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# "analytics": the matcher's vectors of handed-over questions, kept in this process's memory by the
# analytics page (web/admin_analytics.py); about 4.6 KB each with EmbeddingGemma + e5.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "analytics": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "analytics",
                  "OPTIONS": {"MAX_ENTRIES": 5000}},
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("uk", "Українська"), ("ru", "Русский")]
TIME_ZONE = "UTC"
USE_I18N = True
# The project's own admin texts (domain "django"; the bot's texts are the "supportbot" domain in the
# same folders). The .mo files are committed, compiled from the .po by tools/messages.py.
LOCALE_PATHS = [BASE_DIR.parent / "locale"]
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
MEDIA_ROOT = DATA_DIR / "media"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

# Logging is set up once, by the CLI (supportbot.logs.configure_logging: levels, the stderr
# handler, token redaction), never by django.setup(): its dictConfig replaced the root's handlers
# on every call with one bound to the sys.stderr of that moment (a test's, closed when it ends).
LOGGING_CONFIG = None
