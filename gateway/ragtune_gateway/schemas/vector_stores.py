"""``/v1/vector_stores``: creating a store, adding a file, searching."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator

from ragtune_gateway.schemas.common import Id, JsonObject, Key, Text, WireModel

MAX_FILE_IDS = 500
MAX_METADATA_PAIRS = 16  # as OpenAI: 16 pairs, keys up to 64 characters, values up to 512
MAX_QUERIES = 16
MAX_QUERY_CHARS = 8192

MetadataKey = Annotated[Key, Field(max_length=64)]
MetadataValue = Annotated[Text, Field(max_length=512)]


class StaticChunking(WireModel):
    max_chunk_size_tokens: int = Field(default=256, ge=16, le=8192)
    chunk_overlap_tokens: int = Field(default=32, ge=0, le=8192)


class ChunkingStrategy(WireModel):
    type: Literal["auto", "static"] = "auto"
    static: StaticChunking | None = None


def unique(ids: list[str]) -> list[str]:
    """The ids in their first order, each once (a file given twice is added once)."""
    return list(dict.fromkeys(ids))


class CreateStore(WireModel):
    model_config = ConfigDict(extra="ignore")
    name: Text | None = Field(default=None, max_length=256)
    file_ids: list[Id] = Field(default_factory=list, max_length=MAX_FILE_IDS)
    metadata: dict[MetadataKey, MetadataValue] | None = Field(default=None, max_length=MAX_METADATA_PAIRS)
    chunking_strategy: ChunkingStrategy | None = None

    @field_validator("file_ids")
    @classmethod
    def _each_file_once(cls, file_ids: list[str]) -> list[str]:
        return unique(file_ids)


class AddFile(WireModel):
    model_config = ConfigDict(extra="ignore")
    file_id: Id
    attributes: dict[MetadataKey, MetadataValue | float | bool] | None = Field(
        default=None, max_length=MAX_METADATA_PAIRS
    )


class RankingOptions(WireModel):
    ranker: Literal["auto", "default-2024-11-15", "hybrid", "vector", "keyword"] = "auto"
    score_threshold: float | None = None


QueryText = Annotated[Text, Field(max_length=MAX_QUERY_CHARS)]


class SearchBody(WireModel):
    model_config = ConfigDict(extra="ignore")
    query: QueryText | Annotated[list[QueryText], Field(max_length=MAX_QUERIES)]
    max_num_results: int = Field(default=10, ge=1, le=50)
    filters: JsonObject | None = None
    ranking_options: RankingOptions | None = None
    rewrite_query: bool = False
    ef_search: int | None = Field(default=None, ge=1, le=1000, description="ragtune: HNSW breadth of this search")
