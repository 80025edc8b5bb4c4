"""``/v1/models``: the models a tenant can name, as the official client's ``openai.types.Model``
with ragtune's extensions (``parent`` and ``max_model_len`` for served models, ``alias_for`` for
aliases, ``kind: "embedding"`` for the embedding models ``/v1/embeddings`` takes)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ragtune_gateway.schemas.common import ListPage, Omitted, ResponseModel


class Model(ResponseModel):
    """The base model or one of the tenant's fine-tuned adapters."""

    id: str
    object: Literal["model"] = "model"
    created: int = Field(description="when the generator loaded it (Unix seconds); 0 when unknown")
    owned_by: str = Field(description="'ragtune' for the base model, the tenant for its adapters")
    shutdown_date: Omitted[str] = None
    parent: str | None = Field(default=None, description="an adapter's base model (ragtune)")
    max_model_len: int | None = Field(default=None, description="the context length in tokens (ragtune)")


class AliasModel(ResponseModel):
    """One of the tenant's aliases (``ft:<name>``), usable wherever a model name goes."""

    id: str
    object: Literal["model"] = "model"
    created: int = Field(description="when the alias last moved (Unix seconds)")
    owned_by: str
    shutdown_date: Omitted[str] = None
    parent: None = None
    alias_for: str = Field(description="the adapter that holds the alias now (ragtune)")


class EmbeddingModel(ResponseModel):
    """One of the retriever's embedding models: a ``model`` that ``/v1/embeddings`` (and a vector
    store's ``embedding_model``) accepts."""

    id: str
    object: Literal["model"] = "model"
    created: int = Field(default=0, description="0: not known")
    owned_by: str = "ragtune"
    shutdown_date: Omitted[str] = None
    parent: None = None
    kind: Literal["embedding"] = Field(default="embedding", description="an embedding model (ragtune)")
    default_variant: str = Field(description="the backend variant it runs as when none is named (ragtune)")
    is_default: bool = Field(description="the model used when none is named (ragtune)")


AnyModel = Model | AliasModel | EmbeddingModel
# The listing: served models first, then aliases, then embedding models.
ModelList = ListPage[AnyModel]
