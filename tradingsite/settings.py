"""Settings for the trading platform: one module, driven by the environment.

Embedded default (nothing set): SQLite file, in-memory Celery broker and channel
layer, paper exchange. Production: ``TRADING_ENV=production`` plus
``DATABASE_URL``, ``REDIS_URL`` and ``SECRET_KEY``.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import dj_database_url

from tradingsite.env import (
    SettingsError,
    env_bool,
    env_choice,
    env_int,
    env_list,
    env_str,
    env_url,
    install_one_line_errors,
    mask_url,
)

install_one_line_errors()  # a wrong variable ends start-up with one line, not a traceback

BASE_DIR = Path(__file__).resolve().parent.parent

TRADING_ENV = env_choice("TRADING_ENV", "development", ("development", "production", "test"))
PRODUCTION = TRADING_ENV == "production"

STATE_DIR = Path(env_str("STATE_DIR", str(BASE_DIR / "var" / "state")))
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))


# DEBUG first: of two mistakes in a production environment it is the dangerous one.
DEBUG = env_bool("DEBUG", False)
if PRODUCTION and DEBUG:
    # A debug page shows settings, source and local variables to whoever triggers an error.
    raise SettingsError("DEBUG: must be off when TRADING_ENV=production (unset DEBUG or set "
                        "DEBUG=0)")


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key:
        return key
    if PRODUCTION:
        raise SettingsError(
            "SECRET_KEY: required when TRADING_ENV=production (set SECRET_KEY or SECRET_KEY_FILE)"
        )
    # Development: generate once and keep it under var/ (ignored by git).
    key_file = VAR_DIR / "secret_key"
    try:
        return key_file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(50)
        key_file.write_text(key, encoding="utf-8")
        key_file.chmod(0o600)
        return key


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",  # must come first: its runserver serves HTTP and websockets
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "channels",
    "tradingsite",
    "execution",
    "lifecycle",
    "risk",
    "analytics",
    "guard",
    "operations",
    "bots",  # on top: it may use every app above; none of them imports it
    "notifications",  # on top: it listens to every app, none imports it
]

MIDDLEWARE = [
    "tradingsite.api_errors.JsonErrorsMiddleware",  # outermost: every /api/ error is JSON
    "django.middleware.security.SecurityMiddleware",
    "tradingsite.security.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "tradingsite.urls"
WSGI_APPLICATION = "tradingsite.wsgi.application"
ASGI_APPLICATION = "tradingsite.asgi.application"

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

# --- Database -------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}")
try:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
except Exception as exc:  # dj-database-url raises several types for a bad URL
    raise SettingsError(f"DATABASE_URL: cannot parse {mask_url(DATABASE_URL)!r}: "
                        f"{mask_url(str(exc))}") from exc
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # Several threads (ASGI server, in-process worker and beat) share one file.
    DATABASES["default"]["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE"}
elif env_bool("DATABASE_POOL", False):
    # A connection pool per process (psycopg_pool), on by default in the ASGI server
    # (tradingsite/asgi.py): there every request runs in a thread of its own, so a
    # persistent per-thread connection would be opened and closed for every request.
    # A checked-out connection is checked with a round trip, so a restarted database
    # costs one reconnect, not an error.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1, "max_size": env_int("DATABASE_POOL_SIZE", 10), "timeout": 10}
else:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: Celery broker and Channels layer ------------------------------
REDIS_URL = env_str("REDIS_URL", "")

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": env_str("CHANNELS_PREFIX", "asgi")},
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CELERY_BROKER_URL = "memory://localhost/"
    CELERY_BROKER_TRANSPORT_OPTIONS = {"polling_interval": 0.1}

CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# Celery's Django fixup closes every database connection before and after each task
# unless this is set (and, in a prefork child, the whole pool): a reconnect per task.
# Connections are recycled after this many tasks instead; a broken one is replaced by
# the pool's check.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Beat writes each periodic task's last_run_at as soon as it sends it (default: every 3
# minutes): /healthz and the watchdog read beat's liveness from those rows.
CELERY_BEAT_SYNC_EVERY = 1
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Route an exchange account's order work to its own queue: {"bybit-main": "orders.bybit"}
try:
    EXCHANGE_QUEUES: dict[str, str] = json.loads(env_str("EXCHANGE_QUEUES", "{}"))
except json.JSONDecodeError as exc:
    raise SettingsError(f"EXCHANGE_QUEUES: not valid JSON: {exc}") from exc

# --- Live-trading configuration (see tradingsite/live_config.py) ----------
# JSON (the DESIGN.md `liveTrading` form, camelCase or snake_case), inline or a file path.
LIVE_TRADING = env_str("LIVE_TRADING_CONFIG", "")
# Written by `manage.py live_config --import FILE`; read at start-up when present.
LIVE_TRADING_FILE = Path(env_str("LIVE_TRADING_FILE", str(VAR_DIR / "live_trading.json")))

# --- Auth, API -------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/admin/login/"
LOGIN_REDIRECT_URL = "/"

REST_FRAMEWORK = {
    # Token first: an anonymous or bad-token request then gets 401 with
    # "WWW-Authenticate: Token" (session-only clients see the same 401).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tradingsite.tokens.DigestTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["tradingsite.permissions.IsStaffOrReadOnly"],
    # Strict input (tradingsite.api_input): JSON bodies only, bounded; JSON answers only.
    "DEFAULT_PARSER_CLASSES": ["tradingsite.api_input.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "URL_FORMAT_OVERRIDE": None,  # ?format= is no parameter of ours (400 like any unknown)
    "DEFAULT_METADATA_CLASS": None,  # OPTIONS is not in the schema: 405 like any other
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "tradingsite.api_input.StrictOrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "tradingsite.api_input.StrictPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "tradingsite.api_schema.ApiSchema",
    "EXCEPTION_HANDLER": "tradingsite.api_errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Trading platform API",
    "DESCRIPTION": "Supervision of live crypto positions: lifecycle, risk, execution, analytics.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # The schema and its docs describe a private API: same authentication as the API.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "tradingsite.api_schema.add_error_responses",
    ],
    # One schema name per choice set shared by several apps' serializers.
    "ENUM_NAME_OVERRIDES": {
        "PositionStateEnum": "lifecycle.models.PositionState",
        "PositionSideEnum": "lifecycle.models.PositionSide",
        "DangerLevelEnum": "lifecycle.models.DangerLevel",
        "PositionSourceEnum": "lifecycle.models.PositionSource",
        "CloseReasonEnum": "tradingsite.domain.CloseReason",
        "OrderSideEnum": "execution.models.OrderSide",
        "OrderTypeEnum": "execution.models.OrderType",
        "OrderPurposeEnum": "execution.models.OrderPurpose",
        "OrderStatusEnum": "execution.models.OrderStatus",
        "ActionKindEnum": "execution.models.ActionKind",
        "ActionStateEnum": "execution.models.ActionState",
        "AlertSeverityEnum": "risk.models.AlertSeverity",
        "TradingStateEnum": "guard.models.TradingState",
        "ScopeKindEnum": "guard.models.ScopeKind",
        "TripCodeEnum": "guard.models.TripCode",
        "ReasonCodeEnum": "guard.models.ReasonCode",
        "BotKindEnum": "bots.models.BotKind",
        "BotStateEnum": "bots.models.BotState",
    },
}

# --- Security ----------------------------------------------------------------
# Secure defaults in production, each overridable (README, "Production settings").
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", PRODUCTION)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", PRODUCTION)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", PRODUCTION)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if PRODUCTION else 0)
if SECURE_HSTS_SECONDS < 0:
    raise SettingsError(f"SECURE_HSTS_SECONDS: expected 0 or more, got {SECURE_HSTS_SECONDS}")
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", PRODUCTION)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", PRODUCTION)


def _proxy_ssl_header() -> tuple[str, str] | None:
    """``SECURE_PROXY_SSL_HEADER=X-Forwarded-Proto:https``: trust that header of the proxy."""
    raw = env_str("SECURE_PROXY_SSL_HEADER", "").strip()
    if not raw:
        return None  # no proxy trusted: a client cannot claim https with a header
    name, sep, value = raw.partition(":")
    if not sep or not name.strip() or not value.strip() or " " in name.strip():
        raise SettingsError(f"SECURE_PROXY_SSL_HEADER: expected Header-Name:value, e.g. "
                            f"X-Forwarded-Proto:https, got {raw!r}")
    return "HTTP_" + name.strip().upper().replace("-", "_"), value.strip()


SECURE_PROXY_SSL_HEADER = _proxy_ssl_header()
# A watchdog on the same host polls /healthz over plain HTTP: the one path never redirected.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
# Connection URLs and credentials never appear on an error page or in `diffsettings`.
DEFAULT_EXCEPTION_REPORTER_FILTER = "tradingsite.security.MaskingExceptionReporterFilter"
# Content-Security-Policy (tradingsite/security.py): no inline script anywhere; the admin and
# the API docs keep inline styles (their widgets set them).
CSP_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
              "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
              "frame-ancestors 'none'; form-action 'self'")
CSP_INLINE_STYLE_PATHS = ("/admin/", "/api/docs/", "/api/redoc/")

# --- I18N, time ------------------------------------------------------------
LANGUAGE_CODE = "en-us"
# 24-hour times and ISO dates everywhere (tradingsite/formats/en/formats.py).
FORMAT_MODULE_PATH = ["tradingsite.formats"]
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Static files ------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# --- Paper exchange / embedded market feed --------------------------------
PAPER_CANDLE_DIR = BASE_DIR / "execution" / "data" / "candles"
# ccxt exchanges: request timeout (ms) and ccxt's own client-side rate limiter.
EXCHANGE_TIMEOUT_MS = env_int("EXCHANGE_TIMEOUT_MS", 10000)
EXCHANGE_ENABLE_RATE_LIMIT = env_bool("EXCHANGE_ENABLE_RATE_LIMIT", True)

# --- Logging -----------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(processName)s: %(message)s"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"},
                 "null": {"class": "logging.NullHandler"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "daphne": {"level": "WARNING"},
        "celery": {"level": "WARNING"},
        # Apprise logs URLs with their tokens: its lines are captured per delivery and
        # stored masked (notifications/transport.py), never printed as they are.
        "apprise": {"handlers": ["null"], "propagate": False},
    },
}

RUNPLATFORM_HOST = env_str("RUNPLATFORM_HOST", "127.0.0.1")
RUNPLATFORM_PORT = env_int("RUNPLATFORM_PORT", 8000)
# Hooks of the embedded platform (tradingsite/runtime.py), as dotted paths: startup and
# shutdown hooks ``def hook(platform) -> None`` run before start and on SIGINT/SIGTERM;
# stop checks ``def check(platform) -> str`` are polled, a non-empty reason stops it.
# Recovery on start and the graceful shutdown sequence: operations/recovery.py, shutdown.py.
PLATFORM_STARTUP_HOOKS: list[str] = ["operations.recovery.platform_recover"]
PLATFORM_SHUTDOWN_HOOKS: list[str] = ["operations.shutdown.platform_shutdown"]
PLATFORM_STOP_CHECKS: list[str] = ["operations.shutdown.shutdown_requested"]
# Long-lived services of a trading process (runplatform with a worker or beat, and every
# production Celery worker), as dotted paths to classes with start/stop/is_alive: the
# account streams (one owner per account across processes) and the deadline scheduler.
PLATFORM_SERVICES: list[str] = ["execution.streams.StreamSupervisor",
                                "lifecycle.deadlines.DeadlineScheduler"]
RUNPLATFORM_WORKER_THREADS = env_int("RUNPLATFORM_WORKER_THREADS", 4)

# --- Notifications and the watchdog (notifications/, README "Notifications and the watchdog")
# Where traders open the platform: messages link to SITE_URL/positions/<id>/.
SITE_URL = env_url("SITE_URL")
# Comma-separated Apprise URLs, each optionally prefixed with options, e.g.
# "severity>=WARNING:tgram://{env:NOTIFY_TELEGRAM_TOKEN}/12345". A secret goes into a
# NOTIFY_* variable and the URL names it as {env:NOTIFY_…}. Checked at start-up (system
# check notifications.E001, the item and the mistake named, the URL never shown).
NOTIFY_URLS = env_str("NOTIFY_URLS", "")
# The watchdog speaks through these (default: NOTIFY_URLS), never through the database.
WATCHDOG_NOTIFY_URLS = env_str("WATCHDOG_NOTIFY_URLS", "")
# What `manage.py watchdog` polls (default: SITE_URL/healthz, else this host's runplatform).
WATCHDOG_URL = env_url("WATCHDOG_URL")
# `runplatform` runs a watchdog thread of its own (it cannot report its own process dying).
WATCHDOG_EMBEDDED = env_bool("WATCHDOG_EMBEDDED", True)
# /healthz components, in order: name → dotted path of ``def probe(timeout: float) -> Probe``.
HEALTH_PROBES: dict[str, str] = {
    "database": "notifications.health.database_probe",
    "broker": "notifications.health.broker_probe",
    "beat": "notifications.health.beat_probe",
    "workers": "notifications.health.worker_probe",
    "account_streams": "notifications.health.account_streams_probe",
}
