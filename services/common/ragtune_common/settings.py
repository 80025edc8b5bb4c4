"""Settings every service shares; each service subclasses with its own env prefix.

Values come from the environment (``RAGTUNE_<SERVICE>_<FIELD>``), except the few that all
services share and are named once: ``RAGTUNE_STATE_DIR``, ``DATABASE_URL``, ``RAGTUNE_LOG_LEVEL``,
``RAGTUNE_LOG_JSON``, ``RAGTUNE_SERVICE_TOKEN``, ``RAGTUNE_TLS_{CERT,KEY,CA}_FILE``,
``RAGTUNE_TLS_SERVER_NAME``. Settings are built in ``main()`` and passed down, never read globally.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_SERVICE_TOKEN_CHARS = 16


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
    # Service authentication (callers send it, servers require it): see channels.py and auth.py.
    service_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("service_token", "RAGTUNE_SERVICE_TOKEN"),
        description="shared secret every gRPC call carries as 'authorization: Bearer'; required off loopback",
    )
    tls_cert_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("tls_cert_file", "RAGTUNE_TLS_CERT_FILE"),
        description="PEM certificate: a server's own, and a caller's client certificate",
    )
    tls_key_file: Path | None = Field(
        default=None, validation_alias=AliasChoices("tls_key_file", "RAGTUNE_TLS_KEY_FILE")
    )
    tls_ca_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("tls_ca_file", "RAGTUNE_TLS_CA_FILE"),
        description="PEM CA: callers verify servers with it; servers then require client certificates",
    )
    tls_server_name: str | None = Field(
        default=None,
        validation_alias=AliasChoices("tls_server_name", "RAGTUNE_TLS_SERVER_NAME"),
        description="name the servers' certificate is checked against, when not the dialled host",
    )

    @field_validator("service_token")
    @classmethod
    def _strong_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if len(value.get_secret_value()) < MIN_SERVICE_TOKEN_CHARS:
            raise ValueError(
                f"RAGTUNE_SERVICE_TOKEN must be at least {MIN_SERVICE_TOKEN_CHARS} characters"
                " (e.g. `openssl rand -hex 32`)"
            )
        return value

    @model_validator(mode="after")
    def _cert_with_key(self) -> ServiceSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("RAGTUNE_TLS_CERT_FILE and RAGTUNE_TLS_KEY_FILE are set together or not at all")
        for path in (self.tls_cert_file, self.tls_key_file, self.tls_ca_file):
            if path is not None and not path.is_file():
                raise ValueError(f"TLS file {path} does not exist")
        return self

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
