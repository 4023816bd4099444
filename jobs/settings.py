"""Typed settings, read once from the environment by the entry points.

Nothing here runs at import time: `Settings.from_env()` is called by `service.wsgi`,
`worker.celery_app`, `migrations/env.py` and the launchers, and the result is passed down.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


DEV_PEPPER = "gradtrace-dev-pepper"


def _env(name: str) -> AliasChoices:
    """Accept the bare variable name and the GRADTRACE_-prefixed one."""
    return AliasChoices(name, f"GRADTRACE_{name}")


class Settings(BaseSettings):
    """Every knob of the service, API and worker alike, with safe defaults.

    The defaults are the embedded mode: SQLite and a broker on a separate SQLite file,
    all under `state_dir`, so `make run` needs no server.
    """

    model_config = SettingsConfigDict(
        env_prefix="GRADTRACE_", extra="ignore", frozen=True, populate_by_name=True)

    state_dir: Path = Field(Path(".gradtrace"), validation_alias=_env("STATE_DIR"))
    database_url: str = Field("", validation_alias=_env("DATABASE_URL"))
    broker_url: str = Field("", validation_alias=AliasChoices(
        "CELERY_BROKER_URL", "REDIS_URL", "GRADTRACE_BROKER_URL"))
    storage_dir: Path | None = Field(None, validation_alias=_env("STORAGE_DIR"))
    token_pepper: str = Field(DEV_PEPPER, validation_alias=_env("TOKEN_PEPPER"))
    queue: str = Field("gradtrace", validation_alias=_env("QUEUE"), pattern=r"^[A-Za-z0-9_.-]{1,100}$")
    port: int = Field(8000, validation_alias=AliasChoices("PORT", "GRADTRACE_PORT"))
    debug: bool = False

    # Worker behaviour.
    metrics_flush_seconds: float = 0.5
    # Most jobs flush by time; this bounds the fastest (XOR: 10,000+ epochs/s), and a
    # flush's memory and statement size (5000 records of 32 layers hold about 11 MiB, and
    # their rows as arrays about 9 MiB). At 500 such a job flushed every 30-50 ms, each
    # flush competing with training (bench/job_phases.py).
    metrics_flush_rows: int = 5000
    checkpoint_interval_s: float = 30.0
    lease_ttl_s: float = 60.0
    heartbeat_s: float = 5.0
    max_attempts: int = 3
    max_runtime_s: float = 24 * 3600.0
    blas_threads: int = 1

    # API: database connections each process keeps open: one per thread and two spare for
    # a request that holds a second one (its session and a version check). Under gunicorn,
    # service/gunicorn_conf.py sets it to the process's threads + 2; this default is for
    # other servers. With SQLAlchemy's default of 5, the threads of a busy process opened
    # and closed a PostgreSQL connection per request.
    api_db_pool_size: int = Field(10, ge=1)

    # Request and resource limits (each is refused with an error naming it).
    max_request_bytes: int = 32 * 1024 * 1024
    max_dataset_cells: int = 20_000_000
    max_layers: int = 32
    max_units: int = 4096
    max_parameters: int = 10_000_000
    max_epochs: int = 100_000
    max_batch_size: int = 65_536
    max_cost: float = 1e13
    max_active_jobs_per_user: int = 20
    max_storage_bytes_per_user: int = 2 * 1024**3
    max_metric_points: int = 1_000_000

    # Fault injection for the reliability suite (test-only; docs/reliability.md): "",
    # "after_commit_before_publish" (the API raises after the commit, before the publish)
    # or "kill_worker_on_job:<name prefix>" (the worker os._exit()s when it starts a job
    # whose name starts with the prefix).
    fault_injection: str = ""

    # Reliability (docs/reliability.md has the reason for each value).
    reaper_interval_s: float = Field(15.0, gt=0)
    requeue_queued_after_s: float = Field(300.0, gt=0)
    checkpoint_storage: Literal["database", "folder"] = "database"
    visibility_timeout_s: float = Field(600.0, gt=0)

    # Hardening (issue 6). The rate limit is per authenticated user (per address before
    # authentication), in the `limits` notation ("3000 per minute"); its store must be
    # shared by all API processes, so it defaults to the Redis broker and is memory://
    # only otherwise.
    rate_limit: str = "3000 per minute"
    auth_failure_rate_limit: str = "60 per minute"
    rate_limit_storage_uri: str = ""
    # Origins allowed to call the API from a browser; empty means CORS closed.
    cors_origins: tuple[str, ...] = ()
    max_form_parts: int = 20

    # Live event stream (issue 7): how often the stream polls the database, how long it
    # may stay silent before a keep-alive comment, and when it ends so no proxy holds it
    # forever (clients reconnect with Last-Event-ID).
    events_poll_s: float = Field(0.5, gt=0)
    events_keepalive_s: float = Field(15.0, gt=0)
    events_max_s: float = Field(3600.0, gt=0)
    # Polled reads (one job, its metrics since an epoch) are served again from a
    # per-process cache while the job row is unchanged, for at most this long
    # (service/poll_cache.py); 0 turns the cache off.
    poll_cache_seconds: float = Field(5.0, ge=0, le=60)

    @model_validator(mode="after")
    def _fill_embedded_defaults(self) -> "Settings":
        state = self.state_dir.resolve()
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{state / 'gradtrace.db'}")
        if not self.broker_url:
            object.__setattr__(self, "broker_url", f"sqla+sqlite:///{state / 'broker.db'}")
        if self.storage_dir is None:
            object.__setattr__(self, "storage_dir", state / "storage")
        if not self.rate_limit_storage_uri:
            redis = self.broker_url.startswith(("redis://", "rediss://"))
            object.__setattr__(self, "rate_limit_storage_uri",
                               self.broker_url if redis else "memory://")
        return self

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        """Read the environment once; keyword overrides win (tests use them)."""
        return cls(**overrides)

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url.startswith("sqla+")

    @property
    def on_postgres(self) -> bool:
        """The database is PostgreSQL (else SQLite, the embedded default): a server on
        other cores, and LISTEN/NOTIFY."""
        return self.database_url.startswith("postgresql")

    @property
    def default_pepper(self) -> bool:
        """True while the token pepper is the public development value."""
        return self.token_pepper == DEV_PEPPER

    def ensure_dirs(self) -> None:
        """Create the state and storage folders the defaults point into."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        assert self.storage_dir is not None
        self.storage_dir.mkdir(parents=True, exist_ok=True)
