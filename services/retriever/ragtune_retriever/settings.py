"""Retriever settings: ``RAGTUNE_RETRIEVER_*`` plus the shared ``DATABASE_URL`` / ``RAGTUNE_STATE_DIR``."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from ragtune_common.settings import DatabaseSettings, ServiceSettings


class RetrieverSettings(ServiceSettings, DatabaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAGTUNE_RETRIEVER_", extra="ignore", populate_by_name=True)

    port: int = Field(default=50051, ge=0, le=65535)
    embedding_model: str = Field(
        default="all-MiniLM-L6-v2", description="default model: a shipped name or a local sentence-transformers dir"
    )
    embedding_device: str = Field(default="auto", description="auto | cpu | cuda")
    embedding_batch_size: int = Field(default=32, ge=1, le=1024)
    query_cache_size: int = Field(default=2048, ge=0)
    default_max_tokens: int = Field(default=256, ge=16, le=8192)
    default_overlap_tokens: int = Field(default=32, ge=0)
    # measured on 151k SciFact chunks: recall@10 vs exact 0.954 at 100, 0.980 at 200, 0.990 at 400
    default_ef_search: int = Field(default=400, ge=1, le=1000)
    rrf_k: int = Field(default=60, ge=1)
    fusion_candidates: int = Field(default=100, ge=1, le=1000, description="rows taken from each list before fusion")
    max_document_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    max_documents_per_request: int = Field(default=1000, ge=1)
    stream_batch_documents: int = Field(default=64, ge=1, description="documents embedded and written per batch")

    @model_validator(mode="after")
    def _overlap_below_chunk(self) -> RetrieverSettings:
        if self.default_overlap_tokens >= self.default_max_tokens:
            raise ValueError("default_overlap_tokens must be below default_max_tokens")
        return self
