"""What the retriever needs at run time (database pool, embedders), opened before SERVING."""

from __future__ import annotations

import logging

import psycopg
from pgvector.psycopg import register_vector_async
from psycopg_pool import AsyncConnectionPool

from ragtune_common.database import apply_migrations, open_pool, resolve_database_url, wait_for_database
from ragtune_common.errors import Unavailable
from ragtune_retriever.embedding import EmbedderRegistry
from ragtune_retriever.extraction import ExtractionLimits, TextExtractor
from ragtune_retriever.ingest import Ingestor
from ragtune_retriever.settings import RetrieverSettings

log = logging.getLogger(__name__)

SCHEMA = "retriever"


class RetrieverRuntime:
    def __init__(self, settings: RetrieverSettings) -> None:
        self.settings = settings
        self.embedders = EmbedderRegistry(
            settings.embedding_device,
            settings.embedding_batch_size,
            settings.query_cache_size,
            settings.allowed_embedding_models,
            settings.embedding_backend,
            settings.state_dir / "embeddings",
        )
        self.extractor = TextExtractor(
            ExtractionLimits(
                timeout_s=settings.extraction_timeout_s,
                max_chars=settings.max_extracted_chars,
                memory_bytes=settings.extraction_memory_mib * 1024 * 1024,
                workers=settings.extraction_workers,
            )
        )
        self._pool: AsyncConnectionPool | None = None
        self._ingestor: Ingestor | None = None

    @property
    def pool(self) -> AsyncConnectionPool:
        if self._pool is None:
            raise Unavailable("the retriever is starting")
        return self._pool

    @property
    def ingestor(self) -> Ingestor:
        if self._ingestor is None:
            raise Unavailable("the retriever is starting")
        return self._ingestor

    async def start(self) -> None:
        """Connect (starting the embedded server if no DATABASE_URL), migrate, open the pool,
        and load the default embedding model."""
        url = resolve_database_url(self.settings, self.settings.state_dir)
        await wait_for_database(url, timeout_s=60)
        await apply_migrations(url, SCHEMA, "ragtune_retriever.migrations")

        async def configure(conn: psycopg.AsyncConnection) -> None:
            await register_vector_async(conn)

        self._pool = await open_pool(url, self.settings, configure=configure)
        self._ingestor = Ingestor(self._pool, self.settings.max_document_bytes, self.extractor)
        await self.extractor.start()
        await self.embedders.get(self.embedders.resolve(self.settings.embedding_model))

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        self.embedders.close()
        await self.extractor.close()
