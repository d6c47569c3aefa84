"""CommuniPute settings: one file, read from the environment (see .env.example)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_int, env_list, env_optional, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("COMMUNIPUTE_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
_INSECURE_DEV_KEY = "insecure-development-key-never-use-in-production"
SECRET_KEY = env_optional("SECRET_KEY") or (_INSECURE_DEV_KEY if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
# The development key and .env.example's placeholder are public: with them anyone could sign
# sessions and CSRF tokens.
if not DEBUG and SECRET_KEY in {_INSECURE_DEV_KEY, "change-me"}:
    raise ImproperlyConfigured("SECRET_KEY is a published placeholder; set a random one")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
# The browser sockets' Origin check (config.sockets) accepts the origins of ALLOWED_HOSTS: a
# wildcard would let any web page open a visitor's job sockets.
if not DEBUG and "*" in ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must name the hosts when DEBUG is off (no '*')")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# Public URL of this server, used in the enrollment command shown to host owners.
PUBLIC_URL = env_str("PUBLIC_URL", "http://127.0.0.1:8000")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "accounts",
    "ledger",
    "ledger.payments",
    "hosts",
    "marketplace",
    "jobs",
    "blobs",
    "demo",
]

MIDDLEWARE = [
    # First: every error under /api/ in the error format, whatever DEBUG is (docs/api.md).
    "config.api_middleware.ApiErrorMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "frontend" / "dist"],
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

# --- Database -------------------------------------------------------------------------------
# Entry points open their own durable transaction (config.transactions), so ATOMIC_REQUESTS
# stays off: a read-only request opens none.
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
# Keep connections open between requests and agent messages: with 0, Channels closes the
# connection after every message and the next one pays a new PostgreSQL connection (most of a
# usage report's time; docs/benchmarks.md). No health checks: they cost a round trip per
# message; a connection that died fails one request or message and is then replaced.
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 600, minimum=0)
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite serialises writers; wait for the lock instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
    # Take the write lock when a transaction begins: a transaction that reads and then writes
    # (every ledger service) would otherwise fail at once with "database is locked" instead of
    # waiting when another writer got in between.
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
IS_POSTGRES = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Redis: channel layer, Celery broker, cache ----------------------------------------------
REDIS_URL = env_optional("REDIS_URL")

if REDIS_URL:
    CHANNEL_LAYERS: dict[str, Any] = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 reads with a 5 s socket timeout by default, which cuts the layer's
            # blocking BZPOPMIN and kills every idle socket with 1011 (channels_redis#422).
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": None}]},
        }
    }
    CACHES: dict[str, Any] = {
        "default": {"BACKEND": "config.cache.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    # One process's memory: only code in daphne's process reaches the sockets (the demo runs its
    # Celery worker there: demo/management/commands/demo_web.py).
    CHANNEL_LAYERS = {"default": {"BACKEND": "config.channel_layers.InProcessChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = env_str(
    "CELERY_BROKER_URL", REDIS_URL or f"sqla+sqlite:///{VAR_DIR / 'celery-broker.sqlite3'}"
)
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Redis broker: a message a dead worker had taken (unacknowledged) is delivered again this long
# after it was delivered (docs/operations.md, "A worker killed mid-task"). Celery's default, 1 h;
# keep it above the longest task and the longest countdown (a payout retry's backoff is at most
# 600 s), or a message still waiting in a live worker is delivered to another one too.
# Redis's option only: the demo's SQLAlchemy broker hands its options to create_engine, which
# refuses an unknown one (the demo's worker would not start).
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {"visibility_timeout": env_int("CELERY_BROKER_VISIBILITY_TIMEOUT", 3600, minimum=1)}
    if CELERY_BROKER_URL.startswith(("redis://", "rediss://"))
    else {}
)
# The first reconciliation runs this long after beat starts (config.celery), then every period.
RECONCILE_FIRST_RUN_SECONDS = env_int("RECONCILE_FIRST_RUN_SECONDS", 60, minimum=0)
# Runs are incremental (the postings since the last one); one is full at least this often, and
# whenever an incremental run finds a problem (docs/ledger.md, "Incremental runs").
RECONCILE_FULL_EVERY_HOURS = env_int("RECONCILE_FULL_EVERY_HOURS", 24, minimum=1)
# How long reconciliation and maturity wait for the transactions still open when they take
# the safe horizon; past it they keep the old one this time (ledger.services.horizon).
RECONCILE_HORIZON_WAIT_SECONDS = env_int("RECONCILE_HORIZON_WAIT_SECONDS", 5, minimum=0)
CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "ledger-reconcile": {
        "task": "ledger.tasks.ledger_reconcile_task",
        "schedule": timedelta(minutes=env_int("RECONCILE_INTERVAL_MINUTES", 15, minimum=1)),
    },
    "jobs-reap": {
        "task": "jobs.tasks.jobs_reap",
        "schedule": timedelta(seconds=env_int("JOB_REAP_INTERVAL_SECONDS", 3, minimum=1)),
    },
    "earnings-mature": {
        "task": "ledger.tasks.earnings_mature_task",
        "schedule": timedelta(seconds=env_int("EARNINGS_MATURE_INTERVAL_SECONDS", 300, minimum=1)),
    },
    "idempotency-records-prune": {
        "task": "accounts.tasks.idempotency_records_prune_task",
        "schedule": timedelta(hours=1),
    },
}

# --- REST API --------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "config.api.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "config.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_str("THROTTLE_ANON", "120/min"),
        "user": env_str("THROTTLE_USER", "1200/min"),
        "auth": env_str("THROTTLE_AUTH", "20/min"),
    },
    # Reverse proxies in front of daphne: throttles take the client address that many hops
    # back in X-Forwarded-For. 0 = REMOTE_ADDR only. (DRF's default, None, would trust a
    # client-supplied X-Forwarded-For and let it dodge the throttles.)
    "NUM_PROXIES": env_int("NUM_PROXIES", 0, minimum=0),
}
# Keyset-paged lists (the catalog: config.api.KeysetPagination) count exactly up to this many
# rows; past it, `count` is the cap and `count_is_capped` is true (docs/api.md, Pagination).
KEYSET_COUNT_CAP = env_int("KEYSET_COUNT_CAP", 1000, minimum=1)

# --- Accounts and API tokens -----------------------------------------------------------------
# Log-in is throttled per target account too (accounts.login): this many failures per sliding
# window, from all addresses together; a browser that logged in to the account before (the
# device cookie) is held only by its address's "auth" rate.
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10, minimum=1)
LOGIN_FAILURE_WINDOW_SECONDS = env_int("LOGIN_FAILURE_WINDOW_SECONDS", 900, minimum=60)
LOGIN_DEVICE_COOKIE = "cp_login_device"
LOGIN_DEVICE_COOKIE_DAYS = env_int("LOGIN_DEVICE_COOKIE_DAYS", 90, minimum=1)
# Tokens issued by sign-up and log-in expire; personal tokens from /api/v1/tokens/ choose.
LOGIN_TOKEN_TTL_SECONDS = env_int("LOGIN_TOKEN_TTL_SECONDS", 30 * 24 * 3600, minimum=60)
# Idempotency-Key records are kept at least this long, then pruned hourly.
IDEMPOTENCY_KEY_TTL_SECONDS = env_int("IDEMPOTENCY_KEY_TTL_SECONDS", 24 * 3600, minimum=60)
# A key still "processing" after this long belongs to a crashed request and may be reclaimed.
IDEMPOTENCY_PROCESSING_TIMEOUT_SECONDS = env_int(
    "IDEMPOTENCY_PROCESSING_TIMEOUT_SECONDS", 300, minimum=1
)

SPECTACULAR_SETTINGS = {
    "TITLE": "CommuniPute API",
    "DESCRIPTION": "A marketplace for idle compute.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Tags and operation ids from the path after /api/v1/: "auth", "tokens", "jobs", ...
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.api.schema_error_responses",
    ],
    # Several models have a "status"; each choice set gets its own component name.
    "ENUM_NAME_OVERRIDES": {
        "PaymentStatusEnum": "ledger.payments.models.PaymentStatus",
        "PayoutStatusEnum": "ledger.payments.models.PayoutStatus",
        # The names they had before job groups reused these field names (the web app's
        # generated types use them).
        "JobPlacementEnum": "jobs.models.PlacementMode",
        "JobCreatePlacementEnum": [("auto", "auto"), ("chosen", "chosen")],
        "JobGroupStatusEnum": "jobs.models.JobGroupStatus",
        "ReleaseStatusEnum": "jobs.models.ReleaseStatus",
    },
    # Served from our own static files: no CDN at runtime.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Money ------------------------------------------------------------------------------------
# Platform fee in basis points of each usage charge (1000 = 10 %).
PLATFORM_FEE_BPS = env_int("PLATFORM_FEE_BPS", 1000, minimum=0)
if PLATFORM_FEE_BPS > 10_000:
    raise ImproperlyConfigured("PLATFORM_FEE_BPS must be at most 10000")
# Seconds a host's pending earnings wait before they can be paid out.
EARNINGS_DISPUTE_WINDOW_SECONDS = env_int(
    "EARNINGS_DISPUTE_WINDOW_SECONDS", 7 * 24 * 3600, minimum=0
)

# Platform revenue is split over this many account rows (by job) so that concurrent charges
# don't all queue on one row lock; see docs/ledger.md.
LEDGER_REVENUE_SHARDS = env_int("LEDGER_REVENUE_SHARDS", 16, minimum=1)
# The reconciliation's job facts and the reports' host names are registered in code by the
# jobs and hosts apps (ledger/providers.py), not configured here.

PAYMENT_PROVIDER = env_str("PAYMENT_PROVIDER", "demo")
DEMO_PAYMENTS_ENABLED = env_bool("DEMO_PAYMENTS_ENABLED", False)
STRIPE_SECRET_KEY = env_optional("STRIPE_SECRET_KEY")
STRIPE_PUBLISHABLE_KEY = env_optional("STRIPE_PUBLISHABLE_KEY")
STRIPE_WEBHOOK_SECRET = env_optional("STRIPE_WEBHOOK_SECRET")
STRIPE_API_BASE = env_optional("STRIPE_API_BASE")
# Events of connected accounts (account.updated) come from a Connect endpoint with its own secret.
STRIPE_CONNECT_WEBHOOK_SECRET = env_optional("STRIPE_CONNECT_WEBHOOK_SECRET")
# The stripe library's own retries of failed requests (same idempotency key each time).
STRIPE_MAX_NETWORK_RETRIES = env_int("STRIPE_MAX_NETWORK_RETRIES", 2, minimum=0)
# Where the web app loads Stripe.js from, lazily, only when a card payment starts.
STRIPE_JS_URL = env_str("STRIPE_JS_URL", "https://js.stripe.com/v3/")
PURCHASE_MIN_MICROS = env_int("PURCHASE_MIN_MICROS", 1_000_000, minimum=1)
PURCHASE_MAX_MICROS = env_int("PURCHASE_MAX_MICROS", 1_000_000_000, minimum=1)
PAYOUT_MIN_MICROS = env_int("PAYOUT_MIN_MICROS", 10_000_000, minimum=1)
# A payout still pending after this long has its transfer queued again (same idempotency key).
PAYOUT_STALLED_AFTER_SECONDS = env_int("PAYOUT_STALLED_AFTER_SECONDS", 3600, minimum=60)
CELERY_BEAT_SCHEDULE["payouts-stalled-retry"] = {
    "task": "ledger.payments.tasks.payouts_stalled_retry_task",
    "schedule": timedelta(seconds=PAYOUT_STALLED_AFTER_SECONDS),
}

# --- Hosts and jobs --------------------------------------------------------------------------
ENROLLMENT_TOKEN_TTL_SECONDS = env_int("ENROLLMENT_TOKEN_TTL_SECONDS", 3600, minimum=60)
# A host's presence (last_seen_at, uptime, the leases of what it runs) is recorded this often:
# by the daphne process that holds its open socket, whether or not the agent talks
# (jobs/heartbeat_batch.py). An older agent heartbeats this often; a newer one (it reads
# heartbeat_idle_seconds in the welcome) when its state changes and every
# HOST_HEARTBEAT_IDLE_SECONDS. A half-open socket is dropped by daphne's websocket pings
# (--ping-interval, --ping-timeout; docs/operations.md).
HOST_HEARTBEAT_SECONDS = env_int("HOST_HEARTBEAT_SECONDS", 10, minimum=1)
HOST_HEARTBEAT_IDLE_SECONDS = env_int("HOST_HEARTBEAT_IDLE_SECONDS", 300, minimum=1)
HOST_OFFLINE_AFTER_SECONDS = env_int("HOST_OFFLINE_AFTER_SECONDS", 45, minimum=2)
# Each daphne process records the heartbeats it received this often, all hosts in one flush
# (jobs/heartbeat_batch.py): presence and lease renewals lag a heartbeat by at most this.
HOST_HEARTBEAT_FLUSH_MS = env_int("HOST_HEARTBEAT_FLUSH_MS", 1000, minimum=10)
# How often agents report cumulative usage of running jobs (sent to them in `welcome`).
HOST_USAGE_REPORT_SECONDS = env_int("HOST_USAGE_REPORT_SECONDS", 5, minimum=1)
# A host whose agent sent this many impossible or late reports (refused usage, a cancel or a
# timeout ignored) is quarantined: no offers until staff lift it (docs/hosts.md).
HOST_QUARANTINE_FLAGS = env_int("HOST_QUARANTINE_FLAGS", 5, minimum=1)
# This many host faults in a row (no job finished between) quarantine a host until its agent
# says hello again reporting ready; a job runs elsewhere after each, and fails after
# JOB_MAX_HOST_FAULTS.
HOST_FAULT_QUARANTINE = env_int("HOST_FAULT_QUARANTINE", 3, minimum=1)
JOB_MAX_HOST_FAULTS = env_int("JOB_MAX_HOST_FAULTS", 5, minimum=1)
# After a host said busy (or let an offer expire), it is offered that job again only after
# this many seconds; a busy host is never held against the job.
JOB_REOFFER_AFTER_SECONDS = env_int("JOB_REOFFER_AFTER_SECONDS", 10, minimum=1)
# A host whose agent runs jobs without isolation takes only its owner's jobs, unless this is
# set: the local demo only (scripts/run_demo.py), where every user is the person trying it.
PLACEMENT_ALLOW_UNISOLATED_HOSTS = env_bool("PLACEMENT_ALLOW_UNISOLATED_HOSTS", False)
# A dropped agent socket: what the host runs is lost this long after, unless it says hello.
HOST_DISCONNECT_GRACE_SECONDS = env_int("HOST_DISCONNECT_GRACE_SECONDS", 20, minimum=1)
# The reaper: hosts silent for HOST_OFFLINE_AFTER_SECONDS are marked offline.
CELERY_BEAT_SCHEDULE["hosts-mark-offline"] = {
    "task": "hosts.tasks.hosts_mark_offline_task",
    "schedule": timedelta(seconds=max(1, HOST_OFFLINE_AFTER_SECONDS // 3)),
}
JOB_OFFER_TTL_SECONDS = env_int("JOB_OFFER_TTL_SECONDS", 10, minimum=1)
JOB_LEASE_SECONDS = env_int("JOB_LEASE_SECONDS", 60, minimum=2)
JOB_MAX_ATTEMPTS = env_int("JOB_MAX_ATTEMPTS", 3, minimum=1)
# A queued job that no host takes within this long fails ("no host took the job").
JOB_QUEUE_TIMEOUT_SECONDS = env_int("JOB_QUEUE_TIMEOUT_SECONDS", 600, minimum=1)
# Job files travel inside the job.offer message (agent/protocol.py caps it at 256 KiB, and
# base64 adds a third), so their total stays well under that.
JOB_FILE_MAX_BYTES = env_int("JOB_FILE_MAX_BYTES", 160 * 1024, minimum=1)
JOB_FILES_MAX_BYTES = env_int("JOB_FILES_MAX_BYTES", 160 * 1024, minimum=1)
JOB_CODE_MAX_BYTES = env_int("JOB_CODE_MAX_BYTES", 128 * 1024, minimum=1)
JOB_FILES_MAX_COUNT = env_int("JOB_FILES_MAX_COUNT", 100, minimum=1)
JOB_ARCHIVE_MAX_BYTES = env_int("JOB_ARCHIVE_MAX_BYTES", 256 * 1024, minimum=1)
JOB_REQUIREMENTS_MAX_COUNT = env_int("JOB_REQUIREMENTS_MAX_COUNT", 50, minimum=0)
# Inputs (docs/jobs.md, "Inputs"): blobs the owner holds or https URLs, fetched by the agent
# into /inputs, at most this many and this many bytes in all (store sizes and stated URL sizes).
JOB_INPUTS_MAX_COUNT = env_int("JOB_INPUTS_MAX_COUNT", 1000, minimum=0)
JOB_INPUTS_MAX_BYTES = env_int("JOB_INPUTS_MAX_BYTES", 5 * 1024**3, minimum=0)
# Each job's writable file systems (docs/jobs.md, "Disk"): defaults for /work, /outputs and
# /tmp in MB, and the most any one of them may ask for.
JOB_WORK_MB = env_int("JOB_WORK_MB", 1024, minimum=1)
JOB_OUTPUTS_MB = env_int("JOB_OUTPUTS_MB", 1024, minimum=1)
JOB_TMP_MB = env_int("JOB_TMP_MB", 256, minimum=1)
JOB_DISK_MB_MAX = env_int("JOB_DISK_MB_MAX", 1024 * 1024, minimum=1)
# The longest timeout a job may ask for. Earnings mature a dispute window after their job
# settled (docs/ledger.md), so the two are independent.
JOB_MAX_TIMEOUT_SECONDS = env_int("JOB_MAX_TIMEOUT_SECONDS", 3 * 24 * 3600, minimum=60)
# After a cancel, or past started_at + timeout_seconds, this much more is billable (the agent
# sends SIGTERM, then SIGKILL 10 s later, then reports); past it nothing is, and the reaper
# ends an attempt the host did not stop (docs/metering.md).
JOB_STOP_GRACE_SECONDS = env_int("JOB_STOP_GRACE_SECONDS", 15, minimum=1)
# An accepted attempt must be running within this long (the agent's install step times out
# at 900 s); a lease later the reaper ends one still accepted/preparing as the host's loss.
JOB_PREPARE_MAX_SECONDS = env_int("JOB_PREPARE_MAX_SECONDS", 900, minimum=1)
# A finished attempt takes log chunks and its declared outputs this much longer, then no more.
JOB_LATE_UPLOAD_SECONDS = env_int("JOB_LATE_UPLOAD_SECONDS", 120, minimum=1)
# An approved release of a pool output (docs/pools.md) not carried to the central store this
# long after it was sent to a pool host is sent again, to the next online host of the pool.
JOB_RELEASE_RESEND_SECONDS = env_int("JOB_RELEASE_RESEND_SECONDS", 60, minimum=1)
# The stored log of one attempt keeps at most JOB_LOG_MAX_BYTES bytes: its head and its tail.
JOB_LOG_MAX_BYTES = env_int("JOB_LOG_MAX_BYTES", 10 * 1024 * 1024, minimum=1024)
# Of those, the first JOB_LOG_HEAD_BYTES (at most half) are always kept; the rest is the tail.
JOB_LOG_HEAD_BYTES = env_int("JOB_LOG_HEAD_BYTES", 1024 * 1024, minimum=0)
JOB_OUTPUT_MAX_BYTES = env_int("JOB_OUTPUT_MAX_BYTES", 100 * 1024 * 1024, minimum=1)
# Request bodies past these are 413 before they are read (config.body_limits): a job submit
# (code, files and archive, base64 and JSON escaping included), and any other API request.
# A tus PATCH (uploads, outputs) is capped at BLOB_UPLOAD_CHUNK_MAX_BYTES instead.
JOB_SUBMIT_MAX_BODY_BYTES = env_int("JOB_SUBMIT_MAX_BODY_BYTES", 4 * 1024 * 1024, minimum=1024)
REQUEST_MAX_BODY_BYTES = env_int("REQUEST_MAX_BODY_BYTES", 10 * 1024 * 1024, minimum=1024)
# Django's own cap on a body it reads into memory (not files), behind the ASGI check: the same
# limit, so a body the ASGI check let through is never refused by Django's smaller default
# (2.5 MiB), and one over it (under WSGI or the test client) is 413 too (config.api_middleware).
DATA_UPLOAD_MAX_MEMORY_SIZE = REQUEST_MAX_BODY_BYTES
JOB_OUTPUTS_MAX_BYTES = env_int("JOB_OUTPUTS_MAX_BYTES", 500 * 1024 * 1024, minimum=1)
JOB_OUTPUTS_MAX_COUNT = env_int("JOB_OUTPUTS_MAX_COUNT", 100, minimum=1)
# Job groups (docs/jobs.md, "Job groups"): the most tasks in one group, the most of them that
# may hold their cap at once, the largest argument one task reads as /inputs/task.json (bigger
# data goes as an input), and the most retries (host faults, errors) a group may ask for.
JOB_GROUP_MAX_TASKS = env_int("JOB_GROUP_MAX_TASKS", 10_000, minimum=1)
JOB_GROUP_MAX_PARALLEL = env_int("JOB_GROUP_MAX_PARALLEL", 500, minimum=1)
JOB_GROUP_ARGUMENT_MAX_BYTES = env_int("JOB_GROUP_ARGUMENT_MAX_BYTES", 64 * 1024, minimum=16)
JOB_GROUP_MAX_RETRIES = env_int("JOB_GROUP_MAX_RETRIES", 10, minimum=0)
# Tasks a group starts per transaction: its create starts the first batch (and is refused as a
# whole if their holds are), a background task (jobs.tasks.group_start) the rest of its first.
JOB_GROUP_START_BATCH = env_int("JOB_GROUP_START_BATCH", 20, minimum=1)
# Metering (docs/metering.md): usage reports are stored and acknowledged at once; their charges
# are posted for all running jobs together every METERING_POST_INTERVAL_SECONDS.
METERING_POST_INTERVAL_SECONDS = env_int("METERING_POST_INTERVAL_SECONDS", 1, minimum=1)
METERING_POST_BATCH = env_int("METERING_POST_BATCH", 1000, minimum=1)
CELERY_BEAT_SCHEDULE["metering-charges-post"] = {
    "task": "jobs.tasks.usage_charges_post",
    "schedule": timedelta(seconds=METERING_POST_INTERVAL_SECONDS),
    # A tick that waited longer than the next one is worth nothing: the next covers it.
    "options": {"expires": METERING_POST_INTERVAL_SECONDS},
}

# --- Static files and the web app ------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# The built web app (`make frontend`): its assets are static files under /static/assets/, and
# config/spa.py serves its index.html for app routes.
FRONTEND_DIST_DIR = Path(env_optional("FRONTEND_DIST_DIR") or BASE_DIR / "frontend" / "dist")
STATICFILES_DIRS = [d for d in [FRONTEND_DIST_DIR] if d.is_dir()]
# Vite names assets with a content hash: browsers may cache them forever.
WHITENOISE_IMMUTABLE_FILE_TEST = r"^.+/assets/.+-[0-9A-Za-z_-]{8,}\.[0-9a-z]+$"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))

# --- The data plane (docs/data.md) -----------------------------------------------------------
# How long a signed blob URL (an agent's fetch, a download) stays valid.
BLOB_URL_TTL_SECONDS = env_int("BLOB_URL_TTL_SECONDS", 6 * 3600, minimum=60)
# Where blob bytes live (blobs/store.py): "filesystem" (BLOB_DIR, the default) or "s3" (any
# S3-compatible store; credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY only, read by
# boto3 from the environment, never from a file here).
BLOB_STORE = env_str("BLOB_STORE", "filesystem")
if BLOB_STORE not in {"filesystem", "s3"}:
    raise ImproperlyConfigured(f"BLOB_STORE must be filesystem or s3, not {BLOB_STORE!r}")
BLOB_DIR = Path(env_str("BLOB_DIR", str(VAR_DIR / "blobs")))
BLOB_S3_BUCKET = env_str("BLOB_S3_BUCKET", "")
BLOB_S3_ENDPOINT_URL = env_optional("BLOB_S3_ENDPOINT_URL")
BLOB_S3_REGION = env_optional("BLOB_S3_REGION")
if BLOB_STORE == "s3" and not BLOB_S3_BUCKET:
    raise ImproperlyConfigured("BLOB_STORE=s3 needs BLOB_S3_BUCKET")
# One upload (and so one blob) at most; a PATCH body at most (daphne hands a whole body to the
# application at once, so this bounds the memory one PATCH can take: docs/data.md, "Memory").
BLOB_UPLOAD_MAX_BYTES = env_int("BLOB_UPLOAD_MAX_BYTES", 5 * 1024**3, minimum=1)
BLOB_UPLOAD_CHUNK_MAX_BYTES = env_int("BLOB_UPLOAD_CHUNK_MAX_BYTES", 8 * 1024**2, minimum=1024)
# A user's held bytes plus the bytes of their uploads under way.
BLOB_QUOTA_BYTES = env_int("BLOB_QUOTA_BYTES", 20 * 1024**3, minimum=0)
# An upload not finished this long after it was created is aborted with its parts.
BLOB_UPLOAD_EXPIRY_SECONDS = env_int("BLOB_UPLOAD_EXPIRY_SECONDS", 24 * 3600, minimum=60)
# A holding no job used for this long goes (unless an unfinished job uses it); a blob nobody
# holds, no unfinished job uses and no upload is sending is deleted from the store.
BLOB_RETENTION_SECONDS = env_int("BLOB_RETENTION_SECONDS", 7 * 24 * 3600, minimum=60)
BLOB_COLLECT_INTERVAL_SECONDS = env_int("BLOB_COLLECT_INTERVAL_SECONDS", 3600, minimum=10)
CELERY_BEAT_SCHEDULE["blobs-collect"] = {
    "task": "blobs.tasks.blobs_collect_task",
    "schedule": timedelta(seconds=BLOB_COLLECT_INTERVAL_SECONDS),
}
_blob_storage: dict[str, Any]
if BLOB_STORE == "s3":
    _blob_storage = {
        # S3Storage with an 8 MiB, single-threaded multipart transfer (blobs/s3.py).
        "BACKEND": "blobs.s3.BlobS3Storage",
        "OPTIONS": {
            "bucket_name": BLOB_S3_BUCKET,
            "endpoint_url": BLOB_S3_ENDPOINT_URL,
            "region_name": BLOB_S3_REGION,
            "file_overwrite": True,
            "default_acl": None,
            "querystring_auth": True,
            "querystring_expire": BLOB_URL_TTL_SECONDS,
        },
    }
else:
    _blob_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        # A part resent after a crash replaces the one of the same index.
        "OPTIONS": {"location": str(BLOB_DIR), "allow_overwrite": True},
    }
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "blobs": _blob_storage,
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
# HTTPS. Browsers honour HSTS only from HTTPS responses, so the default costs a plain-HTTP
# deployment nothing; sub-domains and preloading are the domain owner's call.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 365 * 24 * 3600, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Off by default: behind a TLS-terminating proxy that doesn't say so (below), it would loop.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Only behind a proxy that sets X-Forwarded-Proto itself (and drops the client's): otherwise a
# client could claim HTTPS.
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
