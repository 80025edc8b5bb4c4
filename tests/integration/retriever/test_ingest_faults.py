"""PostgreSQL stopped for 10 s in the middle of an ingest (real retriever server, real gRPC, the
session's real PostgreSQL, stopped the hard way): every document is either whole (all chunks with
embeddings, BM25 statistics that count it) or absent, every failed call is UNAVAILABLE, nothing
acknowledged is lost, and the retriever serves again once the database is back."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

import grpc
import psycopg
import pytest

from tests.fixtures.database import stop_embedded
from tests.integration.retriever.helpers import doc, search, upsert

OUTAGE_S = 10.0
WORDS = [
    "river",
    "lake",
    "harbour",
    "mountain",
    "valley",
    "forest",
    "meadow",
    "glacier",
    "canyon",
    "delta",
    "island",
    "reef",
]


@dataclass
class Ledger:
    """What each writer sent and what it was told."""

    acknowledged: list[list[str]] = field(default_factory=list)
    failed: list[tuple[list[str], grpc.StatusCode, str]] = field(default_factory=list)
    streams: list[tuple[list[list[str]], grpc.StatusCode | None, str]] = field(default_factory=list)


def text(doc_id: str, n: int) -> str:
    words = [WORDS[(n + i) % len(WORDS)] for i in range(40 + n % 60)]
    return f"Document {doc_id}. " + " ".join(words) + "."


async def unary_writer(stub, collection: str, prefix: str, stop: asyncio.Event, ledger: Ledger) -> None:
    for n in itertools.count():
        if stop.is_set():
            return
        ids = [f"{prefix}-{n}-{i}" for i in range(3)]
        try:
            await stub.UpsertDocuments(upsert(collection, *[doc(i, text(i, n)) for i in ids]), timeout=120)
            ledger.acknowledged.append(ids)
        except grpc.aio.AioRpcError as exc:
            ledger.failed.append((ids, exc.code(), exc.details() or ""))
            await asyncio.sleep(0.2)


async def stream_writer(stub, collection: str, stop: asyncio.Event, ledger: Ledger) -> None:
    for n in itertools.count():
        if stop.is_set():
            return
        batches = [[f"s-{n}-{b}-{i}" for i in range(4)] for b in range(4)]  # stream_batch_documents=4

        async def requests(batches=batches, n=n):
            for batch in batches:
                yield upsert(collection, *[doc(i, text(i, n)) for i in batch])

        try:
            await stub.StreamUpsertDocuments(requests(), timeout=120)
            ledger.streams.append((batches, None, ""))
        except grpc.aio.AioRpcError as exc:
            ledger.streams.append((batches, exc.code(), exc.details() or ""))
            await asyncio.sleep(0.2)


async def fetch_one(conn: psycopg.AsyncConnection, query: str, params: tuple) -> tuple:
    row = await (await conn.execute(query, params)).fetchone()
    assert row is not None
    return row


async def stored_state(database_url: str, collection: str) -> dict[str, int]:
    """Every stored document of the collection with its chunk count, after checking that each is
    whole and that the BM25 statistics count exactly the stored chunks."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        (cid,) = await fetch_one(conn, "SELECT id FROM retriever.collections WHERE name = %s", (collection,))
        rows = await (
            await conn.execute(
                "SELECT d.id, d.chunk_count, count(c.id), coalesce(max(c.seq), -1),"
                " count(c.id) FILTER (WHERE c.embedding IS NULL OR vector_dims(c.embedding) <> 384)"
                " FROM retriever.documents d LEFT JOIN retriever.chunks c"
                " ON c.collection_id = d.collection_id AND c.document_id = d.id"
                " WHERE d.collection_id = %s GROUP BY d.id, d.chunk_count",
                (cid,),
            )
        ).fetchall()
        for doc_id, declared, chunks, last_seq, bad_vectors in rows:
            assert declared > 0 and chunks == declared and last_seq == declared - 1, (doc_id, declared, chunks)
            assert bad_vectors == 0, doc_id
        orphans = await fetch_one(
            conn,
            "SELECT count(*) FROM retriever.chunks c WHERE c.collection_id = %s AND NOT EXISTS (SELECT 1"
            " FROM retriever.documents d WHERE d.collection_id = c.collection_id AND d.id = c.document_id)",
            (cid,),
        )
        assert orphans[0] == 0
        stats = await fetch_one(
            conn,
            "SELECT s.chunks, s.lexemes, (SELECT count(*) FROM retriever.chunks WHERE collection_id = %s),"
            " (SELECT coalesce(sum(length(tsv)), 0) FROM retriever.chunks WHERE collection_id = %s)"
            " FROM retriever.collection_stats s WHERE s.collection_id = %s",
            (cid, cid, cid),
        )
        assert stats[0] == stats[2] and stats[1] == stats[3], stats
        drift = await fetch_one(
            conn,
            "WITH truth AS (SELECT u.lexeme, count(*) AS df FROM retriever.chunks c, unnest(c.tsv) u"
            " WHERE c.collection_id = %s GROUP BY 1)"
            " SELECT count(*) FROM truth t FULL JOIN"
            " (SELECT lexeme, df FROM retriever.lexeme_stats WHERE collection_id = %s AND df <> 0) s"
            " ON s.lexeme = t.lexeme WHERE t.df IS DISTINCT FROM s.df",
            (cid, cid),
        )
        assert drift[0] == 0, "lexeme statistics drifted from the stored chunks"
    return {row[0]: row[1] for row in rows}


def stop_postgres(pg_server) -> None:
    # immediate: the postmaster and every backend die at once, as in a crash; restart runs recovery
    stop_embedded(pg_server, "immediate")


@pytest.mark.timeout(600)
async def test_database_stopped_during_ingest_loses_nothing_and_heals(stub, collection, pg_server, database_url):
    if pg_server is None:
        pytest.skip("needs the embedded PostgreSQL, which this test stops and restarts (a container is in use)")
    ledger = Ledger()
    stop = asyncio.Event()
    writers = [
        asyncio.create_task(unary_writer(stub, collection, "u1", stop, ledger)),
        asyncio.create_task(unary_writer(stub, collection, "u2", stop, ledger)),
        asyncio.create_task(stream_writer(stub, collection, stop, ledger)),
    ]
    try:
        await asyncio.sleep(4)  # some writes land before the outage
        before = len(ledger.acknowledged)
        await asyncio.to_thread(stop_postgres, pg_server)
        try:
            await asyncio.sleep(OUTAGE_S)
        finally:
            await asyncio.to_thread(pg_server.ensure_postgres_running)
        during = len(ledger.acknowledged)
        for _ in range(120):  # writers keep going until the service heals
            await asyncio.sleep(0.5)
            if len(ledger.acknowledged) >= during + 4:
                break
    finally:
        stop.set()
        await asyncio.gather(*writers)

    assert before > 0, "nothing was written before the outage"
    assert ledger.failed or any(code for _, code, _ in ledger.streams), "the outage was not noticed"
    assert len(ledger.acknowledged) >= during + 4, "the retriever did not serve again after the restart"
    for ids, code, details in ledger.failed:
        assert code == grpc.StatusCode.UNAVAILABLE, (ids, code, details)
    for _, code, details in ledger.streams:
        assert code in (None, grpc.StatusCode.UNAVAILABLE), (code, details)

    stored = await stored_state(database_url, collection)  # each stored document is whole
    for ids in ledger.acknowledged:
        assert all(i in stored for i in ids), f"acknowledged documents lost: {ids}"
    for ids, _, _ in ledger.failed:  # one transaction per call: all or nothing
        assert len({i in stored for i in ids}) == 1, f"a failed call left part of its batch: {ids}"
    for batches, code, details in ledger.streams:
        for batch in batches:  # one transaction per batch
            assert len({i in stored for i in batch}) == 1, f"a stream batch was half-written: {batch}"
        if code is None:
            assert all(i in stored for batch in batches for i in batch)
        else:  # the error says how many of the stream's documents are stored, and they are
            assert "earlier documents were stored" in details, details
            reported = int(details.rsplit("(", 1)[1].split()[0])
            sent = [i for batch in batches for i in batch]
            assert all(i in stored for i in sent[:reported]), (reported, details)

    hits = (await stub.Search(search(collection, "glacier canyon", top_k=5), timeout=30)).hits
    assert hits
    failed_streams = sum(code is not None for _, code, _ in ledger.streams)
    print(  # the figures for the fault matrix (pytest -s)
        f"\nPostgreSQL stopped {OUTAGE_S:g} s during ingest: {len(ledger.acknowledged) + len(ledger.failed)} unary"
        f" upserts ({len(ledger.failed)} failed, UNAVAILABLE), {len(ledger.streams)} streams ({failed_streams} failed),"
        f" {len(stored)} documents stored whole, 0 partial, 0 acknowledged lost"
    )
