"""peers: ragtune side by side with LlamaIndex and LangChain on the same PostgreSQL, corpus and model.

Systems (``bench.peer_systems``): ragtune through its gRPC API; LlamaIndex ``PGVectorStore`` and
LangChain ``PGVectorStore``, each set up as its docs show for hybrid search with HNSW. All use the
embedded PostgreSQL of the benches, the shipped MiniLM from the same local directory (nothing is
downloaded; HF_HUB_OFFLINE=1), CPU embeddings, batch 32 (ragtune with its own default backend, the
ONNX int8 export of that model, recorded in the result; the peers with sentence-transformers on
PyTorch, their HuggingFace embedding classes' default), chunks of 256 MiniLM tokens with 32 overlap
(each by its own splitter: ragtune's token chunker, LlamaIndex ``SentenceSplitter`` and LangChain
``RecursiveCharacterTextSplitter`` counting MiniLM word pieces), HNSW m 16 / ef_construction 64,
ef_search = the retriever's default, 100 candidates from each list, reciprocal-rank fusion (k 60).

Measured, in one run:
- ingest: the BEIR SciFact corpus in batches of 512 documents (``--limit-docs N`` for a shorter
  run: the documents judged for the test queries, then others in corpus order up to N);
  the order of the systems rotates every batch so load that comes and goes on a shared machine falls
  on every side; a peer's post-load index build (LangChain's guide applies HNSW and GIN after
  loading) counts as ingest. chunks/s = chunks stored / seconds.
- search latency: the SciFact test queries, HYBRID top 10, ``--peers-concurrency`` (4) requests in
  flight, client wall time per request, p50/p95. A warm-up of other SciFact queries first; the
  systems take turns in blocks of queries. Every measured query is new to ragtune's query cache.
- quality: the same queries, top 100 chunks, scored at the document level (a document ranks at its
  best chunk): nDCG@10 and Recall@100 with bench.retrieval_quality's metrics.

Baseline: the faster peer in each figure (higher chunks/s, lower p50, higher nDCG@10).
Targets: ragtune ingest >= 1.2x, search p50 <= 0.8x, nDCG@10 above both peers.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import Context, load_scifact, percentile, report, write_result
from bench.peer_systems import LangChainPG, LlamaIndexPG, Ragtune, System
from bench.retrieval_quality import ndcg_at_10, recall
from ragtune_retriever.embedding import resolve_model_path
from ragtune_retriever.settings import RetrieverSettings

NAME = "peers"
TARGET_INGEST = 1.2  # ragtune chunks/s >= 1.2x the faster peer
TARGET_P50 = 0.8  # ragtune p50 <= 0.8x the faster peer
DOCS_PER_BATCH = 512
QUERY_BLOCK = 25
WARMUP_QUERIES = 20
PEER_PACKAGES = (
    "llama-index-core",
    "llama-index-vector-stores-postgres",
    "llama-index-embeddings-huggingface",
    "langchain-core",
    "langchain-postgres",
    "langchain-huggingface",
    "langchain-text-splitters",
    "sentence-transformers",
    "torch",
    "pgvector",
)


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--peers-limit-docs", "--limit-docs", type=int, default=0, help="first N SciFact documents (0: all)"
    )
    group.add_argument("--peers-concurrency", type=int, default=4, help="search requests in flight")
    group.add_argument(
        "--peers-ragtune-backend",
        choices=("torch", "onnx", "onnx-int8"),
        help="ragtune's embedding backend (default: the service's own, auto); torch matches the peers' PyTorch",
    )


def corpus_subset(
    corpus: Sequence[tuple[str, str]], qrels: dict[str, dict[str, int]], limit: int
) -> list[tuple[str, str]]:
    """The whole corpus, or for a quick run ``limit`` documents: every document judged for a test
    query first (so every query keeps its answers), then the others in corpus order as distractors."""
    if not limit or limit >= len(corpus):
        return list(corpus)
    judged = {doc for relevance in qrels.values() for doc in relevance}
    first = [d for d in corpus if d[0] in judged]
    return (first + [d for d in corpus if d[0] not in judged])[:limit]


def versions() -> dict[str, str]:
    found = {}
    for package in PEER_PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def compare(figures: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """ragtune against the better peer in each figure, with the ratio and whether the target holds.
    ``figures``: system -> {"chunks_per_s", "p50_ms", "ndcg@10"}; every system not ragtune is a peer."""
    ours = figures["ragtune"]
    peers = {name: f for name, f in figures.items() if name != "ragtune"}
    rows = []
    for key, lower_is_better, target, text in (
        ("chunks_per_s", False, TARGET_INGEST, f"ratio >= {TARGET_INGEST}"),
        ("p50_ms", True, TARGET_P50, f"ratio <= {TARGET_P50}"),
        ("ndcg@10", False, 1.0, "ratio > 1 (above both peers)"),
    ):
        ranked = sorted(peers, key=lambda name: peers[name][key], reverse=not lower_is_better)
        peer = ranked[0]
        base = peers[peer][key]
        ratio = ours[key] / base if base else float("nan")
        passed = ratio <= target if key == "p50_ms" else (ratio > target if key == "ndcg@10" else ratio >= target)
        rows.append(
            {
                "figure": key,
                "value": ours[key],
                "baseline": {"system": peer, "value": base},
                "ratio": ratio,
                "target": text,
                "passed": passed,
            }
        )
    return rows


def concurrent_latencies(call: Callable[[str], object], queries: Sequence[str], concurrency: int) -> list[float]:
    """Milliseconds of each ``call(query)``, ``concurrency`` in flight."""

    def timed(query: str) -> float:
        start = time.perf_counter()
        call(query)
        return 1000 * (time.perf_counter() - start)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(timed, queries))


def ingest_all(systems: list[System], docs: Sequence[tuple[str, str]]) -> dict[str, dict[str, float]]:
    seconds = {s.name: 0.0 for s in systems}
    chunks = {s.name: 0 for s in systems}
    for batch_no, start in enumerate(range(0, len(docs), DOCS_PER_BATCH)):
        batch = docs[start : start + DOCS_PER_BATCH]
        shift = batch_no % len(systems)
        for system in systems[shift:] + systems[:shift]:
            began = time.perf_counter()
            chunks[system.name] += system.ingest(batch)
            seconds[system.name] += time.perf_counter() - began
        print(
            f"  ingest {start + len(batch)}/{len(docs)} docs: "
            + ", ".join(f"{n} {chunks[n]} chunks {seconds[n]:.0f}s" for n in seconds),
            flush=True,
        )
    for system in systems:
        began = time.perf_counter()
        system.finish_ingest()
        seconds[system.name] += time.perf_counter() - began
    return {
        n: {
            "chunks": chunks[n],
            "seconds": seconds[n],
            "chunks_per_s": chunks[n] / seconds[n],
            "docs_per_s": len(docs) / seconds[n],
        }
        for n in seconds
    }


def top10(system: System) -> Callable[[str], list[str]]:
    return lambda query: system.search(query, 10)


def search_all(
    systems: list[System], queries: Sequence[str], warmup: Sequence[str], concurrency: int
) -> dict[str, list[float]]:
    for system in systems:
        concurrent_latencies(top10(system), warmup, concurrency)
    latencies: dict[str, list[float]] = {s.name: [] for s in systems}
    for block_no, start in enumerate(range(0, len(queries), QUERY_BLOCK)):
        block = queries[start : start + QUERY_BLOCK]
        shift = block_no % len(systems)
        for system in systems[shift:] + systems[:shift]:
            latencies[system.name] += concurrent_latencies(top10(system), block, concurrency)
    return latencies


def quality(system: System, qrels: dict[str, dict[str, int]], queries: dict[str, str], concurrency: int) -> dict:
    qids = list(qrels)
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        ranked = list(pool.map(lambda qid: list(dict.fromkeys(system.search(queries[qid], 100))), qids))
    ndcgs = [ndcg_at_10(r, qrels[q]) for r, q in zip(ranked, qids, strict=True)]
    recalls = [recall(r, qrels[q]) for r, q in zip(ranked, qids, strict=True)]
    return {"ndcg@10": sum(ndcgs) / len(ndcgs), "recall@100": sum(recalls) / len(recalls)}


def run(ctx: Context, args: argparse.Namespace) -> bool:
    from transformers import AutoTokenizer

    data = load_scifact(ctx.datasets / "scifact")
    docs = corpus_subset(data.corpus, data.test_qrels, args.peers_limit_docs)
    doc_ids = {doc_id for doc_id, _ in docs}
    qrels = {
        qid: rel
        for qid, rel in data.test_qrels.items()
        if qid in data.queries and any(d in doc_ids and r > 0 for d, r in rel.items())
    }
    test_texts = {data.queries[q].strip() for q in data.test_qrels if q in data.queries}
    warmup = [t.strip() for t in data.queries.values() if t.strip() not in test_texts][:WARMUP_QUERIES]
    measured = [data.queries[q] for q in qrels]
    settings = RetrieverSettings()
    model_path = resolve_model_path(settings.embedding_model)
    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    ef_search, candidates = settings.default_ef_search, settings.fusion_candidates
    print(f"  {len(docs)} of {len(data.corpus)} documents, {len(qrels)} test queries, model {model_path}", flush=True)

    systems: list[System] = []
    try:
        ragtune = Ragtune(ctx, args.peers_ragtune_backend)
        systems.append(ragtune)
        max_tokens, overlap = ragtune.chunking.max_tokens, ragtune.chunking.overlap_tokens
        common = (ctx.database_url, model_path, tokenizer, max_tokens, overlap, ef_search, candidates)
        systems.append(LlamaIndexPG(*common))
        systems.append(LangChainPG(*common))
        ingest = ingest_all(systems, docs)
        latencies = search_all(systems, measured, warmup, args.peers_concurrency)
        scores = {s.name: quality(s, qrels, data.queries, args.peers_concurrency) for s in systems}
    finally:
        for system in reversed(systems):
            try:
                system.close()
            except Exception as exc:  # a failed cleanup must not hide the figures or the first error
                print(f"  WARNING: closing {system.name}: {exc!r}", flush=True)

    figures = {
        s.name: {
            **ingest[s.name],
            "p50_ms": percentile(latencies[s.name], 50),
            "p95_ms": percentile(latencies[s.name], 95),
            **scores[s.name],
        }
        for s in systems
    }
    rows = compare(figures)
    print(
        f"  {'system':<11}{'chunks':>8}{'ingest s':>10}{'chunks/s':>10}{'docs/s':>8}{'p50 ms':>9}{'p95 ms':>9}"
        f"{'nDCG@10':>9}{'R@100':>8}"
    )
    for name, f in figures.items():
        print(
            f"  {name:<11}{f['chunks']:>8}{f['seconds']:>10.0f}{f['chunks_per_s']:>10.1f}{f['docs_per_s']:>8.2f}"
            f"{f['p50_ms']:>9.1f}"
            f"{f['p95_ms']:>9.1f}{f['ndcg@10']:>9.4f}{f['recall@100']:>8.4f}"
        )
    for row in rows:
        report(
            NAME,
            f"{row['figure']} ragtune {row['value']:.4g} vs {row['baseline']['system']} {row['baseline']['value']:.4g}"
            f" -> ratio {row['ratio']:.3f} (target {row['target']})",
            row["passed"],
        )
    ingest_row = rows[0]
    passed = all(row["passed"] for row in rows)
    write_result(
        NAME,
        measured=f"ragtune vs LlamaIndex and LangChain PGVectorStore on SciFact ({len(docs)} docs, {len(qrels)}"
        f" test queries): ingest chunks/s (headline), HYBRID search p50 at concurrency {args.peers_concurrency},"
        " nDCG@10",
        baseline={
            "what": f"the faster peer ({ingest_row['baseline']['system']}) chunks/s in the same run",
            "value": round(ingest_row["baseline"]["value"], 2),
        },
        value=round(ingest_row["value"], 2),
        ratio=round(ingest_row["ratio"], 4),
        target=f"ingest ratio >= {TARGET_INGEST}, search p50 ratio <= {TARGET_P50}, nDCG@10 above both peers",
        passed=passed,
        comparisons=rows,
        systems={n: {k: round(v, 4) if isinstance(v, float) else v for k, v in f.items()} for n, f in figures.items()},
        setup={
            "documents": len(docs),
            "queries": len(qrels),
            "warmup_queries": len(warmup),
            "concurrency": args.peers_concurrency,
            "chunking": {"max_tokens": max_tokens, "overlap_tokens": overlap},
            "hnsw": {"m": 16, "ef_construction": 64, "ef_search": ef_search},
            "fusion": {"candidates_per_list": candidates, "rrf_k": 60},
            "model": str(model_path),
            "ragtune_embedding_model": ragtune.embedding_model,
            "peers_embedding": "sentence-transformers (PyTorch, float32) in the bench process",
            "device": "cpu",
        },
        versions=versions(),
    )
    return passed
