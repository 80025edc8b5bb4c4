"""``POST /v1/embeddings``: OpenAI embeddings from the retriever's embedding models."""

from __future__ import annotations

from fastapi import APIRouter

from ragtune_gateway.auth import Runtime, TenantId
from ragtune_gateway.schemas.embeddings import CreateEmbeddingResponse, EmbeddingRequest
from ragtune_gateway.services import embeddings

router = APIRouter(prefix="/v1", tags=["embeddings"])


@router.post(
    "/embeddings",
    response_model=CreateEmbeddingResponse,
    description="Vectors of texts from one of the retriever's embedding models: the names the operator lists in"
    " RAGTUNE_RETRIEVER_EMBEDDING_MODELS (by default `all-MiniLM-L6-v2`, 384 dimensions), each also with a"
    " backend: `@torch`, `@onnx`, `@onnx-int8` (a name without one runs on the retriever's default backend,"
    " as a new vector store does). These names are not in `GET /v1/models`, which lists the generator's"
    " models. An unknown model is 404 `model_not_found`.",
)
async def create_embeddings(body: EmbeddingRequest, runtime: Runtime, tenant: TenantId) -> CreateEmbeddingResponse:
    return await embeddings.create_embeddings(runtime, tenant, body)
