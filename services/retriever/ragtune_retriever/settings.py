"""Retriever settings: ``RAGTUNE_RETRIEVER_*`` plus the shared ``DATABASE_URL`` / ``RAGTUNE_STATE_DIR``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from ragtune_common.settings import DatabaseSettings, ServiceSettings


class RetrieverSettings(ServiceSettings, DatabaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAGTUNE_RETRIEVER_", extra="ignore", populate_by_name=True)

    port: int = Field(default=50051, ge=0, le=65535)
    embedding_model: str = Field(
        default="all-MiniLM-L6-v2", description="default model: a shipped name or a local sentence-transformers dir"
    )
    embedding_models: Annotated[list[str], NoDecode] = Field(
        default=["all-MiniLM-L6-v2"],
        description="models CreateCollection may name (comma-separated): shipped names or local directories;"
        " the default model is always allowed",
    )
    # The backend of a model named without '@backend' (a collection stores the resolved variant).
    # auto = the fastest variant of the shipped MiniLM whose SciFact nDCG@10 stays within 0.005 of
    # PyTorch's, on a CPU (PyTorch on a GPU and for other models). Measured (bench/embedding_backends):
    # SciFact nDCG@10 (300 test queries, judged docs + seeded sample, 1,916 chunks) torch 0.7985, onnx
    # 0.7985, onnx-int8 0.8012 (+0.0027, 95% CI -0.0037..+0.0098); embed throughput vs bare PyTorch
    # encode, same run (2 shared cores, OMP_WAIT_POLICY=PASSIVE): onnx 3.61 vs 3.40 chunks/s (x1.06),
    # onnx-int8 6.00 (x1.76); single-query p50 17.6 ms -> onnx 7.4 (x0.42), onnx-int8 4.1 (x0.23). So onnx-int8.
    embedding_backend: Literal["auto", "torch", "onnx", "onnx-int8"] = Field(
        default="auto", description="auto | torch | onnx | onnx-int8 (ONNX variants run on the CPU)"
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
    keyword_candidate_budget: int = Field(
        default=1000,
        ge=100,
        description="chunks a KEYWORD/HYBRID search scores at most: those of the rarest query terms first",
    )
    max_document_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    max_documents_per_request: int = Field(default=1000, ge=1)
    max_embed_inputs: int = Field(default=2048, ge=1, description="texts one Embed call may carry (OpenAI's limit)")
    max_embed_input_chars: int = Field(default=32768, ge=1, description="characters of one Embed input")
    stream_batch_documents: int = Field(default=64, ge=1, description="documents embedded and written per batch")
    extraction_timeout_s: float = Field(default=60.0, gt=0, description="per HTML/Markdown/PDF document")
    extraction_memory_mib: int = Field(default=2048, ge=0, description="address space of an extraction; 0 = no limit")
    extraction_workers: int = Field(default=2, ge=1, description="documents extracted at once (child processes)")
    max_extracted_chars: int = Field(default=16 * 1024 * 1024, ge=1024, description="text one document may yield")

    @field_validator("embedding_models", mode="before")
    @classmethod
    def _split_models(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @property
    def allowed_embedding_models(self) -> list[str]:
        """The configured list plus the default model, without duplicates."""
        return list(dict.fromkeys([self.embedding_model, *self.embedding_models]))

    @model_validator(mode="after")
    def _overlap_below_chunk(self) -> RetrieverSettings:
        if self.default_overlap_tokens >= self.default_max_tokens:
            raise ValueError("default_overlap_tokens must be below default_max_tokens")
        return self
