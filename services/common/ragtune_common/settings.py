"""Settings every service shares; each service subclasses with its own env prefix.

Values come from the environment (``RAGTUNE_<SERVICE>_<FIELD>``), except the few that all
services share and are named once: ``RAGTUNE_STATE_DIR``, ``DATABASE_URL``, ``RAGTUNE_LOG_LEVEL``,
``RAGTUNE_LOG_JSON``. Settings are built in ``main()`` and passed down, never read globally.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Fields common to every gRPC service."""

    model_config = SettingsConfigDict(env_prefix="RAGTUNE_", extra="ignore", populate_by_name=True)

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535, description="0 = pick a free port")
    state_dir: Path = Field(
        default=Path(".ragtune"),
        validation_alias=AliasChoices("state_dir", "RAGTUNE_STATE_DIR"),
        description="embedded database data, converted models, adapters",
    )
    log_level: str = Field(default="INFO", validation_alias=AliasChoices("log_level", "RAGTUNE_LOG_LEVEL"))
    log_json: bool = Field(default=False, validation_alias=AliasChoices("log_json", "RAGTUNE_LOG_JSON"))
    grace_period_s: float = Field(default=10.0, ge=0, description="in-flight calls get this long on SIGTERM")
    drain_notice_s: float = Field(
        default=1.0, ge=0, description="NOT_SERVING is reported this long before refusing calls"
    )
    max_message_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024)
    metrics_port: int = Field(
        default=0, ge=0, le=65535, description="Prometheus metrics over HTTP on this port (0 = off)"
    )

    @field_validator("state_dir")
    @classmethod
    def _absolute_state_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()


class DatabaseSettings(BaseSettings):
    """Where PostgreSQL is: ``DATABASE_URL``, or the embedded server under the state directory."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_url: str | None = Field(default=None, validation_alias=AliasChoices("database_url", "DATABASE_URL"))
    db_pool_min: int = Field(default=1, ge=0, validation_alias=AliasChoices("db_pool_min", "RAGTUNE_DB_POOL_MIN"))
    db_pool_max: int = Field(default=8, ge=1, validation_alias=AliasChoices("db_pool_max", "RAGTUNE_DB_POOL_MAX"))
    db_connect_timeout_s: float = Field(
        default=5.0, gt=0, validation_alias=AliasChoices("db_connect_timeout_s", "RAGTUNE_DB_CONNECT_TIMEOUT_S")
    )
