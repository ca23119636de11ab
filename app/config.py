import re
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.audit.keyfile import default_path as default_key_file
from app.audit.seed import decode_seed
from app.vocabulary import GateStage

_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
# The bootstrap key is an admin key chosen by a person: long enough that it cannot be guessed
# (the generated keys carry 43 random characters).
BOOTSTRAP_KEY_MIN_LENGTH = 32
# The default of `sqlite_busy_timeout_ms`, and so of `app.db.engines.create_database`.
SQLITE_BUSY_TIMEOUT_MS = 30_000
# An MLflow alias name, as MLflow itself accepts them (letters, digits, `_`, `-`; 255 at most).
_MLFLOW_ALIAS = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_HTTP_URL = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")


def _split(origins: str) -> list[str]:
    return [origin.strip() for origin in origins.split(",") if origin.strip()]


def parse_alias_stages(value: str) -> dict[str, GateStage]:
    """`champion=production,challenger=pilot` as {alias: stage}; ValueError says what is wrong."""
    stages: dict[str, GateStage] = {}
    for item in _split(value):
        alias, sep, stage = (part.strip() for part in item.partition("="))
        if not sep or not _MLFLOW_ALIAS.match(alias):
            raise ValueError(f"{item!r} is not alias=stage with an MLflow alias name")
        if stage not in GateStage.__members__:
            raise ValueError(f"{item!r}: the stage must be pilot or production")
        if alias in stages:
            raise ValueError(f"the alias {alias!r} is mapped twice")
        stages[alias] = GateStage(stage)
    return stages


class Settings(BaseSettings):
    """Process settings, read once from the environment (see docs/operations.md, Configuration)."""

    # A refused value (a secret, a URL with a password) never appears in the error.
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", hide_input_in_errors=True)

    database_url: str = "sqlite:///./readiness.db"
    port: int = 8000
    log_level: str = "info"
    readiness_bootstrap_admin_key: SecretStr | None = None
    # Requests with larger bodies are refused with 413 before they are parsed.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Connections each process keeps to the database (PostgreSQL; SQLite uses its own pools).
    db_pool_size: int = Field(default=10, ge=1)
    # SQLite: how long a write waits for another process holding the write lock before it
    # fails (a 500).
    sqlite_busy_timeout_ms: int = Field(default=SQLITE_BUSY_TIMEOUT_MS, ge=0, le=600_000)
    # Worker threads for endpoint code, whose database work runs in one thread call per
    # request. Unset: 2 on SQLite, whose calls are short and CPU-bound, so more threads only
    # fight over the interpreter lock (see `make bench`); on PostgreSQL, the pool size, so
    # threads waiting on the network never wait for a connection too.
    worker_threads: int | None = Field(default=None, ge=1, le=256)
    # Serve /v1/systems/{key}/badge.svg without an API key, for READMEs and portals.
    readiness_public_badges: bool = False
    # Serve /metrics/systems (every system's score and gates) without an API key.
    readiness_public_system_metrics: bool = False
    # Browser origins allowed to call the API (CORS), comma-separated, each exactly
    # `scheme://host[:port]`. Empty: CORS stays off. No wildcard: it is an allow-list.
    readiness_cors_origins: str = ""
    # Build the readiness mirror behind reports and /metrics on a background thread at
    # start-up (app.reports.warmup). Off: it is never built and they always run their
    # aggregate queries.
    readiness_mirror_warmup: bool = True
    # Store anew, on a background thread at start-up, the readiness answers evaluated by
    # other rules than this code's (app.readiness.reevaluation; `make reevaluate` does the
    # same from the command line). Off: they stay stale, evaluated afresh on every read,
    # until their system is written or re-evaluated.
    readiness_reevaluate_on_start: bool = True
    # Store anew, on a background thread in every worker, the readiness answers time has made
    # stale, appending `readiness.changed` (and `system.drifted`) for the gates that turned
    # (app.readiness.expiry): every this many seconds, so the events follow the change within
    # a minute at the default. Off: the answers are evaluated afresh on reads, no event says so.
    readiness_expiry_events: bool = True
    readiness_expiry_interval_s: float = Field(default=15.0, gt=0, le=60)
    # How long a POST's Idempotency-Key is remembered (its answer replayed); older ones are
    # deleted.
    idempotency_retention_hours: int = Field(default=48, ge=1, le=24 * 366)
    # OIDC issuers whose tokens are accepted beside API keys, with the claim rules that map
    # them to a role and teams: a JSON list, inline or in the file this names
    # (app.auth.oidc.load_providers). Unset: API keys only.
    readiness_oidc_config: str | None = None
    # The MLflow model registry webhook (app.integrations.mlflow, docs/integrations/mlflow.md).
    # The secret MLflow signs its deliveries with; unset, every delivery is refused (401).
    readiness_mlflow_webhook_secret: SecretStr | None = None
    # Which alias, once set on a model version, asks for which stage's gate.
    readiness_mlflow_alias_stages: str = "champion=production,challenger=pilot"
    # The MLflow tracking server to undo a denied alias on (remove it, tag the version); unset,
    # a denial is only recorded here.
    readiness_mlflow_tracking_uri: str | None = None
    # Sent to that server as `Authorization: Bearer` when set.
    readiness_mlflow_tracking_token: SecretStr | None = None
    # With a tracking server set: at start-up and then every this many seconds, each worker
    # compares the mapped aliases of every linked model with the decisions recorded here and
    # gates the ones set while no delivery reached the service
    # (app.integrations.mlflow.reconcile). 0: never.
    readiness_mlflow_reconcile_seconds: float = Field(default=300.0, ge=0, le=86_400)
    # Base64 of the 32-byte Ed25519 seed that signs audit checkpoints (app.audit.signing);
    # unset, a key is made at first start and kept in the key file below (for trying out
    # only: never in the database, where whoever can rewrite the log could read it).
    readiness_audit_signing_key: SecretStr | None = None
    # Where that generated key is kept (mode 0600). Unset: `readiness-audit.key` beside the
    # SQLite file, or in the working directory on PostgreSQL (app.audit.keyfile).
    readiness_audit_signing_key_file: str | None = Field(default=None, min_length=1)
    # Outbound webhooks (app.webhooks, docs/webhooks.md). Whether this process sends the
    # deliveries due; off, they wait in the database for a process that does.
    readiness_webhook_dispatch: bool = True
    # How often the dispatcher looks for due deliveries when it has nothing to send.
    readiness_webhook_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    # How long one attempt may take, connecting included, before it counts as failed.
    readiness_webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # How long a dispatcher's claim on a delivery lasts: a delivery claimed by a process that
    # died is sent by another once its claim has expired. Longer than the timeout.
    readiness_webhook_lease_seconds: float = Field(default=300.0, ge=1, le=3600)
    # Allow webhook URLs whose host is a private, loopback, link-local or other non-public
    # address (for receivers inside the same network, and tests).
    readiness_webhook_allow_private: bool = False
    # The CloudEvents `source` of every delivery: a URI naming this deployment.
    readiness_webhook_source: str = Field(default="urn:readiness", min_length=1, max_length=500)

    @field_validator("readiness_cors_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        for origin in _split(value):
            if not _ORIGIN.match(origin):
                raise ValueError(f"{origin!r} is not an origin like https://dash.example.com")
        return value

    @field_validator("readiness_bootstrap_admin_key")
    @classmethod
    def _bootstrap_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < BOOTSTRAP_KEY_MIN_LENGTH:
            raise ValueError(
                f"must be at least {BOOTSTRAP_KEY_MIN_LENGTH} characters long;"
                ' generate one with: echo "rdy_$(openssl rand -hex 24)"'
            )
        return value

    @field_validator("readiness_audit_signing_key")
    @classmethod
    def _audit_signing_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            decode_seed(value.get_secret_value())
        return value

    def audit_signing_seed(self) -> bytes | None:
        key = self.readiness_audit_signing_key
        return decode_seed(key.get_secret_value()) if key is not None else None

    def audit_signing_key_file(self) -> Path:
        if self.readiness_audit_signing_key_file is not None:
            return Path(self.readiness_audit_signing_key_file).absolute()
        return default_key_file(self.database_url)

    @field_validator("readiness_mlflow_alias_stages")
    @classmethod
    def _alias_stages(cls, value: str) -> str:
        parse_alias_stages(value)
        return value

    @field_validator("readiness_mlflow_tracking_uri")
    @classmethod
    def _tracking_uri(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if not _HTTP_URL.match(value) or "@" in value:
            raise ValueError("must be an http:// or https:// URL without credentials")
        return value

    @model_validator(mode="after")
    def _lease_outlasts_attempt(self) -> "Settings":
        if self.readiness_webhook_lease_seconds <= self.readiness_webhook_timeout_seconds:
            raise ValueError(
                "READINESS_WEBHOOK_LEASE_SECONDS must be longer than"
                " READINESS_WEBHOOK_TIMEOUT_SECONDS"
            )
        return self

    def mlflow_alias_stages(self) -> dict[str, GateStage]:
        return parse_alias_stages(self.readiness_mlflow_alias_stages)

    def cors_origins(self) -> list[str]:
        return _split(self.readiness_cors_origins)

    def threads(self) -> int:
        if self.worker_threads is not None:
            return self.worker_threads
        return 2 if self.database_url.startswith("sqlite") else self.db_pool_size


@lru_cache
def get_settings() -> Settings:
    """The process's settings; a process whose environment is invalid stops here, saying
    which variable is wrong and why, rather than with a traceback."""
    try:
        return Settings()
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        raise SystemExit(f"invalid settings: {reasons}") from None
