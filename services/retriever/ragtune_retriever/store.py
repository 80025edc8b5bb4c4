"""All SQL of the retriever: collections, documents, chunks (schema ``retriever``).

Collection ids and dimensions are integers read from our own tables and enter SQL as literals
(so the planner can match each collection's partial HNSW index); everything from a request
travels as a parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from ragtune_common.errors import AlreadyExists, NotFound
from ragtune_retriever.chunking import Chunk


@dataclass(frozen=True)
class CollectionRow:
    id: int
    tenant: str
    name: str
    embedding_model: str
    dimension: int
    max_tokens: int
    overlap_tokens: int
    metadata: dict[str, Any]
    created_at: datetime
    document_count: int = 0
    chunk_count: int = 0
    vector_type: str = "vector"  # the HNSW index's precision: 'vector' (float32) or 'halfvec' (float16)


@dataclass
class PreparedDocument:
    """A document ready to write: ``chunks``/``embeddings`` are None for a metadata-only update."""

    id: str
    mime_type: str
    source_name: str
    metadata: dict[str, Any]
    content_hash: str
    text: str
    chunks: list[Chunk] | None = None
    embeddings: np.ndarray | None = None


@dataclass(frozen=True)
class ExistingDocument:
    content_hash: str
    metadata: dict[str, Any]
    chunk_count: int


@dataclass(frozen=True)
class DocumentRow:
    id: str
    mime_type: str
    source_name: str
    metadata: dict[str, Any]
    content_hash: str
    chunk_count: int
    char_count: int
    created_at: datetime
    updated_at: datetime
    text: str = ""


_COLLECTION_COLUMNS = sql.SQL(
    "c.id, c.tenant, c.name, c.embedding_model, c.dimension, c.max_tokens, c.overlap_tokens, c.metadata,"
    " c.created_at, c.vector_type,"
    " (SELECT count(*) FROM retriever.documents d WHERE d.collection_id = c.id) AS document_count,"
    " (SELECT coalesce(sum(d.chunk_count), 0) FROM retriever.documents d WHERE d.collection_id = c.id) AS chunk_count"
)


VECTOR_TYPES = ("vector", "halfvec")


def _hnsw_index(collection_id: int) -> sql.Identifier:
    return sql.Identifier(f"chunks_hnsw_{collection_id}")


def hnsw_index_sql(collection_id: int, dimension: int, vector_type: str, name: str | None = None) -> sql.Composed:
    """The collection's partial HNSW index over ``embedding::<vector_type>(<dimension>)``; the
    search casts the same way, so the planner matches it (``name`` only for benchmarks)."""
    if vector_type not in VECTOR_TYPES:
        raise ValueError(f"unknown vector type {vector_type!r}")
    return sql.SQL(
        "CREATE INDEX {index} ON retriever.chunks USING hnsw ((embedding::{vtype}({dim})) {ops})"
        " WHERE collection_id = {cid}"
    ).format(
        index=sql.Identifier(name) if name else _hnsw_index(collection_id),
        vtype=sql.SQL(vector_type),
        dim=sql.Literal(dimension),
        ops=sql.SQL(f"{vector_type}_cosine_ops"),
        cid=sql.Literal(collection_id),
    )


async def create_collection(
    pool: AsyncConnectionPool,
    tenant: str,
    name: str,
    embedding_model: str,
    dimension: int,
    max_tokens: int,
    overlap_tokens: int,
    metadata: dict[str, Any],
    vector_type: str = "vector",
) -> CollectionRow:
    """Insert the collection and build its (empty) HNSW index in the same transaction."""
    async with pool.connection() as conn, conn.transaction():
        try:
            cur = await conn.execute(
                "INSERT INTO retriever.collections"
                " (tenant, name, embedding_model, dimension, max_tokens, overlap_tokens, metadata, vector_type)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (tenant, name, embedding_model, dimension, max_tokens, overlap_tokens, Jsonb(metadata), vector_type),
            )
        except psycopg.errors.UniqueViolation:
            raise AlreadyExists(f"collection {name!r} already exists", field="name") from None
        row = await cur.fetchone()
        assert row is not None
        collection_id = int(row[0])
        await conn.execute(hnsw_index_sql(collection_id, dimension, vector_type))
    return await get_collection(pool, tenant, name)


async def get_collection(pool: AsyncConnectionPool, tenant: str, name: str, field: str = "name") -> CollectionRow:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            sql.SQL("SELECT {} FROM retriever.collections c WHERE c.tenant = %s AND c.name = %s").format(
                _COLLECTION_COLUMNS
            ),
            (tenant, name),
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"collection {name!r} not found", field=field)
    return CollectionRow(**row)


async def list_collections(pool: AsyncConnectionPool, tenant: str, after: str, limit: int) -> list[CollectionRow]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            sql.SQL(
                "SELECT {} FROM retriever.collections c WHERE c.tenant = %s AND c.name > %s ORDER BY c.name LIMIT %s"
            ).format(_COLLECTION_COLUMNS),
            (tenant, after, limit),
        )
        return [CollectionRow(**row) for row in await cur.fetchall()]


async def delete_collection(pool: AsyncConnectionPool, collection: CollectionRow) -> None:
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            sql.SQL("DROP INDEX IF EXISTS retriever.{}").format(_hnsw_index(collection.id)),
        )
        await conn.execute("DELETE FROM retriever.chunks WHERE collection_id = %s", (collection.id,))
        await conn.execute("DELETE FROM retriever.collections WHERE id = %s", (collection.id,))


async def existing_documents(
    pool: AsyncConnectionPool, collection_id: int, ids: Sequence[str]
) -> dict[str, ExistingDocument]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, content_hash, metadata, chunk_count FROM retriever.documents"
            " WHERE collection_id = %s AND id = ANY(%s)",
            (collection_id, list(ids)),
        )
        return {row[0]: ExistingDocument(row[1], row[2], row[3]) for row in await cur.fetchall()}


# Chunks go in by binary COPY (one statement per document, so the statistics trigger runs once).
_COPY_CHUNKS = (
    "COPY retriever.chunks (collection_id, document_id, seq, body, start_offset, end_offset, metadata, embedding)"
    " FROM STDIN (FORMAT BINARY)"
)
_CHUNK_TYPES = ["bigint", "text", "integer", "text", "integer", "integer", "jsonb", "vector"]


async def write_documents(pool: AsyncConnectionPool, collection_id: int, documents: Sequence[PreparedDocument]) -> None:
    """Upsert documents and replace their chunks, all in one transaction."""
    if not documents:
        return
    async with pool.connection() as conn, conn.transaction():
        for doc in documents:
            chunk_count = len(doc.chunks) if doc.chunks is not None else None
            await conn.execute(
                "INSERT INTO retriever.documents"
                " (collection_id, id, mime_type, source_name, metadata, content_hash, body, chunk_count)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, coalesce(%s, 0))"
                " ON CONFLICT (collection_id, id) DO UPDATE SET mime_type = excluded.mime_type,"
                " source_name = excluded.source_name, metadata = excluded.metadata,"
                " content_hash = excluded.content_hash, body = excluded.body,"
                " chunk_count = coalesce(%s, retriever.documents.chunk_count), updated_at = now()",
                (
                    collection_id,
                    doc.id,
                    doc.mime_type,
                    doc.source_name,
                    Jsonb(doc.metadata),
                    doc.content_hash,
                    doc.text,
                    chunk_count,
                    chunk_count,
                ),
            )
            if doc.chunks is None:
                await conn.execute(
                    "UPDATE retriever.chunks SET metadata = %s WHERE collection_id = %s AND document_id = %s",
                    (Jsonb(doc.metadata), collection_id, doc.id),
                )
                continue
            assert doc.embeddings is not None
            await conn.execute(
                "DELETE FROM retriever.chunks WHERE collection_id = %s AND document_id = %s", (collection_id, doc.id)
            )
            metadata = Jsonb(doc.metadata)
            async with conn.cursor() as cur, cur.copy(_COPY_CHUNKS) as copy:
                copy.set_types(_CHUNK_TYPES)
                for seq, (chunk, vector) in enumerate(zip(doc.chunks, doc.embeddings, strict=True)):
                    row = (collection_id, doc.id, seq, chunk.text, chunk.start, chunk.end, metadata, vector)
                    await copy.write_row(row)


_DOCUMENT_COLUMNS = (
    "id, mime_type, source_name, metadata, content_hash, chunk_count, length(body) AS char_count,"
    " created_at, updated_at"
)


async def get_document(pool: AsyncConnectionPool, collection_id: int, document_id: str) -> DocumentRow:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            f"SELECT {_DOCUMENT_COLUMNS}, body AS text FROM retriever.documents WHERE collection_id = %s AND id = %s",
            (collection_id, document_id),
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"document {document_id!r} not found", field="id")
    return DocumentRow(**row)


async def list_documents(pool: AsyncConnectionPool, collection_id: int, after: str, limit: int) -> list[DocumentRow]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            f"SELECT {_DOCUMENT_COLUMNS} FROM retriever.documents WHERE collection_id = %s AND id > %s"
            " ORDER BY id LIMIT %s",
            (collection_id, after, limit),
        )
        return [DocumentRow(**row) for row in await cur.fetchall()]


async def delete_documents(pool: AsyncConnectionPool, collection_id: int, ids: Sequence[str]) -> list[str]:
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "DELETE FROM retriever.documents WHERE collection_id = %s AND id = ANY(%s) RETURNING id",
            (collection_id, list(ids)),
        )
        return [row[0] for row in await cur.fetchall()]
