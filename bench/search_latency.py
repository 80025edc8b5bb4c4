"""search_latency: HYBRID search latency through gRPC vs the same SQL issued directly, on a
collection of >= 100k chunks; and HNSW recall@10 at the default ef_search vs exact search.

Collection: SciFact chunked small (max_tokens=16, overlap 0: about 150k chunks; SQuAD dev contexts
are added if that ever falls below 100k), built once and reused across runs (--latency-rebuild).

Latency, measured: ``Search`` (HYBRID, top_k=10) over gRPC, client wall time. Baseline, same run:
in the bench process, the query embedding (the service's own ``Embedder.encode``, on a worker
thread as the service does) and the service's own store call (``search.hybrid_search`` with the
service's settings, on an async psycopg pool: its KEYWORD half runs during the embedding).
Fairness: a warm-up pass uses other SciFact queries; every measured query is then new to the
service, so its query-embedding cache never answers and both sides pay for one embedding. The sides
alternate per query, and which goes first alternates too, so that noise and page-cache warmth fall
evenly. Target p50 ratio <= 1.3.

Recall: for the measured queries, VECTOR top-10 through the service vs the exact top-10 by
sequential scan (``SET LOCAL enable_indexscan = off``); recall = |intersection| / 10, averaged.
Target >= 0.98. Beside it: a tie-aware figure (a hit counts if its distance is within the exact
10th), the index alone (same vector, index vs exact, in SQL) and the service at other ef_search.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector, register_vector_async
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from bench import common
from bench.common import Context, percentile, report
from ragtune.retriever.v1 import retriever_pb2 as pb
from ragtune_common.database import open_pool
from ragtune_retriever.embedding import Embedder
from ragtune_retriever.filters import compile_filter
from ragtune_retriever.search import SEARCH_SETTINGS, SearchPlan, hybrid_search
from ragtune_retriever.service import keyword_query
from ragtune_retriever.settings import RetrieverSettings
from ragtune_retriever.store import CollectionRow

NAME = "search_latency"
MIN_CHUNKS = 100_000
TOP_K = 10
TARGET_P50_RATIO = 1.3
TARGET_RECALL = 0.98
EF_SWEEP = (100, 200, 400)  # recall through the service at these ef_search too
_TOP = (
    "SELECT document_id || '#' || seq, embedding::vector({dim}) <=> %s::vector({dim}) AS distance"
    " FROM retriever.chunks WHERE collection_id = {cid} ORDER BY distance LIMIT {k}"
)


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--latency-collection", default="bench-scifact-16tok", help="reused across runs")
    group.add_argument("--latency-rebuild", action="store_true", help="delete and rebuild the collection")
    group.add_argument("--latency-max-tokens", type=int, default=16)
    group.add_argument("--latency-queries", type=int, default=200, help="measured SciFact test queries")
    group.add_argument("--latency-warmup", type=int, default=100, help="warm-up queries (SciFact, not measured)")


def build(ctx: Context, stub: Any, args: argparse.Namespace) -> pb.Collection:
    name, max_tokens = args.latency_collection, args.latency_max_tokens
    if args.latency_rebuild and common.get_collection(stub, name) is not None:
        stub.DeleteCollection(pb.DeleteCollectionRequest(name=name), timeout=600)
    collection = common.ensure_collection(stub, name, max_tokens, 0)
    if collection.chunk_count >= MIN_CHUNKS:
        print(f"  reusing {name}: {collection.document_count} documents, {collection.chunk_count} chunks")
        return collection
    print(f"  building {name} (max_tokens={max_tokens}, overlap 0); many minutes", flush=True)
    common.ingest_resumable(stub, name, common.load_scifact(ctx.datasets / "scifact").corpus, per_stream=512)
    collection = common.ensure_collection(stub, name, max_tokens, 0)
    if collection.chunk_count < MIN_CHUNKS:
        squad = json.loads((ctx.datasets / "squad-v1.1" / "dev-v1.1.json").read_text(encoding="utf-8"))
        contexts = [
            (f"squad-{a}-{p}", para["context"])
            for a, article in enumerate(squad["data"])
            for p, para in enumerate(article["paragraphs"])
        ]
        common.ingest_resumable(stub, name, contexts, per_stream=512)
        collection = common.ensure_collection(stub, name, max_tokens, 0)
    print(f"  {name}: {collection.document_count} documents, {collection.chunk_count} chunks", flush=True)
    return collection


class Direct:
    """The service's search path without gRPC: query embedding + the store call, in the bench process."""

    def __init__(self, conn: psycopg.Connection, url: str, settings: RetrieverSettings, collection: str) -> None:
        self.conn, self.url, self.settings = conn, url, settings
        self.loop = asyncio.new_event_loop()
        self.pool: AsyncConnectionPool | None = None
        self.embedder = Embedder(settings.embedding_model, settings.embedding_device, settings.embedding_batch_size, 0)
        self.thread = ThreadPoolExecutor(max_workers=1)  # the service embeds queries on a worker thread too
        self.filter_sql, self.filter_params = compile_filter({})
        cur = conn.cursor(row_factory=dict_row)
        cur.execute(
            "SELECT id, tenant, name, embedding_model, dimension, max_tokens, overlap_tokens, metadata, created_at,"
            " vector_type FROM retriever.collections WHERE tenant = 'default' AND name = %s",
            (collection,),
        )
        self.row = CollectionRow(**cur.fetchone())  # type: ignore[arg-type]
        self.parts_ms: dict[str, list[float]] = {"embed": [], "sql": []}  # where the baseline's time goes

    def embed(self, query: str) -> np.ndarray:
        return self.thread.submit(self.embedder.encode, [query]).result()[0]

    async def _embed_timed(self, query: str, start: float) -> np.ndarray:
        vector = (await asyncio.get_running_loop().run_in_executor(self.thread, self.embedder.encode, [query]))[0]
        self.parts_ms["embed"].append(1000 * (time.perf_counter() - start))
        return vector

    async def _search(self, query: str) -> list[Any]:
        if self.pool is None:
            self.pool = await open_pool(self.url, self.settings, configure=register_vector_async)
        plan = SearchPlan(
            mode="hybrid",
            query_vector=None,
            keyword_query=keyword_query(query),
            filter_sql=self.filter_sql,
            filter_params=self.filter_params,
            top_k=TOP_K,
            candidates=max(TOP_K, self.settings.fusion_candidates),
            rrf_k=self.settings.rrf_k,
            ef_search=self.settings.default_ef_search,
            keyword_budget=self.settings.keyword_candidate_budget,
        )
        start = time.perf_counter()
        hits = await hybrid_search(self.pool, self.row, plan, self._embed_timed(query, start))
        self.parts_ms["sql"].append(1000 * (time.perf_counter() - start) - self.parts_ms["embed"][-1])
        return hits

    def search(self, query: str) -> list[Any]:
        """The service's hybrid path (``search.hybrid_search``: KEYWORD half during the embedding)."""
        return self.loop.run_until_complete(self._search(query))

    def close(self) -> None:
        if self.pool is not None:
            self.loop.run_until_complete(self.pool.close())
        self.loop.close()

    def top(self, vector: np.ndarray, exact: bool) -> list[tuple[str, float]]:
        """Top-10 chunk ids and distances in SQL: by the HNSW index, or by a sequential scan."""
        statement = sql.SQL(_TOP).format(dim=self.row.dimension, cid=self.row.id, k=TOP_K)
        with self.conn.transaction():
            if exact:
                self.conn.execute("SET LOCAL enable_indexscan = off")
            self.conn.execute(SEARCH_SETTINGS, (str(self.settings.default_ef_search),))
            return [(r[0], float(r[1])) for r in self.conn.execute(statement, (vector,)).fetchall()]


def run(ctx: Context, args: argparse.Namespace) -> bool:
    settings = RetrieverSettings()
    data = common.load_scifact(ctx.datasets / "scifact")
    test_texts = list(dict.fromkeys(data.queries[q].strip() for q in data.test_qrels if q in data.queries))
    measured = test_texts[: args.latency_queries]
    others = [t.strip() for t in data.queries.values() if t.strip() not in set(test_texts)]
    warmup = others[: args.latency_warmup]
    name = args.latency_collection

    with common.Retriever(ctx, NAME) as stub, psycopg.connect(ctx.database_url, autocommit=True) as conn:
        collection = build(ctx, stub, args)
        register_vector(conn)
        direct = Direct(conn, ctx.database_url, settings, name)

        def via_grpc(
            query: str, mode: pb.SearchMode = pb.SEARCH_MODE_HYBRID, ef: int | None = None
        ) -> pb.SearchResponse:
            request = pb.SearchRequest(collections=[name], query=query, top_k=TOP_K, mode=mode, ef_search=ef)
            response: pb.SearchResponse = stub.Search(request, timeout=60)
            return response

        for query in warmup:
            via_grpc(query)
            direct.search(query)
        times: dict[str, list[float]] = {"grpc": [], "direct": []}
        direct.parts_ms = {"embed": [], "sql": []}
        for i, query in enumerate(measured):
            for side in ("grpc", "direct") if i % 2 == 0 else ("direct", "grpc"):
                start = time.perf_counter()
                via_grpc(query) if side == "grpc" else direct.search(query)
                times[side].append(1000 * (time.perf_counter() - start))

        recalls: dict[str, list[float]] = {"service": [], "tie_aware": [], "index_only": []}
        recalls.update({f"service_ef{ef}": [] for ef in EF_SWEEP})
        for query in measured:
            vector = direct.embed(query)
            exact = direct.top(vector, exact=True)
            truth, kth = {cid for cid, _ in exact}, exact[-1][1]
            hits = via_grpc(query, pb.SEARCH_MODE_VECTOR).hits
            recalls["service"].append(len(truth & {h.chunk_id for h in hits}) / TOP_K)
            recalls["tie_aware"].append(min(sum(1.0 - h.score <= kth + 1e-6 for h in hits), TOP_K) / TOP_K)
            recalls["index_only"].append(len(truth & {cid for cid, _ in direct.top(vector, exact=False)}) / TOP_K)
            for ef in EF_SWEEP:
                ef_hits = via_grpc(query, pb.SEARCH_MODE_VECTOR, ef).hits
                recalls[f"service_ef{ef}"].append(len(truth & {h.chunk_id for h in ef_hits}) / TOP_K)
        direct.close()

    p50 = {side: percentile(ms, 50) for side, ms in times.items()}
    p95 = {side: percentile(ms, 95) for side, ms in times.items()}
    ratio = p50["grpc"] / p50["direct"]
    recall = {key: round(sum(values) / len(values), 4) for key, values in recalls.items()}
    latency_ok, recall_ok = ratio <= TARGET_P50_RATIO, recall["service"] >= TARGET_RECALL
    report(
        NAME,
        f"p50 grpc {p50['grpc']:.1f} ms vs direct {p50['direct']:.1f} ms -> ratio {ratio:.2f}"
        f" (target <= {TARGET_P50_RATIO})",
        latency_ok,
    )
    parts = {part: round(percentile(ms, 50), 2) for part, ms in direct.parts_ms.items()}
    print(
        f"{NAME}: p95 grpc {p95['grpc']:.1f} ms vs direct {p95['direct']:.1f} ms (no target);"
        f" direct p50 parts: embed {parts['embed']:.1f} ms, SQL {parts['sql']:.1f} ms"
    )
    report(
        NAME,
        f"HNSW recall@10 {recall['service']:.4f} vs exact at ef_search {settings.default_ef_search}"
        f" (target >= {TARGET_RECALL}); tie-aware {recall['tie_aware']:.4f}, index alone {recall['index_only']:.4f}, "
        + ", ".join(f"ef_search {ef}: {recall[f'service_ef{ef}']:.4f}" for ef in EF_SWEEP),
        recall_ok,
    )
    common.write_result(
        NAME,
        measured=f"p50 latency of HYBRID Search top_k={TOP_K} over gRPC, {len(measured)} SciFact test queries, "
        f"{collection.chunk_count} chunks",
        baseline={
            "what": "store path (search.hybrid_search, async pool) + query embedding (Embedder.encode) in the bench",
            "value": round(p50["direct"], 2),
        },
        value=round(p50["grpc"], 2),
        ratio=round(ratio, 4),
        target=f"ratio <= {TARGET_P50_RATIO} and recall@10 >= {TARGET_RECALL}",
        passed=latency_ok and recall_ok,
        latency_ms={
            "p50": {k: round(v, 2) for k, v in p50.items()},
            "p95": {k: round(v, 2) for k, v in p95.items()},
            "direct_p50_parts": parts,
            "passed": latency_ok,
        },
        recall_at_10={**recall, "ef_search": settings.default_ef_search, "passed": recall_ok},
        queries={"measured": len(measured), "warmup": len(warmup)},
        collection={"name": name, "documents": collection.document_count, "chunks": collection.chunk_count},
    )
    return latency_ok and recall_ok
