"""The three systems ``bench.peers`` compares, behind one small interface: ingest documents in
batches, search with a query, drop what was built.

- ``Ragtune``: the retriever started as its own process, through its gRPC API (StreamUpsertDocuments,
  HYBRID Search), a fresh collection with the service's default chunking (256 tokens, overlap 32).
- ``LlamaIndexPG``: LlamaIndex ``PGVectorStore`` as its docs set it up for hybrid search with HNSW
  (``hybrid_search=True``, ``text_search_config="english"``, ``hnsw_kwargs``), fed by an
  ``IngestionPipeline`` (``SentenceSplitter`` with the MiniLM tokenizer, ``HuggingFaceEmbedding``);
  searched with the ``QueryFusionRetriever`` its Postgres guide shows for fused hybrid results (a
  dense and a sparse retriever, one query, reciprocal-rank fusion).
- ``LangChainPG``: LangChain ``PGVectorStore`` (langchain-postgres v2, the class its docs recommend over
  the legacy ``PGVector``) with a ``HybridSearchConfig`` (tsvector column, reciprocal-rank fusion), an
  ``HNSWIndex`` and the hybrid GIN index applied after loading as its guide does, fed by a
  ``RecursiveCharacterTextSplitter`` over the MiniLM tokenizer and ``HuggingFaceEmbeddings``.

Every side gets the same local MiniLM directory, the same HNSW build (m 16, ef_construction 64) and
ef_search (the retriever's default), and takes ``candidates`` rows from each list before fusion.
Peers embed in the bench process; the retriever embeds in its own.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from bench.common import Context, Retriever, stream_upsert
from ragtune.retriever.v1 import retriever_pb2 as pb

HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
RRF_K = 60
DIMENSION = 384


class System(Protocol):
    name: str

    def ingest(self, docs: Sequence[tuple[str, str]]) -> int:
        """Store ``(doc id, text)`` documents; the number of chunks stored."""

    def finish_ingest(self) -> None:
        """Whatever the system's guide does once loading is over (an index build); timed as ingest."""

    def search(self, query: str, top_k: int) -> list[str]:
        """Document ids of the ``top_k`` best chunks, best first (repeats possible)."""

    def close(self) -> None: ...


def sqlalchemy_url(database_url: str, driver: str) -> str:
    """``postgresql://...`` with a SQLAlchemy driver: ``postgresql+<driver>://...``."""
    scheme, sep, rest = database_url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {database_url!r}")
    return f"postgresql+{driver}://{rest}"


def chunk_budget(max_tokens: int, tokenizer: Any) -> int:
    """Word pieces a chunk may hold once the model's special tokens ([CLS], [SEP]) are counted, as
    the retriever's chunker counts them."""
    return max_tokens - len(tokenizer("")["input_ids"])


class Ragtune:
    name = "ragtune"

    def __init__(self, ctx: Context, backend: str | None = None) -> None:
        env = {"RAGTUNE_RETRIEVER_EMBEDDING_DEVICE": "cpu"}
        if backend:  # else the service's own default (auto: the ONNX int8 export on a CPU)
            env["RAGTUNE_RETRIEVER_EMBEDDING_BACKEND"] = backend
        self._retriever = Retriever(ctx, "peers", env=env)
        self._stub = self._retriever.__enter__()
        self.collection = f"bench-peers-{uuid.uuid4().hex[:8]}"
        created = self._stub.CreateCollection(pb.CreateCollectionRequest(name=self.collection), timeout=600)
        self.chunking = created.collection.chunking
        self.embedding_model = created.collection.embedding_model  # with its backend, e.g. ...@onnx-int8

    def ingest(self, docs: Sequence[tuple[str, str]]) -> int:
        response = stream_upsert(self._stub, self.collection, docs, per_message=16)
        if response.created != len(docs):
            raise RuntimeError(f"ragtune created {response.created} of {len(docs)} documents")
        return int(response.chunk_count)

    def finish_ingest(self) -> None:
        pass  # the collection's HNSW and GIN indexes are maintained while rows arrive

    def search(self, query: str, top_k: int) -> list[str]:
        request = pb.SearchRequest(collections=[self.collection], query=query, top_k=top_k, mode=pb.SEARCH_MODE_HYBRID)
        return [hit.document_id for hit in self._stub.Search(request, timeout=120).hits]

    def close(self) -> None:
        try:
            self._stub.DeleteCollection(pb.DeleteCollectionRequest(name=self.collection), timeout=600)
        finally:
            self._retriever.__exit__()


class LlamaIndexPG:
    name = "llamaindex"

    def __init__(
        self,
        database_url: str,
        model_path: Path,
        tokenizer: Any,
        max_tokens: int,
        overlap: int,
        ef_search: int,
        candidates: int,
    ) -> None:
        from llama_index.core import VectorStoreIndex
        from llama_index.core.ingestion import IngestionPipeline
        from llama_index.core.node_parser import SentenceSplitter
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding
        from llama_index.vector_stores.postgres import PGVectorStore

        self.table = f"peers_{uuid.uuid4().hex[:8]}"
        self._store = PGVectorStore.from_params(
            connection_string=sqlalchemy_url(database_url, "psycopg2"),
            async_connection_string=sqlalchemy_url(database_url, "asyncpg"),
            table_name=self.table,
            embed_dim=DIMENSION,
            hybrid_search=True,
            text_search_config="english",
            hnsw_kwargs={
                "hnsw_m": HNSW_M,
                "hnsw_ef_construction": HNSW_EF_CONSTRUCTION,
                "hnsw_ef_search": ef_search,
                "hnsw_dist_method": "vector_cosine_ops",
            },
        )
        self._embed = HuggingFaceEmbedding(model_name=str(model_path), device="cpu", embed_batch_size=32)
        splitter = SentenceSplitter(
            chunk_size=chunk_budget(max_tokens, tokenizer),
            chunk_overlap=overlap,
            tokenizer=lambda text: tokenizer.encode(text, add_special_tokens=False),
        )
        self._pipeline = IngestionPipeline(transformations=[splitter, self._embed], vector_store=self._store)
        self._index = VectorStoreIndex.from_vector_store(self._store, embed_model=self._embed)
        self._retrievers: dict[int, Any] = {}
        self._candidates = candidates

    def ingest(self, docs: Sequence[tuple[str, str]]) -> int:
        from llama_index.core import Document

        documents = [Document(text=text, id_=doc_id) for doc_id, text in docs]
        return len(self._pipeline.run(documents=documents))

    def finish_ingest(self) -> None:
        pass  # PGVectorStore creates its HNSW and GIN indexes with the table, before loading

    def _retriever(self, top_k: int) -> Any:
        if top_k not in self._retrievers:
            from llama_index.core.llms.mock import MockLLM
            from llama_index.core.retrievers import QueryFusionRetriever
            from llama_index.core.retrievers.fusion_retriever import FUSION_MODES

            dense = self._index.as_retriever(vector_store_query_mode="default", similarity_top_k=self._candidates)
            sparse = self._index.as_retriever(vector_store_query_mode="sparse", similarity_top_k=self._candidates)
            self._retrievers[top_k] = QueryFusionRetriever(
                [dense, sparse],
                llm=MockLLM(),  # num_queries=1: no query generation, the LLM is never called
                mode=FUSION_MODES.RECIPROCAL_RANK,
                similarity_top_k=top_k,
                num_queries=1,
                use_async=False,
            )
        return self._retrievers[top_k]

    def search(self, query: str, top_k: int) -> list[str]:
        return [str(hit.node.ref_doc_id) for hit in self._retriever(top_k).retrieve(query)]

    def close(self) -> None:
        from sqlalchemy import text

        engine = self._store.client
        if engine is not None:
            with engine.begin() as conn:
                conn.execute(text(f'DROP TABLE IF EXISTS public."data_{self.table}"'))
            engine.dispose()


class LangChainPG:
    name = "langchain"

    def __init__(
        self,
        database_url: str,
        model_path: Path,
        tokenizer: Any,
        max_tokens: int,
        overlap: int,
        ef_search: int,
        candidates: int,
    ) -> None:
        from langchain_huggingface import HuggingFaceEmbeddings
        from langchain_postgres import Column, PGEngine, PGVectorStore
        from langchain_postgres.v2.hybrid_search_config import HybridSearchConfig, reciprocal_rank_fusion
        from langchain_postgres.v2.indexes import HNSWQueryOptions
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        self.table = f"peers_lc_{uuid.uuid4().hex[:8]}"
        self._engine = PGEngine.from_connection_string(url=sqlalchemy_url(database_url, "psycopg"))
        self._hybrid = HybridSearchConfig(
            tsv_lang="pg_catalog.english",
            fusion_function=reciprocal_rank_fusion,
            fusion_function_parameters={"rrf_k": RRF_K},
            primary_top_k=candidates,
            secondary_top_k=candidates,
        )
        self._engine.init_vectorstore_table(
            table_name=self.table,
            vector_size=DIMENSION,
            metadata_columns=[Column("doc_id", "TEXT")],
            hybrid_search_config=self._hybrid,
        )
        embeddings = HuggingFaceEmbeddings(
            model_name=str(model_path),
            model_kwargs={"device": "cpu"},
            encode_kwargs={"normalize_embeddings": True, "batch_size": 32},
        )
        self._store = PGVectorStore.create_sync(
            engine=self._engine,
            embedding_service=embeddings,
            table_name=self.table,
            metadata_columns=["doc_id"],
            hybrid_search_config=self._hybrid,
            index_query_options=HNSWQueryOptions(ef_search=ef_search),
        )
        self._splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
            tokenizer, chunk_size=chunk_budget(max_tokens, tokenizer), chunk_overlap=overlap
        )

    def ingest(self, docs: Sequence[tuple[str, str]]) -> int:
        chunks = self._splitter.create_documents(
            [text for _, text in docs], metadatas=[{"doc_id": doc_id} for doc_id, _ in docs]
        )
        return len(self._store.add_documents(chunks))

    def finish_ingest(self) -> None:
        from langchain_postgres.v2.indexes import HNSWIndex

        self._store.apply_vector_index(HNSWIndex(m=HNSW_M, ef_construction=HNSW_EF_CONSTRUCTION))
        self._store.apply_hybrid_search_index()

    def search(self, query: str, top_k: int) -> list[str]:
        # langchain-postgres 0.0.19 writes the first query's text into the store's shared
        # HybridSearchConfig (fts_query) and reuses it for every later search (its open issue #337);
        # a config per call, as its search methods accept, keeps each query's keyword half its own
        config = dataclasses.replace(self._hybrid, fts_query=query, fusion_function_parameters={"rrf_k": RRF_K})
        hits = self._store.similarity_search(query, k=top_k, hybrid_search_config=config)
        return [str(doc.metadata["doc_id"]) for doc in hits]

    def close(self) -> None:
        try:
            self._engine.drop_table(self.table)
        finally:
            self._engine._run_as_sync(self._engine.close())
