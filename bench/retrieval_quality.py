"""retrieval_quality: nDCG@10 and Recall@100 on BEIR SciFact (test qrels) through gRPC.

Measured: the retriever's HYBRID search (top_k=100) over the SciFact corpus ingested with the
service's default chunking, scored at the document level (a document ranks at its best chunk;
later chunks of the same document are dropped). nDCG@10 is the BEIR/pytrec_eval formula: graded
gain, log2(rank + 1) discount, ideal ranking from the qrels. Recall@100 counts the relevant
documents among the documents of the 100 chunks returned.

Baseline, same run, same collection and queries: the retriever's own KEYWORD mode (its BM25); the
ratio is hybrid / keyword nDCG@10, with the per-query paired differences (hybrid - keyword: mean,
95% bootstrap interval, queries won/lost/tied). VECTOR is measured too. The published BM25 (Anserini
multifield) nDCG@10 of 0.665 on SciFact test is kept as a fixed outside reference only.
Target: HYBRID nDCG@10 >= 0.68.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from bench.common import (
    Context,
    Retriever,
    ensure_collection,
    get_collection,
    ingest_resumable,
    load_scifact,
    report,
    write_result,
)
from bench.stats import paired_summary
from ragtune.retriever.v1 import retriever_pb2 as pb
from ragtune.retriever.v1 import retriever_pb2_grpc
from ragtune_eval.scoring import ndcg_at_k, recall_at_k, unique_in_order
from ragtune_retriever.settings import RetrieverSettings

NAME = "retrieval_quality"
BM25_NDCG10 = 0.665  # Anserini BM25 multifield, SciFact test (published)
TARGET_NDCG10 = 0.68
TOP_K = 100
MODES = {"vector": pb.SEARCH_MODE_VECTOR, "keyword": pb.SEARCH_MODE_KEYWORD, "hybrid": pb.SEARCH_MODE_HYBRID}


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--quality-collection", default="bench-scifact", help="reused across runs")
    group.add_argument("--quality-rebuild", action="store_true", help="delete and re-ingest the collection")


def ndcg_at_10(ranked: Sequence[str], relevance: dict[str, int]) -> float:
    return ndcg_at_k(ranked, relevance, 10)


def recall(ranked: Sequence[str], relevance: dict[str, int]) -> float:
    return recall_at_k(ranked, [doc for doc, r in relevance.items() if r > 0], len(ranked))


def documents(hits: Sequence[pb.SearchHit]) -> list[str]:
    """Document ids in rank order, each at its first (best) chunk."""
    return unique_in_order(hit.document_id for hit in hits)


def evaluate(
    stub: retriever_pb2_grpc.RetrieverServiceStub,
    collection: str,
    queries: dict[str, str],
    qrels: dict,
    per_query: dict[str, list[float]] | None = None,
) -> dict[str, dict[str, float]]:
    """Mean figures per mode; each mode's nDCG@10 per query (in qrels order) into ``per_query``."""
    figures: dict[str, dict[str, float]] = {}
    for mode, mode_value in MODES.items():
        ndcgs, recalls, docs_returned = [], [], []
        start = time.perf_counter()
        for qid, relevance in qrels.items():
            request = pb.SearchRequest(collections=[collection], query=queries[qid], top_k=TOP_K, mode=mode_value)
            ranked = documents(stub.Search(request, timeout=60).hits)
            ndcgs.append(ndcg_at_10(ranked, relevance))
            recalls.append(recall(ranked, relevance))
            docs_returned.append(len(ranked))
        seconds = time.perf_counter() - start
        if per_query is not None:
            per_query[mode] = ndcgs
        figures[mode] = {
            "ndcg@10": round(sum(ndcgs) / len(ndcgs), 4),
            "recall@100": round(sum(recalls) / len(recalls), 4),
            "mean_documents_in_top100_chunks": round(sum(docs_returned) / len(docs_returned), 1),
            "mean_search_ms": round(1000 * seconds / len(ndcgs), 1),
        }
        print(f"  {mode}: {figures[mode]}", flush=True)
    return figures


def run(ctx: Context, args: argparse.Namespace) -> bool:
    data = load_scifact(ctx.datasets / "scifact")
    qrels = {qid: rel for qid, rel in data.test_qrels.items() if qid in data.queries}
    settings = RetrieverSettings()
    max_tokens = settings.default_max_tokens
    overlap = min(settings.default_overlap_tokens, max_tokens // 4)  # what CreateCollection defaults to
    name = args.quality_collection
    with Retriever(ctx, NAME) as stub:
        if args.quality_rebuild and get_collection(stub, name) is not None:
            stub.DeleteCollection(pb.DeleteCollectionRequest(name=name), timeout=600)
        collection = ensure_collection(stub, name, max_tokens, overlap)
        ingest_s = 0.0
        if collection.document_count != len(data.corpus):
            print(f"  ingesting {len(data.corpus)} SciFact documents into {name} (several minutes)", flush=True)
            start = time.perf_counter()
            ingest_resumable(stub, name, data.corpus, per_stream=512)
            ingest_s = time.perf_counter() - start
            collection = ensure_collection(stub, name, max_tokens, overlap)
        else:
            print(f"  reusing {name}: {collection.document_count} documents, {collection.chunk_count} chunks")
        per_query: dict[str, list[float]] = {}
        figures = evaluate(stub, name, data.queries, qrels, per_query)

    value = figures["hybrid"]["ndcg@10"]
    keyword = figures["keyword"]["ndcg@10"]
    ratio = value / keyword
    diffs = [h - k for h, k in zip(per_query["hybrid"], per_query["keyword"], strict=True)]
    paired = paired_summary(diffs)
    paired.update(won=sum(d > 0 for d in diffs), lost=sum(d < 0 for d in diffs), tied=sum(d == 0 for d in diffs))
    passed = value >= TARGET_NDCG10
    low, high = paired["mean_ci95"]
    report(
        NAME,
        f"nDCG@10 hybrid {value:.4f} vs keyword (our BM25, this run) {keyword:.4f} -> ratio {ratio:.3f}; per query"
        f" hybrid - keyword mean {paired['mean']:+.4f} (95% CI {low:+.4f} .. {high:+.4f}), won {paired['won']}"
        f" / lost {paired['lost']} / tied {paired['tied']} (target hybrid >= {TARGET_NDCG10})",
        passed,
    )
    print(f"{NAME}: nDCG@10 vector {figures['vector']['ndcg@10']:.4f}; published BM25 {BM25_NDCG10} (fixed reference)")
    print(f"{NAME}: Recall@100 " + ", ".join(f"{m} {f['recall@100']:.4f}" for m, f in figures.items()))
    write_result(
        NAME,
        measured=f"nDCG@10 of HYBRID search (top_k={TOP_K}, document level) on BEIR SciFact test, {len(qrels)} queries",
        baseline={
            "what": "nDCG@10 of the retriever's KEYWORD mode (BM25) in the same run, same collection and queries",
            "value": keyword,
        },
        value=value,
        ratio=round(ratio, 4),
        hybrid_minus_keyword_per_query=paired,
        published_bm25={
            "what": "published BM25 multifield nDCG@10 on SciFact test (Anserini); fixed reference, not measured",
            "value": BM25_NDCG10,
            "ratio": round(value / BM25_NDCG10, 4),
        },
        target=f"value >= {TARGET_NDCG10}",
        passed=passed,
        modes=figures,
        queries=len(qrels),
        collection={
            "name": name,
            "documents": collection.document_count,
            "chunks": collection.chunk_count,
            "max_tokens": max_tokens,
            "overlap_tokens": overlap,
        },
        ingest_seconds=round(ingest_s, 1),
    )
    return passed
