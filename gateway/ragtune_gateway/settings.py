"""Gateway settings: ``RAGTUNE_GATEWAY_*`` plus the shared ``DATABASE_URL`` / ``RAGTUNE_STATE_DIR``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from ragtune_common.settings import DatabaseSettings, ServiceSettings
from ragtune_common.state_paths import credentials_path, gateway_dir

MIN_ADMIN_KEY_CHARS = 32


class GatewaySettings(ServiceSettings, DatabaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RAGTUNE_GATEWAY_", extra="ignore", populate_by_name=True, hide_input_in_errors=True
    )

    port: int = Field(default=8080, ge=0, le=65535)
    admin_key: SecretStr | None = Field(
        default=None,
        description="creates tenants and keys; unset = generated into <state_dir>/gateway/credentials.json",
    )
    retriever_address: str = "127.0.0.1:50051"
    generator_address: str = "127.0.0.1:50052"
    trainer_address: str = "127.0.0.1:50053"
    rpc_timeout_s: float = Field(default=30.0, gt=0, description="deadline of ordinary calls")
    generate_timeout_s: float = Field(default=600.0, gt=0, description="deadline of a chat completion")
    ingest_timeout_s: float = Field(default=600.0, gt=0, description="deadline of uploads and document ingestion")
    health_timeout_s: float = Field(default=2.0, gt=0)
    max_upload_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    max_json_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="any request body but an upload; refused (413) before it is read"
    )
    max_request_file_bytes: int = Field(
        default=48 * 1024 * 1024,
        ge=1024,
        description="the files one request sends to the retriever together (below gRPC's 64 MiB message limit)",
    )
    rag_default_top_k: int = Field(default=5, ge=1, le=50)
    rag_max_context_chars: int = Field(default=6000, ge=200, description="passage text put into a grounded prompt")
    auth_cache_s: float = Field(
        default=30.0, ge=0, description="how long a verified API key is remembered (revocation still acts at once)"
    )
    # Fairness (see limits.py): rates and streams are counted per process, the caps globally.
    rate_limit_per_s: float = Field(default=50.0, ge=0, description="requests per second per API key; 0 = off")
    rate_limit_burst: int = Field(default=100, ge=1, description="requests one API key may send at once")
    max_streams_per_key: int = Field(default=8, ge=0, description="concurrent SSE streams per API key; 0 = off")
    max_active_jobs_per_tenant: int = Field(default=4, ge=0, description="queued + running fine-tuning jobs; 0 = off")
    max_active_evaluations_per_tenant: int = Field(default=2, ge=0, description="queued + running; 0 = off")
    max_vector_stores_per_tenant: int = Field(default=200, ge=0, description="0 = off")
    cap_retry_after_s: int = Field(default=30, ge=1, description="Retry-After of a 429 for a full job/evaluation cap")
    evaluation_workers: int = Field(
        default=1, ge=0, le=16, description="evaluations this process runs at once; 0 = it only serves requests"
    )
    evaluation_lease_s: float = Field(
        default=60.0, ge=2, description="how long a killed worker's evaluation waits before another resumes it"
    )
    evaluation_poll_s: float = Field(default=2.0, gt=0, description="how often an idle worker looks for work")
    evaluation_max_attempts: int = Field(
        default=5, ge=1, description="claims of one evaluation whose worker died before it gives up"
    )
    completion_retention_sweep_s: float = Field(
        default=3600.0, ge=0, description="how often stored chat completions past retention are deleted; 0 = never"
    )
    teacher_base_urls: str = Field(
        default="",
        description="comma-separated OpenAI-compatible base URLs a distillation's teacher may be (none: only the"
        " tenant's own models here)",
    )
    teacher_api_key: SecretStr | None = Field(default=None, description="sent to those teacher endpoints")
    promotion_min_level: float = Field(
        default=0.95, ge=0.5, lt=1, description="confidence level a promotion's paired interval must reach at least"
    )

    @field_validator("admin_key")
    @classmethod
    def _long_admin_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_ADMIN_KEY_CHARS:
            raise ValueError(
                f"RAGTUNE_GATEWAY_ADMIN_KEY must be at least {MIN_ADMIN_KEY_CHARS} characters"
                " (e.g. `openssl rand -hex 32`), or unset to have one generated"
            )
        return value

    @property
    def gateway_dir(self) -> Path:
        return gateway_dir(self.state_dir)

    @property
    def legacy_files_dir(self) -> Path:
        """Where versions before 0005_shared_state kept documents' bytes: imported at start-up."""
        return self.gateway_dir / "files"

    @property
    def scratch_dir(self) -> Path:
        """This process's scratch space (an evaluation's report files while they are written)."""
        return self.gateway_dir / "scratch"

    @property
    def credentials_path(self) -> Path:
        return credentials_path(self.state_dir)
