"""Ingestion: validate and parse a batch whole, skip what is unchanged, chunk and embed the rest,
then write it in one transaction. Streams overlap the embedding of one batch with the writing
of the previous one, so the database hides behind the model.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from psycopg_pool import AsyncConnectionPool

from ragtune_common.errors import InvalidArgument, RagtuneError
from ragtune_common.interceptors import to_domain_error
from ragtune_retriever import store
from ragtune_retriever.embedding import Embedder
from ragtune_retriever.extraction import TextExtractor
from ragtune_retriever.parsing import resolve_mime_type
from ragtune_retriever.store import CollectionRow, PreparedDocument

MAX_ID_CHARS = 256


class UpsertStatus(Enum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class DocumentSource:
    """One incoming document; ``field`` names it in errors (e.g. ``documents[3]``)."""

    field: str
    id: str
    body: str | bytes
    mime_type: str
    source_name: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class UpsertOutcome:
    document_id: str
    status: UpsertStatus
    chunk_count: int
    content_hash: str


def _check_source(source: DocumentSource, max_bytes: int) -> tuple[bytes, str]:
    """The document's bytes and resolved MIME type, after the checks that cost nothing."""
    size = len(source.body.encode("utf-8")) if isinstance(source.body, str) else len(source.body)
    if size == 0:
        raise InvalidArgument("document is empty", field=f"{source.field}.body")
    if size > max_bytes:
        raise InvalidArgument(f"document is {size} bytes, over the limit of {max_bytes}", field=f"{source.field}.body")
    if len(source.id) > MAX_ID_CHARS:
        raise InvalidArgument(f"id is longer than {MAX_ID_CHARS} characters", field=f"{source.field}.id")
    mime_type = resolve_mime_type(source.mime_type, source.source_name, field=f"{source.field}.mime_type")
    if isinstance(source.body, str) and mime_type == "application/pdf":
        raise InvalidArgument("a PDF must be sent as bytes (data), not text", field=f"{source.field}.text")
    data = source.body.encode("utf-8") if isinstance(source.body, str) else source.body
    return data, mime_type


def _prepared(source: DocumentSource, mime_type: str, text: str) -> PreparedDocument:
    content_hash = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return PreparedDocument(
        id=source.id or f"doc_{content_hash[:32]}",
        mime_type=mime_type,
        source_name=source.source_name,
        metadata=source.metadata,
        content_hash=content_hash,
        text=text,
    )


def _with_count(error: RagtuneError, written: int) -> RagtuneError:
    """The same error, telling a stream's client how many of its documents are stored."""
    return type(error)(f"{error.message} ({written} earlier documents were stored)", field=error.field)


def _same_metadata(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


class Ingestor:
    def __init__(self, pool: AsyncConnectionPool, max_document_bytes: int, extractor: TextExtractor) -> None:
        self._pool = pool
        self._max_bytes = max_document_bytes
        self._extractor = extractor

    async def parse(self, sources: Sequence[DocumentSource], seen_ids: set[str]) -> list[PreparedDocument]:
        """Validate and parse every document before anything is written; duplicate ids (in the
        batch or earlier in the same stream) are an error."""
        checked = [_check_source(source, self._max_bytes) for source in sources]
        texts: list[asyncio.Task[str]] = []
        try:
            async with asyncio.TaskGroup() as group:  # the first failure cancels (and kills) the rest
                for source, (data, mime_type) in zip(sources, checked, strict=True):
                    texts.append(group.create_task(self._extractor.extract(data, mime_type, f"{source.field}.data")))
        except BaseExceptionGroup as failures:  # the first document's error, as if parsed one by one
            failed = [e for t in texts if t.done() and not t.cancelled() and (e := t.exception()) is not None]
            raise (failed or list(failures.exceptions))[0] from None
        parsed = [
            _prepared(source, mime_type, text.result())
            for source, (_, mime_type), text in zip(sources, checked, texts, strict=True)
        ]
        for source, doc in zip(sources, parsed, strict=True):
            if doc.id in seen_ids:
                raise InvalidArgument(
                    f"document id {doc.id!r} appears twice in one request", field=f"{source.field}.id"
                )
            seen_ids.add(doc.id)
        return parsed

    async def prepare(
        self, collection: CollectionRow, embedder: Embedder, parsed: list[PreparedDocument]
    ) -> tuple[list[PreparedDocument], list[UpsertOutcome]]:
        """Decide each document's fate, then chunk and embed the new and changed ones."""
        existing = await store.existing_documents(self._pool, collection.id, [doc.id for doc in parsed])
        to_write: list[PreparedDocument] = []
        to_embed: list[PreparedDocument] = []
        outcomes: list[UpsertOutcome] = []
        for doc in parsed:
            old = existing.get(doc.id)
            if old is not None and old.content_hash == doc.content_hash:
                if _same_metadata(old.metadata, doc.metadata):
                    outcomes.append(UpsertOutcome(doc.id, UpsertStatus.UNCHANGED, old.chunk_count, doc.content_hash))
                else:  # same text, new metadata: no re-embedding
                    to_write.append(doc)
                    outcomes.append(UpsertOutcome(doc.id, UpsertStatus.UPDATED, old.chunk_count, doc.content_hash))
                continue
            to_write.append(doc)
            to_embed.append(doc)
        if to_embed:
            await self._chunk_and_embed(collection, embedder, to_embed)
        for doc in to_embed:
            status = UpsertStatus.UPDATED if doc.id in existing else UpsertStatus.CREATED
            assert doc.chunks is not None
            outcomes.append(UpsertOutcome(doc.id, status, len(doc.chunks), doc.content_hash))
        order = {doc.id: i for i, doc in enumerate(parsed)}
        outcomes.sort(key=lambda outcome: order[outcome.document_id])
        return to_write, outcomes

    async def _chunk_and_embed(
        self, collection: CollectionRow, embedder: Embedder, docs: list[PreparedDocument]
    ) -> None:
        chunked = await embedder.chunk([doc.text for doc in docs], collection.max_tokens, collection.overlap_tokens)
        for doc, chunks in zip(docs, chunked, strict=True):
            doc.chunks = chunks
        texts = [chunk.text for doc in docs for chunk in doc.chunks or ()]
        vectors = await embedder.embed_documents(texts)
        offset = 0
        for doc in docs:
            count = len(doc.chunks or ())
            doc.embeddings = vectors[offset : offset + count]
            offset += count

    async def upsert(
        self, collection: CollectionRow, embedder: Embedder, sources: Sequence[DocumentSource]
    ) -> list[UpsertOutcome]:
        parsed = await self.parse(sources, set())
        to_write, outcomes = await self.prepare(collection, embedder, parsed)
        await store.write_documents(self._pool, collection.id, to_write)
        return outcomes

    async def upsert_stream(
        self, batches: AsyncIterator[tuple[CollectionRow, Embedder, list[DocumentSource]]]
    ) -> list[UpsertOutcome]:
        """Each batch is written in its own transaction while the next one is being embedded.
        On an error, batches already written stay written (each is whole); the error says how many."""
        outcomes: list[UpsertOutcome] = []
        seen: set[str] = set()
        writing: asyncio.Task[None] | None = None
        written = 0
        try:
            async for collection, embedder, sources in batches:
                parsed = await self.parse(sources, seen)
                to_write, batch_outcomes = await self.prepare(collection, embedder, parsed)
                if writing is not None:
                    await writing
                    written = len(outcomes)
                writing = asyncio.create_task(store.write_documents(self._pool, collection.id, to_write))
                outcomes += batch_outcomes
            if writing is not None:
                await writing
        except Exception as exc:
            error = to_domain_error(exc)
            if error is None:
                raise
            if writing is not None:
                await asyncio.wait({writing})
                if not writing.cancelled() and writing.exception() is None:
                    written = len(outcomes)
            raise _with_count(error, written) from exc
        finally:
            if writing is not None and not writing.done():
                writing.cancel()
        return outcomes
