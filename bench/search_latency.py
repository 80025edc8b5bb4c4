"""search_latency: HYBRID search latency through gRPC vs the same SQL issued directly, on a
collection of >= 100k chunks; and HNSW recall@10 at the default ef_search vs exact search.

Collection: SciFact chunked small (max_tokens=16, overlap 0: about 150k chunks; SQuAD dev contexts
are added if that ever falls below 100k), built once and reused across runs.

Latency, measured: ``Search`` (HYBRID, top_k=10) over gRPC, client wall time. Baseline, same run:
in the bench process, the query embedding (same model, same encode call as the service) plus the
statement of ``store.build_search_sql`` with the service's settings, run with the same set_config
of ef_search/iterative_scan in a transaction on one psycopg connection. Fairness: a warm-up pass
uses other SciFact queries; every measured query is then new to the service, so its query-embedding
cache never answers and both sides pay for one embedding. The two sides alternate per query (which
goes first alternates too) so that noise and page-cache warmth fall evenly. Target p50 ratio <= 1.3.

Recall: for the measured queries, VECTOR top-10 through the service vs the exact top-10 by
sequential scan (``SET LOCAL enable_indexscan = off``); recall = |intersection| / 10, averaged.
Target >= 0.98. A tie-aware figure (a hit counts if its distance is within the exact 10th) is
reported beside it.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.rows import dict_row

from bench.common import (
    Context,
    Retriever,
    ensure_collection,
    ingest_resumable,
    load_scifact,
    percentile,
    report,
    write_result,
)
from ragtune.retriever.v1 import retriever_pb2 as pb
from ragtune_retriever.embedding import resolve_model_path
from ragtune_retriever.filters import compile_filter
from ragtune_retriever.service import keyword_query
from ragtune_retriever.settings import RetrieverSettings
from ragtune_retriever.store import CollectionRow, SearchPlan, build_search_sql

NAME = "search_latency"
MIN_CHUNKS = 100_000
TOP_K = 10
TARGET_P50_RATIO = 1.3
TARGET_RECALL = 0.98
_SET_CONFIG = "SELECT set_config('hnsw.ef_search', %s, true), set_config('hnsw.iterative_scan', 'relaxed_order', true)"
_EXACT = (
    "SELECT document_id || '#' || seq, embedding::vector({dim}) <=> %s::vector({dim}) AS distance"
    " FROM retriever.chunks WHERE collection_id = {cid} ORDER BY distance LIMIT {k}"
)


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--latency-collection", default="bench-scifact-16tok", help="reused across runs")
    group.add_argument("--latency-max-tokens", type=int, default=16)
    group.add_argument("--latency-queries", type=int, default=200, help="measured SciFact test queries")
    group.add_argument("--latency-warmup", type=int, default=100, help="warm-up queries (SciFact, not measured)")


def build(ctx: Context, stub: Any, name: str, max_tokens: int) -> pb.Collection:
    collection = ensure_collection(stub, name, max_tokens, 0)
    if collection.chunk_count >= MIN_CHUNKS:
        print(f"  reusing {name}: {collection.document_count} documents, {collection.chunk_count} chunks")
        return collection
    print(f"  building {name} (max_tokens={max_tokens}, overlap 0); several minutes", flush=True)
    ingest_resumable(stub, name, load_scifact(ctx.datasets / "scifact").corpus, per_stream=512)
    collection = ensure_collection(stub, name, max_tokens, 0)
    if collection.chunk_count < MIN_CHUNKS:
        squad = json.loads((ctx.datasets / "squad-v1.1" / "dev-v1.1.json").read_text(encoding="utf-8"))
        contexts = [
            (f"squad-{a}-{p}", para["context"])
            for a, article in enumerate(squad["data"])
            for p, para in enumerate(article["paragraphs"])
        ]
        ingest_resumable(stub, name, contexts, per_stream=512)
        collection = ensure_collection(stub, name, max_tokens, 0)
    print(f"  {name}: {collection.document_count} documents, {collection.chunk_count} chunks", flush=True)
    return collection


def run(ctx: Context, args: argparse.Namespace) -> bool:
    from sentence_transformers import SentenceTransformer

    settings = RetrieverSettings()
    data = load_scifact(ctx.datasets / "scifact")
    test_texts = list(dict.fromkeys(data.queries[q].strip() for q in data.test_qrels if q in data.queries))
    measured = test_texts[: args.latency_queries]
    others = [t.strip() for t in data.queries.values() if t.strip() not in set(test_texts)]
    warmup = others[: args.latency_warmup]
    model = SentenceTransformer(str(resolve_model_path(settings.embedding_model)), device="cpu", local_files_only=True)
    name = args.latency_collection
    filter_sql, filter_params = compile_filter({})

    with Retriever(ctx, NAME) as stub, psycopg.connect(ctx.database_url, autocommit=True) as conn:
        collection = build(ctx, stub, name, args.latency_max_tokens)
        register_vector(conn)
        cur = conn.cursor(row_factory=dict_row)
        cur.execute(
            "SELECT id, tenant, name, embedding_model, dimension, max_tokens, overlap_tokens, metadata, created_at"
            " FROM retriever.collections WHERE tenant = 'default' AND name = %s",
            (name,),
        )
        row = CollectionRow(**cur.fetchone())  # type: ignore[arg-type]

        def embed(query: str) -> np.ndarray:
            vectors = model.encode([query], batch_size=settings.embedding_batch_size, normalize_embeddings=True)
            return np.asarray(vectors, dtype=np.float32)[0]

        def direct(query: str, explain: bool = False) -> list[Any]:
            plan = SearchPlan(
                mode="hybrid",
                query_vector=embed(query),
                keyword_query=keyword_query(query),
                filter_sql=filter_sql,
                filter_params=filter_params,
                top_k=TOP_K,
                candidates=max(TOP_K, settings.fusion_candidates),
                rrf_k=settings.rrf_k,
                ef_search=settings.default_ef_search,
            )
            statement, params = build_search_sql(row, plan)
            with conn.transaction():
                conn.execute(_SET_CONFIG, (str(plan.ef_search),))
                prefix = sql.SQL("EXPLAIN ") if explain else sql.SQL("")
                return conn.execute(prefix + statement, params).fetchall()

        def via_grpc(query: str, mode: int = pb.SEARCH_MODE_HYBRID) -> pb.SearchResponse:
            request = pb.SearchRequest(collections=[name], query=query, top_k=TOP_K, mode=mode)
            response: pb.SearchResponse = stub.Search(request, timeout=60)
            return response

        plan_text = "\n".join(r[0] for r in direct(measured[0], explain=True))
        uses_hnsw = f"chunks_hnsw_{row.id}" in plan_text
        for query in warmup:
            via_grpc(query)
            direct(query)
        grpc_ms: list[float] = []
        direct_ms: list[float] = []
        for i, query in enumerate(measured):
            for side in ("grpc", "direct") if i % 2 == 0 else ("direct", "grpc"):
                start = time.perf_counter()
                via_grpc(query) if side == "grpc" else direct(query)
                (grpc_ms if side == "grpc" else direct_ms).append(1000 * (time.perf_counter() - start))

        strict, tie_aware = [], []
        for query in measured:
            hits = via_grpc(query, pb.SEARCH_MODE_VECTOR).hits
            with conn.transaction():
                conn.execute("SET LOCAL enable_indexscan = off")
                exact = conn.execute(
                    sql.SQL(_EXACT).format(dim=sql.Literal(row.dimension), cid=sql.Literal(row.id), k=TOP_K),
                    (embed(query),),
                ).fetchall()
            strict.append(len({h.chunk_id for h in hits} & {r[0] for r in exact}) / TOP_K)
            kth = exact[-1][1]
            tie_aware.append(min(sum(1 for h in hits if 1.0 - h.score <= kth + 1e-6), TOP_K) / TOP_K)

    p50_g, p95_g = percentile(grpc_ms, 50), percentile(grpc_ms, 95)
    p50_d, p95_d = percentile(direct_ms, 50), percentile(direct_ms, 95)
    ratio = p50_g / p50_d
    recall = sum(strict) / len(strict)
    latency_ok, recall_ok = ratio <= TARGET_P50_RATIO, recall >= TARGET_RECALL
    report(
        NAME,
        f"p50 grpc {p50_g:.1f} ms vs direct {p50_d:.1f} ms -> ratio {ratio:.2f} (target <= {TARGET_P50_RATIO})",
        latency_ok,
    )
    print(f"{NAME}: p95 grpc {p95_g:.1f} ms vs direct {p95_d:.1f} ms -> ratio {p95_g / p95_d:.2f} (no target)")
    report(
        NAME,
        f"HNSW recall@10 {recall:.4f} (tie-aware {sum(tie_aware) / len(tie_aware):.4f}) vs exact at ef_search"
        f" {settings.default_ef_search} (target >= {TARGET_RECALL})",
        recall_ok,
    )
    write_result(
        NAME,
        measured=f"p50 latency of HYBRID Search top_k={TOP_K} over gRPC, {len(measured)} SciFact test queries, "
        f"{collection.chunk_count} chunks",
        baseline={
            "what": "same SQL (store.build_search_sql) via psycopg + query embedding in the bench process",
            "value": round(p50_d, 2),
        },
        value=round(p50_g, 2),
        ratio=round(ratio, 4),
        target=f"ratio <= {TARGET_P50_RATIO} and recall@10 >= {TARGET_RECALL}",
        passed=latency_ok and recall_ok,
        latency_ms={
            "grpc": {"p50": round(p50_g, 2), "p95": round(p95_g, 2)},
            "direct": {"p50": round(p50_d, 2), "p95": round(p95_d, 2)},
            "p95_ratio": round(p95_g / p95_d, 4),
            "passed": latency_ok,
        },
        recall_at_10={
            "value": round(recall, 4),
            "tie_aware": round(sum(tie_aware) / len(tie_aware), 4),
            "ef_search": settings.default_ef_search,
            "target": f">= {TARGET_RECALL}",
            "passed": recall_ok,
        },
        queries={"measured": len(measured), "warmup": len(warmup)},
        collection={"name": name, "documents": collection.document_count, "chunks": collection.chunk_count},
        direct_plan_uses_hnsw=uses_hnsw,
    )
    return latency_ok and recall_ok
