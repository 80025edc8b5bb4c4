"""``/v1/vector_stores``: the requests (creating a store, adding a file, searching), the answers
(mirroring the official SDK's ``VectorStore``, ``VectorStoreFile``, ``VectorStoreDeleted``,
``VectorStoreFileDeleted`` and the search page, with ragtune's extra fields), and the tables that
name a retriever field as the request's parameter in an error."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator

from ragtune_gateway.schemas.common import Deleted, Id, JsonObject, Key, ResponseModel, Text, WireModel

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


class CreateFileBatch(WireModel):
    model_config = ConfigDict(extra="ignore")
    file_ids: list[Id] = Field(min_length=1, max_length=MAX_FILE_IDS)
    attributes: dict[MetadataKey, MetadataValue | float | bool] | None = Field(
        default=None, max_length=MAX_METADATA_PAIRS
    )

    @field_validator("file_ids")
    @classmethod
    def _each_file_once(cls, file_ids: list[str]) -> list[str]:
        return unique(file_ids)


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


# Retriever field paths -> the request's parameters, for the errors of each call.
CREATE_STORE_FIELDS = {
    "chunking.max_tokens": "chunking_strategy.static.max_chunk_size_tokens",
    "chunking.overlap_tokens": "chunking_strategy.static.chunk_overlap_tokens",
}
CREATE_STORE_FILES_FIELDS = {"documents": "file_ids", "collection": "vector_store_id"}
ADD_FILE_FIELDS = {"documents": "file_id", "collection": "vector_store_id"}
BATCH_FILE_FIELDS = {"documents": "file_ids", "collection": "vector_store_id"}
SEARCH_FIELDS = {
    "filter": "filters",
    "collections": "vector_store_id",
    "query": "query",
    "top_k": "max_num_results",
    "ef_search": "ef_search",
}


# Responses.

# The SDK types attribute values as str | float | bool, which is all the gateway writes; metadata
# written straight over gRPC may nest (the retriever allows it), and must still be answered, not 500.
Attributes = dict[str, Any]


class FileCounts(ResponseModel):
    in_progress: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    total: int = 0


class ExpiresAfter(ResponseModel):
    anchor: Literal["last_active_at"]
    days: int


class StaticChunkingSettings(ResponseModel):
    max_chunk_size_tokens: int
    chunk_overlap_tokens: int


class StaticChunkingStrategy(ResponseModel):
    """As OpenAI's ``StaticFileChunkingStrategyObject``: how the store cuts documents into chunks."""

    type: Literal["static"] = "static"
    static: StaticChunkingSettings


class VectorStore(ResponseModel):
    """A store is a retriever collection of the tenant; it is ready as soon as it answers."""

    id: str
    object: Literal["vector_store"] = "vector_store"
    created_at: int
    name: str | None = Field(default=None, description="null for a store created without a name")
    metadata: dict[str, str] | None = None
    usage_bytes: int = 0
    file_counts: FileCounts
    status: Literal["expired", "in_progress", "completed"] = "completed"
    expires_after: ExpiresAfter | None = None
    expires_at: int | None = None
    last_active_at: int | None = None
    chunk_count: int = Field(default=0, description="ragtune: chunks stored over all the files")
    embedding_model: str = Field(default="", description="ragtune: the model that embeds the chunks")
    chunking_strategy: StaticChunkingStrategy | None = Field(default=None, description="ragtune: how files are cut")


class LastError(ResponseModel):
    code: Literal["server_error", "unsupported_file", "invalid_file"]
    message: str


class VectorStoreFile(ResponseModel):
    """A file of a store: the retriever's document with the file's id. Files are added whole, in
    one transaction, so a listed file is always ``completed``."""

    id: str
    object: Literal["vector_store.file"] = "vector_store.file"
    created_at: int
    vector_store_id: str
    status: Literal["in_progress", "completed", "cancelled", "failed"] = "completed"
    usage_bytes: int = Field(description="ragtune: the characters of text extracted from the file")
    last_error: LastError | None = None
    attributes: Attributes | None = None
    chunking_strategy: StaticChunkingStrategy | None = Field(
        default=None, description="null: the store's chunking_strategy applies"
    )
    chunk_count: int = Field(default=0, description="ragtune: the file's chunks")
    filename: str | None = Field(default=None, description="ragtune: the file's name when it was added")


class VectorStoreDeleted(Deleted):
    object: Literal["vector_store.deleted"] = "vector_store.deleted"


class VectorStoreFileDeleted(Deleted):
    object: Literal["vector_store.file.deleted"] = "vector_store.file.deleted"


class SearchContent(ResponseModel):
    type: Literal["text"] = "text"
    text: str


class SearchResult(ResponseModel):
    """One chunk that matched, as OpenAI's ``VectorStoreSearchResponse``; its text is
    ``file_text[start_offset:end_offset]``."""

    file_id: str
    filename: str
    score: float
    attributes: Attributes | None = None
    content: list[SearchContent]
    chunk_id: str = Field(description="ragtune: the chunk's id")
    document_id: str = Field(description="ragtune: the retriever's document (the file id)")
    vector_store_id: str = Field(description="ragtune: the store the chunk is in")
    start_offset: int = Field(description="ragtune: where the chunk starts in the file's text (characters)")
    end_offset: int = Field(description="ragtune: where it ends (exclusive)")
    vector_rank: int | None = Field(
        default=None, description="ragtune: 1-based rank by vector similarity; null: not in that list"
    )
    keyword_rank: int | None = Field(
        default=None, description="ragtune: 1-based rank by keywords; null: not in that list"
    )


class SearchPage(ResponseModel):
    """The search results, best first, in one page."""

    object: Literal["vector_store.search_results.page"] = "vector_store.search_results.page"
    search_query: list[str]
    data: list[SearchResult]
    has_more: bool = False
    next_page: str | None = None


class VectorStoreFileBatch(ResponseModel):
    """As OpenAI's ``VectorStoreFileBatch``: files added to a store one by one, each with its own
    outcome (``GET .../file_batches/{id}/files``); ``completed`` once none is in progress (some may
    have failed: see ``file_counts``), ``failed`` when every file failed."""

    id: str
    object: Literal["vector_store.files_batch"] = "vector_store.files_batch"
    created_at: int
    vector_store_id: str
    status: Literal["in_progress", "completed", "cancelled", "failed"]
    file_counts: FileCounts
