"""Settings from the environment (and an optional `.env`), named exactly as CONTRACT.md says.

A bad or missing setting becomes one `ConfigError` line that names the variable and never
echoes its value; the CLI prints it and exits with status 2.
"""

from __future__ import annotations

import os
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "BITLOOT_"


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable, never its value."""


class Settings(BaseSettings):
    """Every setting the code reads. Field `x` is read from `BITLOOT_X` unless aliased."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    database_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "BITLOOT_DATABASE_URL")
    )
    # Behind a connection pooler (PgBouncer): `transaction` turns off what a transaction
    # pooler cannot carry between transactions (server-side prepared statements, LISTEN on a
    # pooled connection); `session` and `none` change nothing. The direct URL is a real
    # session to the same database (the workers' LISTEN, `bitloot migrate`); unset, it is
    # DATABASE_URL. README, "Behind a connection pooler".
    database_pooler: Literal["none", "transaction", "session"] = "none"
    database_direct_url: SecretStr | None = None
    # Connections each process's pool may open (the connection budget): `serve`, and
    # `worker` (unset: --concurrency + 6, at least 10).
    api_pool_size: int = Field(default=20, ge=1, le=1000)
    worker_pool_size: int | None = Field(default=None, ge=2, le=1000)
    # Seconds a worker waits between two looks for new jobs when no notification wakes it
    # (procrastinate's fetch_job_polling_interval); the pick-up delay when it cannot LISTEN.
    job_polling_interval: float = Field(default=5.0, gt=0, le=300)
    data_dir: Path = Path(".bitloot")
    public_url: str = "http://127.0.0.1:8080"

    master_keys: SecretStr | None = None

    jwt_secret: SecretStr | None = None
    jwt_public_key: str | None = None
    # Pinned so that `alg: none` and HS/RS confusion are impossible (an addition to CONTRACT.md).
    jwt_algorithm: Literal["HS256", "HS384", "HS512", "RS256", "ES256", "EdDSA"] | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # Longest user JWT accepted (`exp - iat`, seconds); `bitloot token --ttl` is held to it.
    jwt_max_lifetime: int = Field(default=24 * 3600, gt=0)
    order_token_ttl: int = Field(default=30 * 24 * 3600, gt=0)

    nowpayments_api_url: str = "https://api.nowpayments.io/v1"
    nowpayments_api_key: SecretStr | None = None
    nowpayments_ipn_secret: SecretStr | None = None
    paid_on: Literal["finished", "confirmed"] = "finished"
    # How much less than the order total a payment may be and still count as paid (fiat units).
    payment_tolerance: Decimal = Field(default=Decimal("0"), ge=0)

    kinguin_api_url: str = "https://gateway.kinguin.net/esa/api"
    kinguin_api_key: SecretStr | None = None
    kinguin_webhook_secret: SecretStr | None = None
    kinguin_max_polls: int = Field(default=10, ge=1, le=1000)
    # First wait between two polls for keys; it doubles each poll, capped at 5 minutes.
    kinguin_poll_interval: float = Field(default=2.0, gt=0, le=300)
    kinguin_timeout: float = Field(default=10.0, gt=0, le=120)
    # POST /orders reuses Kinguin's stored answer about a product (stock, cheapest price)
    # while younger than this (seconds); older, it reads the product again.
    product_cache_ttl: int = Field(default=60, ge=0)
    # When Kinguin cannot be reached, a stored answer this young (seconds) that says "in
    # stock at a price we pay" still sells; otherwise POST /orders answers 503.
    product_stale_ttl: int = Field(default=3600, ge=0)
    # Outbound webhooks (Standard Webhooks) to storefronts: http and private addresses are
    # refused unless this is set (local use, tests); the customer's email is in an event's
    # data only when asked for; the old secret keeps signing this long (seconds) after a
    # rotation; each delivery attempt waits this long (seconds) for the answer.
    webhook_allow_private_urls: bool = False
    webhook_include_email: bool = False
    webhook_secret_overlap: int = Field(default=86400, ge=0)
    webhook_timeout: float = Field(default=10.0, gt=0, le=60)
    # Paid orders not fulfilled after this long are re-checked by the reconciler.
    reconcile_after_minutes: int = Field(default=10, ge=1)
    # How long a delivered key stays downloadable.
    key_retention_days: int = Field(default=365, ge=1)

    storage_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_region: str = "auto"
    signed_url_ttl: int = Field(default=900, gt=0, le=7 * 24 * 3600)

    smtp_url: SecretStr | None = None
    mail_dir: Path | None = None
    mail_from: str = "BitLoot <keys@bitloot.invalid>"

    log_format: Literal["json", "console"] | None = None
    # /metrics on the API port only when explicitly public; otherwise on a localhost port.
    metrics_public: bool = False
    metrics_port: int = Field(default=9108, ge=0, le=65535)
    # Each worker's own metrics (jobs, Kinguin latency, time to key) on 127.0.0.1; 0: off.
    worker_metrics_port: int = Field(default=9109, ge=0, le=65535)
    # Added to worker_metrics_port (systemd: `bitloot-worker@N` sets N), so every instance
    # on a host has its own port; systemd cannot add, the worker does.
    worker_instance: int = Field(default=0, ge=0, le=1000)
    max_body_bytes: int = Field(default=64 * 1024, gt=0)

    # Rate limits, in requests per minute (bursts up to the same number); 0 turns one off.
    # Kept in PostgreSQL (rate_limit_buckets), so they hold across every server process.
    rate_limit_download_per_minute: int = Field(default=10, ge=0)  # per user or order token
    rate_limit_download_per_address_per_minute: int = Field(default=30, ge=0)
    rate_limit_orders_per_minute: int = Field(default=20, ge=0)  # POST /orders per address
    # Failed webhook signatures/secrets per address: 401 until the limit, then 429.
    rate_limit_bad_signatures_per_minute: int = Field(default=10, ge=0)
    # POST /orders/recover, per hour: per email address (past it: the same 202, no email)
    # and per client address (past it: 429).
    rate_limit_recover_per_email_per_hour: int = Field(default=3, ge=0)
    rate_limit_recover_per_address_per_hour: int = Field(default=10, ge=0)
    # Reverse proxies in front of the API that append the client to X-Forwarded-For. 0: the
    # header is ignored (anyone can send it) and the client is the socket's peer address.
    trusted_proxy_hops: int = Field(default=0, ge=0, le=10)

    @field_validator("public_url", "nowpayments_api_url", "kinguin_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("worker_instance")
    @classmethod
    def _port_in_range(cls, value: int, info: ValidationInfo) -> int:
        base = info.data.get("worker_metrics_port")
        if base and base + value > 65535:
            raise ValueError("BITLOOT_WORKER_METRICS_PORT plus the instance exceeds port 65535")
        return value

    def effective_worker_pool_size(self, concurrency: int) -> int:
        """The worker's pool size: the setting, or one connection per running job plus
        procrastinate's fetch, heartbeat, abort and periodic-defer queries, and spares."""
        return self.worker_pool_size or max(10, concurrency + 6)

    @property
    def effective_worker_metrics_port(self) -> int:
        """This worker's metrics port: the base plus the instance number (0: off)."""
        return self.worker_metrics_port + self.worker_instance if self.worker_metrics_port else 0

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @cached_property
    def effective_storage_url(self) -> str:
        """`BITLOOT_STORAGE_URL`, or local objects in the data directory."""
        return self.storage_url or (self.data_dir / "objects").as_uri()

    @cached_property
    def effective_mail_dir(self) -> Path:
        """Where `.eml` files go when no SMTP server is configured."""
        return self.mail_dir or self.data_dir / "mail"

    def require(self, *names: str) -> None:
        """Raise `ConfigError` naming the first of `names` that is unset."""
        for name in names:
            if getattr(self, name) in (None, ""):
                raise ConfigError(f"{env_name(name)} is required for this command but is not set")


# A webhook secret is the only thing between the internet and "this payment is final":
# each one (every entry of a rotation list) must be at least this long.
MIN_WEBHOOK_SECRET_BYTES = 16
WEBHOOK_SECRETS = ("nowpayments_ipn_secret", "kinguin_webhook_secret")


def check_webhook_secrets(settings: Settings) -> None:
    """Raise `ConfigError` naming the first webhook secret (or rotation-list entry) shorter
    than `MIN_WEBHOOK_SECRET_BYTES`. Checked when the API starts: other commands do not
    use these secrets, and an unfilled example (`CHANGE_ME`) still loads for them."""
    for field in WEBHOOK_SECRETS:
        for secret in secret_values(getattr(settings, field)):
            if len(secret.encode("utf-8")) < MIN_WEBHOOK_SECRET_BYTES:
                raise ConfigError(
                    f"{env_name(field)}: each secret (every entry of a list) must be at "
                    f"least {MIN_WEBHOOK_SECRET_BYTES} bytes"
                )


def secret_values(value: SecretStr | None) -> list[str]:
    """A webhook secret setting as the list of secrets it accepts.

    A comma-separated value lists several: while a secret is being rotated, webhooks signed
    with the old one and with the new one are both accepted, so none is refused.
    """
    if value is None:
        return []
    return [part.strip() for part in value.get_secret_value().split(",") if part.strip()]


def env_name(field: str) -> str:
    """The environment variable a settings field is read from."""
    return "DATABASE_URL" if field == "database_url" else ENV_PREFIX + field.upper()


def load_settings(**overrides: object) -> Settings:
    """Read the settings; any problem becomes one `ConfigError` line naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_input=False, include_url=False):
            field = str(err["loc"][0]) if err["loc"] else "?"
            # err["msg"] describes the rule, not the value, so secrets are never echoed.
            problems.append(f"{_variable_for(field)}: {err['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


def _variable_for(loc: str) -> str:
    if loc in ("DATABASE_URL", "BITLOOT_DATABASE_URL"):
        return loc
    if loc.startswith(ENV_PREFIX):
        return loc
    return env_name(loc)


def environ_without_bitloot() -> dict[str, str]:
    """The current environment minus BitLoot settings (for child processes that get their own)."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(ENV_PREFIX) and k not in ("DATABASE_URL",)
    }
