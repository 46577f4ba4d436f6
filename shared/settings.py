"""Settings for every jobq function, read from the environment (prefix JOBQ_) and an optional .env file.

Build them through `get_settings()` (cached), never at import time, so tests can change the environment.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.lanes import DEFAULT_LANES, Lanes

PLACEHOLDER_TOKENS = frozenset({"", "changeme", "change-me", "secret", "admin", "token", "xxx"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="JOBQ_", env_file=".env", extra="ignore", populate_by_name=True
    )

    # Where we run: "local" relaxes production-only checks (placeholder tokens, private webhook targets).
    env: Literal["local", "test", "production"] = "production"

    # Upstash REST endpoint. A plain str: a URL type would add a trailing slash and the SDK appends paths.
    redis_rest_url: str = Field(
        default="http://127.0.0.1:8079",
        validation_alias=AliasChoices("JOBQ_REDIS_REST_URL", "UPSTASH_REDIS_REST_URL"),
    )
    redis_rest_token: SecretStr = Field(
        default=SecretStr(""),
        validation_alias=AliasChoices("JOBQ_REDIS_REST_TOKEN", "UPSTASH_REDIS_REST_TOKEN"),
    )
    # Every key of a deployment starts with this, so two deployments can share one database.
    key_prefix: str = Field(default="jobq", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    redis_timeout: float = Field(default=5.0, gt=0, le=60)
    # The REST endpoint fronts a Redis Cluster (the local gateway's --redis-cluster): reads over many queues
    # go one per queue, and a batch submit holds one queue's jobs (docs/scaling.md).
    redis_cluster: bool = False

    # Engine limits, checked at the edge.
    max_payload_bytes: int = Field(default=256 * 1024, gt=0)
    max_batch: int = Field(default=1000, gt=0, le=1000)
    idempotency_window: float = Field(default=24 * 3600, gt=0)

    # Auth.
    admin_token: SecretStr | None = None
    metrics_token: SecretStr | None = None
    jwt_secret: SecretStr | None = None
    jwt_public_key: str | None = None
    jwt_algorithms: list[str] = ["HS256"]
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_admin_claim: str = "jobq_admin"
    default_rate: str = "100/minute"
    key_cache_seconds: float = Field(default=30.0, ge=0)
    # Browser origins allowed to call the API and embed the jobs panel (e.g. ["https://app.example"]).
    cors_origins: list[str] = []
    # Signs browser tokens (POST /v1/tokens); unset: a key derived from the admin token signs them.
    browser_token_secret: SecretStr | None = None
    max_body_bytes: int = Field(default=2 * 1024 * 1024, gt=0)
    # Job event stream (API): poll interval and how long one stream stays open before the client reconnects.
    events_poll_seconds: float = Field(default=1.0, gt=0, le=30)
    events_max_seconds: float = Field(default=25.0, gt=0, le=3600)

    # Job types and consumers.
    job_modules: list[str] = []
    trigger: Literal["none", "local", "http", "qstash"] = "none"
    # Consumer lanes (shared/lanes.py): lane name -> longest job timeout (s) its consumer runs hold.
    lanes: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_LANES))
    # The lane this consumer function serves (serverless); None: every lane (`jobq worker`, `jobq dev`).
    lane: str | None = None
    # Push URL of each lane's consumer; `consumer_url` serves any lane not listed here.
    consumer_urls: dict[str, str] = {}
    consumer_url: str | None = None
    consumer_secret: SecretStr | None = None
    qstash_token: SecretStr | None = None
    qstash_url: str | None = None
    qstash_current_signing_key: SecretStr | None = None
    qstash_next_signing_key: SecretStr | None = None
    # Seconds a lease outlasts its job's timeout (and every heartbeat's extension its remaining time):
    # how long a crashed consumer's job waits before another consumer takes it over.
    lease_margin: float = Field(default=30.0, ge=1, le=3600)
    # A pushed run's budget where the platform does not say how long it may run (off Lambda).
    push_budget: float = Field(default=20.0, gt=0, le=900)
    # The scheduled tick's period: a run books a wake-up only for work due sooner than this.
    tick_seconds: float = Field(default=60.0, gt=0)
    webhook_secret: SecretStr | None = None
    allow_private_urls: bool = False
    url_allowlist: list[str] = []
    url_denylist: list[str] = []

    # Logging.
    log_format: Literal["json", "console"] = "json"
    log_level: str = "INFO"
    access_log: bool = True  # a line per request (`jobq dev` turns it off: --access-log turns it back on)

    @property
    def is_local(self) -> bool:
        return self.env in ("local", "test")

    @model_validator(mode="after")
    def _lanes_hold(self) -> Settings:
        lanes = Lanes.of(self.lanes)  # raises on an empty or malformed map
        if self.lane is not None:
            lanes.limit(self.lane)
        return self

    @property
    def lane_set(self) -> Lanes:
        return Lanes.of(self.lanes)

    def push_url(self, lane: str) -> str | None:
        """Where a push for `lane` goes: its own consumer URL, else the shared one."""
        return self.consumer_urls.get(lane, self.consumer_url)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
