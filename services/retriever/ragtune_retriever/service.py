"""RetrieverService servicer: converts protobuf <-> domain objects and delegates to the ingestor,
the store and the embedders. Validation of request fields lives here; SQL lives in store.py."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

from psycopg_pool import AsyncConnectionPool

from ragtune.retriever.v1 import retriever_pb2 as pb
from ragtune.retriever.v1 import retriever_pb2_grpc
from ragtune_common.errors import InvalidArgument
from ragtune_common.names import check_name, check_tenant
from ragtune_common.paging import decode_page, next_page_token
from ragtune_common.protoconv import dict_to_struct, struct_to_dict, to_timestamp
from ragtune_retriever import store
from ragtune_retriever.embedding import Embedder
from ragtune_retriever.filters import compile_filter
from ragtune_retriever.ingest import DocumentSource, Ingestor, UpsertOutcome, UpsertStatus
from ragtune_retriever.runtime import RetrieverRuntime
from ragtune_retriever.search import Hit, SearchPlan, search_while_embedding
from ragtune_retriever.store import CollectionRow
from ragtune_retriever.text_embedding import check_inputs, embed_texts
from ragtune_retriever.validation import check_metadata, check_text, check_texts

_WORD = re.compile(r"[^\W_]+")
MAX_TOP_K = 1000
MAX_QUERY_CHARS = 8192
_MODES = {
    pb.SEARCH_MODE_UNSPECIFIED: "hybrid",
    pb.SEARCH_MODE_HYBRID: "hybrid",
    pb.SEARCH_MODE_VECTOR: "vector",
    pb.SEARCH_MODE_KEYWORD: "keyword",
}
_STATUS = {
    UpsertStatus.CREATED: pb.UPSERT_STATUS_CREATED,
    UpsertStatus.UPDATED: pb.UPSERT_STATUS_UPDATED,
    UpsertStatus.UNCHANGED: pb.UPSERT_STATUS_UNCHANGED,
}


def keyword_query(text: str) -> str:
    """The query's words only (at most 256): PostgreSQL stems them and the store ORs the lexemes,
    so user punctuation can never make the text-search query fail to parse."""
    return " ".join(_WORD.findall(text)[:256])


_VECTOR_TYPES = {
    pb.VECTOR_TYPE_UNSPECIFIED: "vector",
    pb.VECTOR_TYPE_VECTOR: "vector",
    pb.VECTOR_TYPE_HALFVEC: "halfvec",
}
_VECTOR_TYPES_PB = {"vector": pb.VECTOR_TYPE_VECTOR, "halfvec": pb.VECTOR_TYPE_HALFVEC}
_HNSW_MAX_DIMENSIONS = {"vector": 2000, "halfvec": 4000}  # pgvector's limits for an HNSW index


def _collection_pb(row: CollectionRow) -> pb.Collection:
    return pb.Collection(
        tenant=row.tenant,
        name=row.name,
        embedding_model=row.embedding_model,
        dimension=row.dimension,
        chunking=pb.ChunkingConfig(max_tokens=row.max_tokens, overlap_tokens=row.overlap_tokens),
        document_count=row.document_count,
        chunk_count=row.chunk_count,
        created_at=to_timestamp(row.created_at),
        metadata=dict_to_struct(row.metadata),
        vector_type=_VECTOR_TYPES_PB[row.vector_type],
    )


def _document_pb(collection: str, row: store.DocumentRow) -> pb.Document:
    return pb.Document(
        id=row.id,
        collection=collection,
        mime_type=row.mime_type,
        source_name=row.source_name,
        metadata=dict_to_struct(row.metadata),
        content_hash=row.content_hash,
        chunk_count=row.chunk_count,
        char_count=row.char_count,
        created_at=to_timestamp(row.created_at),
        updated_at=to_timestamp(row.updated_at),
        text=row.text,
    )


def _upsert_response(outcomes: list[UpsertOutcome]) -> pb.UpsertDocumentsResponse:
    response = pb.UpsertDocumentsResponse(
        results=[
            pb.UpsertResult(
                document_id=o.document_id,
                status=_STATUS[o.status],
                chunk_count=o.chunk_count,
                content_hash=o.content_hash,
            )
            for o in outcomes
        ]
    )
    for outcome in outcomes:
        if outcome.status is UpsertStatus.CREATED:
            response.created += 1
        elif outcome.status is UpsertStatus.UPDATED:
            response.updated += 1
        else:
            response.unchanged += 1
        response.chunk_count += outcome.chunk_count
    return response


def _sources(request: pb.UpsertDocumentsRequest, offset: int) -> list[DocumentSource]:
    sources = []
    for i, doc in enumerate(request.documents):
        field = f"documents[{offset + i}]"
        kind = doc.WhichOneof("body")
        if kind is None:
            raise InvalidArgument("needs text or data", field=f"{field}.body")
        sources.append(
            DocumentSource(
                field=field,
                id=check_text(doc.id, f"{field}.id"),
                body=doc.text if kind == "text" else doc.data,  # NULs in text are stripped, not refused
                mime_type=check_text(doc.mime_type, f"{field}.mime_type"),
                source_name=check_text(doc.source_name, f"{field}.source_name"),
                metadata=check_metadata(struct_to_dict(doc.metadata, f"{field}.metadata"), f"{field}.metadata"),
            )
        )
    return sources


class RetrieverServicer(retriever_pb2_grpc.RetrieverServiceServicer):
    def __init__(self, runtime: RetrieverRuntime) -> None:
        self._runtime = runtime
        self._settings = runtime.settings
        self._embedders = runtime.embedders

    @property
    def _pool(self) -> AsyncConnectionPool:
        return self._runtime.pool

    @property
    def _ingestor(self) -> Ingestor:
        return self._runtime.ingestor

    async def _collection(self, tenant: str, name: str, field: str = "collection") -> CollectionRow:
        return await store.get_collection(self._pool, check_tenant(tenant), check_name(name, field), field=field)

    async def CreateCollection(self, request: pb.CreateCollectionRequest, context: Any) -> pb.CreateCollectionResponse:
        tenant = check_tenant(request.tenant)
        name = check_name(request.name, "name")
        model = self._embedders.resolve(request.embedding_model or self._settings.embedding_model)
        max_tokens = request.chunking.max_tokens or self._settings.default_max_tokens
        overlap = (
            request.chunking.overlap_tokens
            if request.chunking.HasField("overlap_tokens")
            else min(self._settings.default_overlap_tokens, max_tokens // 4)
        )
        if not 16 <= max_tokens <= 8192:
            raise InvalidArgument("must be between 16 and 8192", field="chunking.max_tokens")
        if not 0 <= overlap < max_tokens:
            raise InvalidArgument("must be >= 0 and below max_tokens", field="chunking.overlap_tokens")
        if request.vector_type not in _VECTOR_TYPES:
            raise InvalidArgument(f"unknown vector type {request.vector_type}", field="vector_type")
        vector_type = _VECTOR_TYPES[request.vector_type]
        embedder = await self._embedders.get(model)
        if embedder.dimension > _HNSW_MAX_DIMENSIONS[vector_type]:
            raise InvalidArgument(
                f"{vector_type} indexes at most {_HNSW_MAX_DIMENSIONS[vector_type]} dimensions;"
                f" the model has {embedder.dimension}",
                field="vector_type",
            )
        model_limit = embedder.max_seq_length
        if max_tokens > model_limit:
            raise InvalidArgument(
                f"{max_tokens} exceeds the embedding model's limit of {model_limit} tokens",
                field="chunking.max_tokens",
            )
        metadata = check_metadata(struct_to_dict(request.metadata, "metadata"), "metadata")
        row = await store.create_collection(
            self._pool, tenant, name, model, embedder.dimension, max_tokens, overlap, metadata, vector_type
        )
        return pb.CreateCollectionResponse(collection=_collection_pb(row))

    async def GetCollection(self, request: pb.GetCollectionRequest, context: Any) -> pb.GetCollectionResponse:
        return pb.GetCollectionResponse(
            collection=_collection_pb(await self._collection(request.tenant, request.name, "name"))
        )

    async def ListCollections(self, request: pb.ListCollectionsRequest, context: Any) -> pb.ListCollectionsResponse:
        after, limit = decode_page(request.page.page_size, request.page.page_token)
        rows = await store.list_collections(self._pool, check_tenant(request.tenant), after, limit)
        return pb.ListCollectionsResponse(
            collections=[_collection_pb(r) for r in rows],
            next_page_token=next_page_token([r.name for r in rows], limit),
        )

    async def DeleteCollection(self, request: pb.DeleteCollectionRequest, context: Any) -> pb.DeleteCollectionResponse:
        await store.delete_collection(self._pool, await self._collection(request.tenant, request.name, "name"))
        return pb.DeleteCollectionResponse()

    def _check_count(self, count: int) -> None:
        if count > self._settings.max_documents_per_request:
            raise InvalidArgument(
                f"{count} documents in one request, over the limit of {self._settings.max_documents_per_request}",
                field="documents",
            )

    async def UpsertDocuments(self, request: pb.UpsertDocumentsRequest, context: Any) -> pb.UpsertDocumentsResponse:
        self._check_count(len(request.documents))
        if not request.documents:
            raise InvalidArgument("at least one document is required", field="documents")
        collection = await self._collection(request.tenant, request.collection)
        sources = _sources(request, 0)
        embedder = await self._embedders.get(collection.embedding_model)
        return _upsert_response(await self._ingestor.upsert(collection, embedder, sources))

    async def StreamUpsertDocuments(
        self, request_iterator: AsyncIterator[pb.UpsertDocumentsRequest], context: Any
    ) -> pb.UpsertDocumentsResponse:
        return _upsert_response(await self._ingestor.upsert_stream(self._stream_batches(request_iterator)))

    async def _stream_batches(
        self, requests: AsyncIterator[pb.UpsertDocumentsRequest]
    ) -> AsyncIterator[tuple[CollectionRow, Embedder, list[DocumentSource]]]:
        collection: CollectionRow | None = None
        embedder: Embedder | None = None
        pending: list[DocumentSource] = []
        seen = 0
        async for request in requests:
            if collection is None:
                collection = await self._collection(request.tenant, request.collection)
                embedder = await self._embedders.get(collection.embedding_model)
            elif request.collection and request.collection != collection.name:
                raise InvalidArgument("one stream writes to one collection", field="collection")
            self._check_count(len(request.documents))
            pending += _sources(request, seen)
            seen += len(request.documents)
            if len(pending) >= self._settings.stream_batch_documents:
                assert embedder is not None
                yield collection, embedder, pending
                pending = []
        if collection is None:
            raise InvalidArgument("the stream carried no request", field="collection")
        if pending:
            assert embedder is not None
            yield collection, embedder, pending

    async def GetDocument(self, request: pb.GetDocumentRequest, context: Any) -> pb.GetDocumentResponse:
        collection = await self._collection(request.tenant, request.collection)
        row = await store.get_document(self._pool, collection.id, check_text(request.id, "id"))
        return pb.GetDocumentResponse(document=_document_pb(collection.name, row))

    async def ListDocuments(self, request: pb.ListDocumentsRequest, context: Any) -> pb.ListDocumentsResponse:
        collection = await self._collection(request.tenant, request.collection)
        after, limit = decode_page(request.page.page_size, request.page.page_token)
        rows = await store.list_documents(self._pool, collection.id, after, limit)
        return pb.ListDocumentsResponse(
            documents=[_document_pb(collection.name, r) for r in rows],
            next_page_token=next_page_token([r.id for r in rows], limit),
        )

    async def DeleteDocuments(self, request: pb.DeleteDocumentsRequest, context: Any) -> pb.DeleteDocumentsResponse:
        if not request.ids:
            raise InvalidArgument("at least one id is required", field="ids")
        ids = check_texts(request.ids, "ids")
        collection = await self._collection(request.tenant, request.collection)
        deleted = await store.delete_documents(self._pool, collection.id, ids)
        missing = [i for i in request.ids if i not in set(deleted)]
        return pb.DeleteDocumentsResponse(deleted_ids=deleted, missing_ids=missing)

    async def Search(self, request: pb.SearchRequest, context: Any) -> pb.SearchResponse:
        query = check_text(request.query, "query").strip()
        if not query:
            raise InvalidArgument("must not be empty", field="query")
        if len(query) > MAX_QUERY_CHARS:
            raise InvalidArgument(f"is longer than {MAX_QUERY_CHARS} characters", field="query")
        top_k = request.top_k or 10
        if not 1 <= top_k <= MAX_TOP_K:
            raise InvalidArgument(f"must be between 1 and {MAX_TOP_K}", field="top_k")
        if request.mode not in _MODES:
            raise InvalidArgument(f"unknown mode {request.mode}", field="mode")
        ef_search = request.ef_search if request.HasField("ef_search") else self._settings.default_ef_search
        if not 1 <= ef_search <= 1000:
            raise InvalidArgument("must be between 1 and 1000", field="ef_search")
        if not request.collections:
            raise InvalidArgument("name at least one collection", field="collections")
        names = list(dict.fromkeys(request.collections))
        filter_sql, filter_params = compile_filter(struct_to_dict(request.filter, "filter"))
        collections = [
            await self._collection(request.tenant, name, f"collections[{i}]") for i, name in enumerate(names)
        ]
        mode = _MODES[request.mode]

        async def search_one(collection: CollectionRow) -> list[Hit]:
            plan = SearchPlan(
                mode=mode,
                query_vector=None,
                keyword_query=keyword_query(query),
                filter_sql=filter_sql,
                filter_params=filter_params,
                top_k=top_k,
                candidates=max(top_k, self._settings.fusion_candidates),
                rrf_k=self._settings.rrf_k,
                ef_search=ef_search,
                keyword_budget=self._settings.keyword_candidate_budget,
            )
            embedding = None
            if mode != "keyword":  # started here, awaited by the search (HYBRID's KEYWORD half runs meanwhile)
                embedding = (await self._embedders.get(collection.embedding_model)).embed_query(query)
            return await search_while_embedding(self._pool, collection, plan, embedding)

        results = await asyncio.gather(*(search_one(c) for c in collections))
        hits = sorted((h for hits in results for h in hits), key=lambda h: -h.score)[:top_k]
        return pb.SearchResponse(
            hits=[
                pb.SearchHit(
                    chunk_id=f"{h.document_id}#{h.seq}",
                    document_id=h.document_id,
                    collection=h.collection,
                    text=h.text,
                    score=h.score,
                    start_offset=h.start_offset,
                    end_offset=h.end_offset,
                    metadata=dict_to_struct(h.metadata),
                    source_name=h.source_name,
                    vector_rank=h.vector_rank,
                    keyword_rank=h.keyword_rank,
                )
                for h in hits
            ]
        )

    async def ListEmbeddingModels(
        self, request: pb.ListEmbeddingModelsRequest, context: Any
    ) -> pb.ListEmbeddingModelsResponse:
        default = self._settings.embedding_model
        return pb.ListEmbeddingModelsResponse(
            models=[
                pb.EmbeddingModel(name=name, default_variant=self._embedders.resolve(name), is_default=name == default)
                for name in self._settings.allowed_embedding_models
            ]
        )

    async def Embed(self, request: pb.EmbedRequest, context: Any) -> pb.EmbedResponse:
        check_tenant(request.tenant)
        inputs = check_inputs(request.inputs, self._settings.max_embed_inputs, self._settings.max_embed_input_chars)
        result = await embed_texts(self._embedders, request.model or self._settings.embedding_model, inputs)
        return pb.EmbedResponse(
            embeddings=[pb.Embedding(values=vector.tolist()) for vector in result.vectors],
            model=result.model,
            dimensions=int(result.vectors.shape[1]),
            prompt_tokens=result.prompt_tokens,
        )
