"""Combo's settings: embedded defaults that work with no variables at all.

Production differs only by environment variables (DATABASE_URL, REDIS_URL,
SECRET_KEY, ALLOWED_HOSTS, ...), all read here through combo.env. There is no
other settings file to find.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url

from combo import dbpool
from combo.env import envbool, envchoice, envfloat, envint, envlist, envnetworks, envsecret, envstr

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(envstr("COMBO_DATA_DIR", str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    """SECRET_KEY from the environment, else generated once into the data dir."""
    key = envsecret("SECRET_KEY")
    if key:
        return key
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = envbool("DEBUG", False)
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["*"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])
PORT = envint("PORT", 9380, minimum=1)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    # Before django_tasks_db: its `db_worker` command is Combo's (combo/management/commands/db_worker.py).
    "combo",
    "django_tasks",
    "django_tasks_db",
    # Listed for its system checks (a cache it can count in); Combo calls its core
    # from combo.ratelimit rather than using its decorator.
    "django_ratelimit",
    "accounts",
    "agents",
    "integrations",
]

MIDDLEWARE = [
    "combo.api.middleware.RequestIdMiddleware",
    # Outside the envelope middleware, so the X-RateLimit-* headers land on the
    # final response even when that one replaces it.
    "combo.api.throttling.RateLimitHeadersMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on the console, admin and Swagger UI pages.
    "combo.security.ContentSecurityPolicyMiddleware",
    # Serves /static/ from the collected folder with DEBUG off; production puts
    # nginx in front for it (docs/deploy.md).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "combo.api.middleware.ApiEnvelopeMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A bare 405 on a console page becomes a page in the console's layout.
    "combo.errorpages.ConsoleErrorPageMiddleware",
]

ROOT_URLCONF = "combo.urls"
WSGI_APPLICATION = "combo.wsgi.application"
ASGI_APPLICATION = "combo.asgi.application"
AUTH_USER_MODEL = "accounts.User"

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
                "combo.navigation.console_nav",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------
# SQLite in the data dir by default, tuned for concurrency: WAL lets readers run
# beside the writer, and the busy timeout waits for the write lock instead of
# failing with "database is locked"; IMMEDIATE takes the write lock at BEGIN so
# a read-then-write transaction cannot deadlock on lock upgrade.
DATABASE_URL = envstr("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'combo.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # psycopg 3's pool (Django 5.1+): many streams share a few connections.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        # libpq's connect_timeout, for every connection (the pool's and start-up's): a host that
        # drops packets, or an address that accepts and never answers, is given up on after this
        # long instead of psycopg's 130 s. A `connect_timeout` in DATABASE_URL's query wins, as
        # do its other libpq parameters (sslmode...).
        "connect_timeout": envint("DB_CONNECT_TIMEOUT", 5, minimum=2),
        **DATABASES["default"].get("OPTIONS", {}),
        "pool": {
            "min_size": envint("DB_POOL_MIN", 2, minimum=0),
            "max_size": envint("DB_POOL_MAX", 20, minimum=1),
            "timeout": envfloat("DB_POOL_TIMEOUT", 10.0),
            # Back within about a second of the database's return, asking it about once a
            # second while it is down and requests wait (combo.dbpool).
            "reconnect_timeout": dbpool.RECONNECT_SECONDS,
            "reconnect_failed": dbpool.reconnect_failed,
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and channel layer -----------------------------------------------
REDIS_URL = envstr("REDIS_URL")
if REDIS_URL:
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.retry import Retry

    # A pooled connection that Redis (or a proxy, a failover) closed fails the
    # first command sent on it: "Connection closed by server". Such a command is
    # sent again once, at once, on a new connection; a Redis that does not answer
    # (a timeout) is not asked twice.
    _REDIS_RETRY = {"retry_on_error": [RedisConnectionError]}
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "SOCKET_CONNECT_TIMEOUT": 1,
                "SOCKET_TIMEOUT": 1,
                "CONNECTION_POOL_KWARGS": {
                    **_REDIS_RETRY, "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
                },
            },
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{
                "address": REDIS_URL,
                **_REDIS_RETRY, "retry": AsyncRetry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            }]},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "combo"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # django-ratelimit refuses a local-memory cache (E003) because it is not
    # shared between processes, and warns (W001) that it does not support it. The
    # embedded default is one process, so its counts are exact there; production
    # sets REDIS_URL (django-redis, the supported backend) and gets both checks back.
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.E003", "django_ratelimit.W001"]

# --- Background tasks -------------------------------------------------------
TASKS = {
    "default": {
        "BACKEND": envstr("COMBO_TASKS_BACKEND", "django_tasks_db.DatabaseBackend"),
    }
}

# --- Auth -------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/console/login/"
LOGIN_REDIRECT_URL = "/console/"
LOGOUT_REDIRECT_URL = "/console/login/"
# Self sign-up on the console's sign-in page. Off: users come from
# `createsuperuser` or an operator in Django admin.
COMBO_ALLOW_SIGNUP = envbool("COMBO_ALLOW_SIGNUP", False)
# Lifetime of the access token the console issues to its own page JavaScript
# (GET /console/token); short, since it lives in a browser tab's memory.
COMBO_CONSOLE_TOKEN_MINUTES = envint("COMBO_CONSOLE_TOKEN_MINUTES", 5, minimum=1)

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=envint("JWT_ACCESS_MINUTES", 15, minimum=1)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=envint("JWT_REFRESH_DAYS", 7, minimum=1)),
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_FIELD": "id",
    "UPDATE_LAST_LOGIN": False,
}

# --- API --------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["combo.api.authentication.BearerAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["combo.api.envelope.EnvelopeRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "combo.api.parsers.StrictJSONParser",
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "combo.api.pagination.CursorPagination",
    "EXCEPTION_HANDLER": "combo.api.exceptions.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "combo.api.openapi.EnvelopeAutoSchema",
    # The one place /v1 requests are counted (docs/rate-limits.md): DRF runs it after
    # authentication and permissions, so rejected credentials spend no budget.
    "DEFAULT_THROTTLE_CLASSES": ["combo.api.throttling.FamilyRateThrottle"],
    "UNAUTHENTICATED_USER": None,
    "URL_FORMAT_OVERRIDE": None,
}
# Bodies: JSON is capped at 1 MB; uploads have their own limit (knowledge).
API_MAX_JSON_BYTES = envint("API_MAX_JSON_BYTES", 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_JSON_BYTES
# Endpoints that enforce their own body limit and must see what they refuse:
# webhook events record every refused call as a delivery (integrations app).
API_OWN_BODY_LIMIT_PATHS = [r"^/v1/integrations/webhooks/[^/]+/events$"]
API_PAGE_SIZE_DEFAULT = 20
API_PAGE_SIZE_MAX = 100
API_KEY_LAST_USED_RESOLUTION = timedelta(minutes=1)
# How long an API key's row is kept in the cache between requests (accounts.keycache); 0: read it every time.
# On by default only with Redis, the cache every process shares: a revocation then reaches every
# process at once. The in-process cache is one per process, so it stays off there.
API_KEY_CACHE_SECONDS = envint("COMBO_API_KEY_CACHE_SECONDS", 60 if REDIS_URL else 0, minimum=0)

SPECTACULAR_SETTINGS = {
    "TITLE": "Combo API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # No call to swagger.io's online validator: /v1/docs works with no internet.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/v1",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "combo.api.openapi.postprocess_envelope",
    ],
    "SERVERS": [{"url": "/", "description": "This deployment"}],
    # Several models have a "status"; name each enum after its model.
    "ENUM_NAME_OVERRIDES": {
        "WebhookDeliveryStatusEnum": "integrations.models.WebhookDelivery.Status",
    },
}

# --- Rate limits (docs/rate-limits.md) --------------------------------------
# Requests per minute for each family, per API key (JWT: per user; no credential:
# per client IP). An operator may override completions/uploads/default for one
# key in Django admin (ApiKey.*_per_minute).
_DEFAULT_PER_MINUTE = envint("COMBO_RATELIMIT_DEFAULT", 300, minimum=1)
RATE_LIMITS = {
    "completions": envint("COMBO_RATELIMIT_COMPLETIONS", 60, minimum=1),
    "uploads": envint("COMBO_RATELIMIT_UPLOADS", 10, minimum=1),
    "default": _DEFAULT_PER_MINUTE,
    # POST /v1/auth/token, per client IP and per username: password guessing is not free.
    "login": envint("COMBO_RATELIMIT_LOGIN", 10, minimum=1),
    # Inbound webhook calls, per webhook.
    "webhook": envint("COMBO_RATELIMIT_WEBHOOK", _DEFAULT_PER_MINUTE, minimum=1),
    # GET /v1/health, per client IP: probes of many processes from one address fit.
    "health": envint("COMBO_RATELIMIT_HEALTH", 1200, minimum=1),
}
# Reverse proxies whose X-Forwarded-For is believed (IPs or CIDRs). Empty: the
# client IP is the TCP peer, whatever the header says.
TRUSTED_PROXIES = envnetworks("COMBO_TRUSTED_PROXIES", [])
# Cache down: serve without limits and log (true), or answer 503 20003 (false).
RATE_LIMIT_FAIL_OPEN = envbool("COMBO_RATELIMIT_FAIL_OPEN", True)
# After a cache call fails, rate limits and the API-key cache skip the cache for this
# many seconds (as if it failed at once) before trying it again: a Redis that hangs
# would otherwise cost every request its socket timeouts (combo.cachebreaker). 0: off.
COMBO_CACHE_RETRY_SECONDS = envint("COMBO_CACHE_RETRY_SECONDS", 10, minimum=0)
# django-ratelimit's own switch; off means no counting and no X-RateLimit-* headers.
RATELIMIT_ENABLE = envbool("COMBO_RATELIMIT_ENABLED", True)
RATELIMIT_USE_CACHE = "default"

# --- Static files -----------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns about a missing folder before collectstatic
MEDIA_ROOT = DATA_DIR / "media"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Security headers -------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if envbool("BEHIND_TLS_PROXY", False) else None
SESSION_COOKIE_SECURE = envbool("BEHIND_TLS_PROXY", False)
# HSTS and the HTTP->HTTPS redirect are the reverse proxy's (deploy/nginx.conf);
# set these only when Django itself faces browsers over TLS.
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", False)
CSRF_COOKIE_SECURE = envbool("BEHIND_TLS_PROXY", False)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# LOG_FORMAT=json: every log line, daphne's access log's too, is one JSON object
# (combo/logformat.py) for a log pipeline to read; text is for people.
LOG_FORMAT = envchoice("LOG_FORMAT", "text", ("text", "json"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "combo.logformat.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json" if LOG_FORMAT == "json" else "plain"},
    },
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {
        # Django's request logger would print tracebacks for 4xx noise; ours logs 5xx.
        "django.request": {"level": "ERROR", "handlers": ["console"], "propagate": False},
        # httpx logs every request's full URL at INFO; webhook callback URLs (Slack-style)
        # can carry their receiver's token in the path or query.
        "httpx": {"level": "WARNING"},
    },
}

# --- Agents and LLM providers ----------------------------------------------
# With COMBO_LLM_BASE_URL set, the OpenAI-compatible provider "openai" is the
# default; without it, the built-in offline provider answers (no network needed).
COMBO_LLM_BASE_URL = envstr("COMBO_LLM_BASE_URL") or None
COMBO_LLM_API_KEY = envsecret("COMBO_LLM_API_KEY")
COMBO_LLM_MODEL = envstr("COMBO_LLM_MODEL", "gpt-4o-mini")
COMBO_LLM_TIMEOUT = envfloat("COMBO_LLM_TIMEOUT", 60.0)
COMBO_MAX_QUESTION_CHARS = envint("COMBO_MAX_QUESTION_CHARS", 8000, minimum=1)
# Longest answer kept: a model that runs on past it is stopped there (30006).
COMBO_MAX_ANSWER_CHARS = envint("COMBO_MAX_ANSWER_CHARS", 1_000_000, minimum=1)
# Characters of recent session history put in the prompt, newest first.
COMBO_PROMPT_HISTORY_CHARS = envint("COMBO_PROMPT_HISTORY_CHARS", 8000, minimum=0)
# SSE comment heartbeat while the upstream is silent (proxies drop idle streams).
COMBO_SSE_HEARTBEAT_SECONDS = envfloat("COMBO_SSE_HEARTBEAT_SECONDS", 15.0)
# Seconds between the built-in provider's words (0: as fast as possible). Demos
# and the browser tests slow it down to show an answer arriving piece by piece.
COMBO_BUILTIN_STREAM_DELAY = envfloat("COMBO_BUILTIN_STREAM_DELAY", 0.0)

# --- Operations -------------------------------------------------------------
# Threads per server process for ordinary (non-streaming) requests.
COMBO_HTTP_THREADS = envint("COMBO_HTTP_THREADS", 8, minimum=1)
# On SIGTERM, running answers get this long to finish before they are interrupted.
COMBO_SHUTDOWN_GRACE_SECONDS = envfloat("COMBO_SHUTDOWN_GRACE_SECONDS", 10.0)
# An answer still in_progress, or a webhook event's run still running, after
# this long belongs to a process that died (agents.reaper, integrations.services).
COMBO_REAPER_TIMEOUT_SECONDS = envint("COMBO_REAPER_TIMEOUT_SECONDS", 900, minimum=1)
COMBO_REAPER_INTERVAL_SECONDS = envint("COMBO_REAPER_INTERVAL_SECONDS", 60, minimum=1)
# The task queue's records of finished tasks are deleted after this many days
# by the same reaper (combo.taskqueue); 0 keeps them.
COMBO_TASK_RESULTS_KEEP_DAYS = envint("COMBO_TASK_RESULTS_KEEP_DAYS", 14, minimum=0)
# GET /v1/health gives the channel layer's round trip this long before calling it down
# (a hung Redis would otherwise hold the check for channels-redis's 5 s receive).
COMBO_HEALTH_TIMEOUT_SECONDS = envfloat("COMBO_HEALTH_TIMEOUT_SECONDS", 2.0)

# --- Integrations: webhooks (docs/webhooks.md) ------------------------------
# Webhook secrets are stored encrypted (Fernet). The key is derived from this
# value when set, else from SECRET_KEY; secrets encrypted under the SECRET_KEY
# derivation stay readable after an explicit key is introduced.
COMBO_WEBHOOK_ENCRYPTION_KEY = envsecret("COMBO_WEBHOOK_ENCRYPTION_KEY")
# After a rotation the previous secret stays valid this long, so senders can switch.
COMBO_WEBHOOK_SECRET_GRACE_HOURS = envint("COMBO_WEBHOOK_SECRET_GRACE_HOURS", 24, minimum=0)
# Inbound event bodies above this size are refused (413) and recorded.
COMBO_WEBHOOK_MAX_BODY_BYTES = envint("COMBO_WEBHOOK_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
# The timestamped signature form is refused when `t` is further than this from now.
COMBO_WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS = envint("COMBO_WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS", 300, minimum=1)
# A repeated X-Combo-Delivery within this window replays the original result.
COMBO_WEBHOOK_IDEMPOTENCY_HOURS = envint("COMBO_WEBHOOK_IDEMPOTENCY_HOURS", 24, minimum=1)
# Result deliveries: per-attempt timeout, and the pauses before each retry
# (seconds; exponential, capped at 30 min: 7 attempts over about an hour),
# each stretched or shrunk by up to COMBO_WEBHOOK_RETRY_JITTER (a fraction).
COMBO_WEBHOOK_DELIVERY_TIMEOUT = envfloat("COMBO_WEBHOOK_DELIVERY_TIMEOUT", 10.0)
COMBO_WEBHOOK_RETRY_DELAYS = [
    float(value) for value in envlist("COMBO_WEBHOOK_RETRY_DELAYS", ["60", "120", "240", "480", "960", "1800"])
]
COMBO_WEBHOOK_RETRY_JITTER = envfloat("COMBO_WEBHOOK_RETRY_JITTER", 0.2)
# Callback URLs may not reach loopback, private, link-local, reserved or cloud
# metadata addresses, unless the host name or a CIDR containing the address is
# listed here (on-premises receivers), e.g. "ci.internal,10.20.0.0/16".
COMBO_WEBHOOK_ALLOWED_HOSTS = envlist("COMBO_WEBHOOK_ALLOWED_HOSTS", [])
# --- Knowledge: file uploads, ingestion, retrieval --------------------------
# The largest file accepted by POST /v1/combo/files (bytes; 20 MiB by default).
# Checked against Content-Length before the body is read and against the bytes
# actually streamed, so a client that lies about its size is cut off too.
COMBO_MAX_UPLOAD_BYTES = envint("COMBO_MAX_UPLOAD_BYTES", 20 * 1024 * 1024, minimum=1)
# Uploads up to this size stay in memory; larger ones stream to FILE_UPLOAD_TEMP_DIR.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
FILE_UPLOAD_TEMP_DIR = DATA_DIR / "tmp"
FILE_UPLOAD_TEMP_DIR.mkdir(exist_ok=True)
# Chunking: characters per chunk, of which the first ~overlap repeat the end of
# the previous chunk (so a passage across a boundary is found whole).
COMBO_CHUNK_SIZE = envint("COMBO_CHUNK_SIZE", 1200, minimum=100)
COMBO_CHUNK_OVERLAP = envint("COMBO_CHUNK_OVERLAP", 150, minimum=0)
if COMBO_CHUNK_OVERLAP > COMBO_CHUNK_SIZE // 2:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        f"COMBO_CHUNK_OVERLAP ({COMBO_CHUNK_OVERLAP}) must be at most half of COMBO_CHUNK_SIZE ({COMBO_CHUNK_SIZE})"
    )
# Passages a completion retrieves from the agent's ready files.
COMBO_RETRIEVAL_TOP_K = envint("COMBO_RETRIEVAL_TOP_K", 5, minimum=1)
