"""The retriever, as the gateway uses it: collections (the tenant's vector stores), their
documents, and search. Every method owns its deadline, metadata and error mapping; listing
methods take a page and return the reply with its ``next_page_token``."""

from __future__ import annotations

from ragtune.retriever.v1 import retriever_pb2 as rpb
from ragtune.retriever.v1 import retriever_pb2_grpc
from ragtune_gateway.downstream.base import ServiceClient
from ragtune_gateway.downstream.errors import Fields
from ragtune_gateway.errors import ApiError

SERVICE = rpb.DESCRIPTOR.services_by_name["RetrieverService"].full_name
# Methods whose repetition changes nothing: retried on UNAVAILABLE. Creates are not (a retry after a
# lost answer would report ALREADY_EXISTS), nor deletes (NOT_FOUND).
IDEMPOTENT = (
    "GetCollection",
    "ListCollections",
    "GetDocument",
    "ListDocuments",
    "Search",
    "UpsertDocuments",
    "Embed",
    "ListEmbeddingModels",
)


class RetrieverClient(ServiceClient):
    service = "retriever"

    def __init__(
        self, stub: retriever_pb2_grpc.RetrieverServiceStub, timeout_s: float, ingest_timeout_s: float
    ) -> None:
        super().__init__(timeout_s)
        self._stub = stub
        self.ingest_timeout_s = ingest_timeout_s

    async def create_collection(
        self, request: rpb.CreateCollectionRequest, *, fields: Fields | None = None
    ) -> rpb.Collection:
        reply = await self._unary(self._stub.CreateCollection, request, fields=fields)
        return reply.collection

    async def get_collection(self, tenant: str, name: str, *, missing: ApiError | None = None) -> rpb.Collection:
        request = rpb.GetCollectionRequest(tenant=tenant, name=name)
        return (await self._unary(self._stub.GetCollection, request, missing=missing)).collection

    async def list_collections(self, tenant: str, page_size: int, page_token: str = "") -> rpb.ListCollectionsResponse:
        request = rpb.ListCollectionsRequest(tenant=tenant)
        request.page.page_size, request.page.page_token = page_size, page_token
        return await self._unary(self._stub.ListCollections, request)

    async def delete_collection(self, tenant: str, name: str, *, missing: ApiError | None = None) -> None:
        request = rpb.DeleteCollectionRequest(tenant=tenant, name=name)
        await self._unary(self._stub.DeleteCollection, request, missing=missing)

    async def upsert_documents(
        self,
        tenant: str,
        collection: str,
        documents: list[rpb.DocumentInput],
        *,
        fields: Fields | None = None,
        missing: ApiError | None = None,
    ) -> rpb.UpsertDocumentsResponse:
        """One transaction in the retriever: all documents are stored, or none."""
        request = rpb.UpsertDocumentsRequest(tenant=tenant, collection=collection, documents=documents)
        return await self._unary(
            self._stub.UpsertDocuments, request, timeout_s=self.ingest_timeout_s, fields=fields, missing=missing
        )

    async def get_document(
        self, tenant: str, collection: str, document_id: str, *, missing: ApiError | None = None
    ) -> rpb.Document:
        request = rpb.GetDocumentRequest(tenant=tenant, collection=collection, id=document_id)
        return (await self._unary(self._stub.GetDocument, request, missing=missing)).document

    async def list_documents(
        self, tenant: str, collection: str, page_size: int, page_token: str = "", *, missing: ApiError | None = None
    ) -> rpb.ListDocumentsResponse:
        request = rpb.ListDocumentsRequest(tenant=tenant, collection=collection)
        request.page.page_size, request.page.page_token = page_size, page_token
        return await self._unary(self._stub.ListDocuments, request, missing=missing)

    async def delete_documents(
        self, tenant: str, collection: str, ids: list[str], *, missing: ApiError | None = None
    ) -> list[str]:
        """The ids that were there and are gone."""
        request = rpb.DeleteDocumentsRequest(tenant=tenant, collection=collection, ids=ids)
        return list((await self._unary(self._stub.DeleteDocuments, request, missing=missing)).deleted_ids)

    async def search(
        self, request: rpb.SearchRequest, *, fields: Fields | None = None, missing: ApiError | None = None
    ) -> list[rpb.SearchHit]:
        return list((await self._unary(self._stub.Search, request, fields=fields, missing=missing)).hits)

    async def embed(
        self,
        tenant: str,
        model: str,
        inputs: list[str],
        *,
        fields: Fields | None = None,
        missing: ApiError | None = None,
    ) -> rpb.EmbedResponse:
        """Vectors of ``inputs`` from an offered embedding model, as ingestion computes them (a
        batch may be large: the ingest deadline)."""
        request = rpb.EmbedRequest(tenant=tenant, model=model, inputs=inputs)
        return await self._unary(
            self._stub.Embed, request, timeout_s=self.ingest_timeout_s, fields=fields, missing=missing
        )

    async def list_embedding_models(self) -> list[rpb.EmbeddingModel]:
        """The embedding models Embed accepts, the default first."""
        return list((await self._unary(self._stub.ListEmbeddingModels, rpb.ListEmbeddingModelsRequest())).models)
