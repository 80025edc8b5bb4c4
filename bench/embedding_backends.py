"""embedding_backends: the retriever's ONNX Runtime embedders (fp32 and int8) against bare PyTorch.

Measured, in one process, for each backend of the shipped MiniLM as the retriever runs it (its
``Embedder``: ``all-MiniLM-L6-v2@onnx`` and ``@onnx-int8``, exported into the bench state dir on
first use):
- ingest (embed) throughput: chunks/s embedding the chunk texts of the first ``--backends-docs``
  SciFact documents, cut by the service's own parser and chunker with the default chunking, batch
  ``embedding_batch_size``. ``--backends-rounds`` rounds, the order of the sides rotating each round;
  each side's best round is its figure.
- query embedding latency: one query at a time (no cache), p50 over ``--backends-queries`` SciFact
  queries; for each query every side runs once, in rotating order, so load that comes and goes on a
  shared machine lands on all sides alike.
- quality: nDCG@10 on the SciFact test queries (document level: a document ranks at its best
  chunk), exact cosine search over the whole corpus embedded by that side, BEIR's formula (as in
  retrieval_quality); per-query paired differences against PyTorch. The vectors are kept under
  the bench state dir (they depend on the model, the side and the texts, not on the machine's load),
  so a rerun only measures the timings again.

Baseline, same run, same texts: ``SentenceTransformer.encode`` on PyTorch (normalize_embeddings=True,
same batch size), the floor ingest_throughput and search_latency compare the service with.
The service runs PyTorch with ``OMP_WAIT_POLICY=PASSIVE`` (ragtune_retriever.main); run this bench
with the same (``OMP_WAIT_POLICY=PASSIVE make bench NAME=embedding_backends``) for the like-for-like
PyTorch latency: on a busy machine spinning OpenMP threads make a single query many times slower.
Targets: the default backend (``auto``) ingests >= 1.5x the baseline's chunks/s, its query p50 is
<= 0.5x the baseline's, and its nDCG@10 is within 0.005 of PyTorch's. The bench also names the
fastest backend within 0.005 (what ``auto`` should pick) and says if the code picks another.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bench.common import Context, SciFact, load_scifact, percentile, report, write_result
from bench.stats import paired_summary
from ragtune_eval.scoring import ndcg_at_k, unique_in_order
from ragtune_retriever.chunking import chunk_text
from ragtune_retriever.embedding import MEASURED_CPU_BACKEND, Embedder, resolve_model_path
from ragtune_retriever.onnx_export import model_key
from ragtune_retriever.parsing import extract_text
from ragtune_retriever.settings import RetrieverSettings

NAME = "embedding_backends"
MODEL = "all-MiniLM-L6-v2"
BACKENDS = ("onnx", "onnx-int8")
TARGET_INGEST_RATIO = 1.5
TARGET_QUERY_RATIO = 0.5
MAX_NDCG_LOSS = 0.005
TOP_CHUNKS = 100
CACHE_SLICE = 512

Encode = Callable[[Sequence[str]], np.ndarray]


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--backends-docs", type=int, default=300, help="SciFact documents for the throughput rounds")
    group.add_argument("--backends-rounds", type=int, default=3, help="throughput rounds, the order rotating")
    group.add_argument("--backends-queries", type=int, default=200, help="single queries for the latency p50")
    group.add_argument(
        "--backends-quality-docs",
        type=int,
        default=0,
        help="corpus documents for nDCG@10: 0 = all of SciFact, else the judged ones plus a seeded sample",
    )


def chunk_corpus(docs: Sequence[tuple[str, str]], settings: RetrieverSettings) -> tuple[list[str], list[str]]:
    """The chunk texts the service would store, and each chunk's document id."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tokenizer: PreTrainedTokenizerFast = AutoTokenizer.from_pretrained(str(resolve_model_path(MODEL)))  # type: ignore[assignment]
    max_tokens = settings.default_max_tokens
    overlap = min(settings.default_overlap_tokens, max_tokens // 4)  # what CreateCollection defaults to
    texts: list[str] = []
    owners: list[str] = []
    for doc_id, text in docs:
        parsed = extract_text(text.encode("utf-8"), "text/plain", field=doc_id)
        for chunk in chunk_text(parsed, tokenizer, max_tokens, overlap):
            texts.append(chunk.text)
            owners.append(doc_id)
    return texts, owners


def ndcg_per_query(
    chunk_vectors: np.ndarray, owners: Sequence[str], query_vectors: np.ndarray, qrels: list[dict[str, int]]
) -> list[float]:
    scores = query_vectors @ chunk_vectors.T
    top = np.argsort(-scores, axis=1)[:, :TOP_CHUNKS]
    return [
        ndcg_at_k(unique_in_order(owners[i] for i in row), relevance, 10)
        for row, relevance in zip(top, qrels, strict=True)
    ]


def cached_vectors(cache: Path, side: str, encode: Encode, texts: Sequence[str]) -> tuple[np.ndarray, float | None]:
    """``encode(texts)``, kept under ``cache`` (the bench state dir) slice by slice for later or
    interrupted runs: the quality figures depend on the model, the side and the texts, not on the
    machine's load. Also the seconds spent encoding in this run (None when all came from the cache)."""
    parts: list[np.ndarray] = []
    spent: float | None = None
    for start in range(0, len(texts), CACHE_SLICE):
        piece = texts[start : start + CACHE_SLICE]
        digest = hashlib.sha256("\0".join([side, *piece]).encode()).hexdigest()[:20]
        path = cache / f"{side}-{digest}.npy"
        if path.is_file():
            parts.append(np.load(path))
            continue
        began = time.perf_counter()
        vectors = np.asarray(encode(piece), dtype=np.float32)
        spent = (spent or 0.0) + time.perf_counter() - began
        cache.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial.npy")
        np.save(partial, vectors)
        partial.rename(path)  # another run reading the cache never sees half a file
        parts.append(vectors)
        print(f"  {side}: {start + len(piece)}/{len(texts)} texts embedded", flush=True)
    return np.concatenate(parts), None if spent is None else round(spent, 1)


def quality_corpus(data: SciFact, size: int) -> list[tuple[str, str]]:
    """The whole corpus (``size`` 0), or every document a test query judges plus a seeded random
    sample of the others, ``size`` in all (a smaller haystack: nDCG comes out higher than on the
    full corpus, but every side searches the same one)."""
    if not size or size >= len(data.corpus):
        return data.corpus
    judged = {doc for relevance in data.test_qrels.values() for doc in relevance}
    others = [d for d in data.corpus if d[0] not in judged]
    sample = random.Random(0).sample(others, max(0, size - len(judged)))
    keep = judged | {d[0] for d in sample}
    return [d for d in data.corpus if d[0] in keep]


def run(ctx: Context, args: argparse.Namespace) -> bool:
    from sentence_transformers import SentenceTransformer

    settings = RetrieverSettings()
    batch = settings.embedding_batch_size
    data = load_scifact(ctx.datasets / "scifact")
    exports = ctx.state_dir / "embeddings"
    torch_model = SentenceTransformer(str(resolve_model_path(MODEL)), device="cpu", local_files_only=True)
    sides: dict[str, Encode] = {
        "torch": lambda texts: torch_model.encode(
            list(texts), batch_size=batch, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
    }
    export_s: dict[str, float] = {}
    for backend in BACKENDS:
        start = time.perf_counter()
        embedder = Embedder(f"{MODEL}@{backend}", "cpu", batch, cache_size=0, exports_dir=exports)
        export_s[backend] = round(time.perf_counter() - start, 1)
        sides[backend] = embedder.encode

    names = list(sides)
    # -- quality (first; its vectors are cached, so a rerun goes straight to the timings) -------------
    corpus = quality_corpus(data, args.backends_quality_docs)
    corpus_texts, owners = chunk_corpus(corpus, settings)
    qrels = {qid: rel for qid, rel in data.test_qrels.items() if qid in data.queries}
    query_texts = [data.queries[qid] for qid in qrels]
    cache = ctx.state_dir / NAME / model_key(resolve_model_path(MODEL))
    per_query: dict[str, list[float]] = {}
    embed_s: dict[str, float | None] = {}
    for name in names:
        chunk_vectors, embed_s[name] = cached_vectors(cache, name, sides[name], corpus_texts)
        query_vectors, _ = cached_vectors(cache, name, sides[name], query_texts)
        per_query[name] = ndcg_per_query(chunk_vectors, owners, query_vectors, list(qrels.values()))
    ndcg = {name: sum(v) / len(v) for name, v in per_query.items()}

    # -- ingest throughput ------------------------------------------------------------------------
    texts, _ = chunk_corpus(data.corpus[: args.backends_docs], settings)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_no in range(args.backends_rounds):
        order = names[round_no % len(names) :] + names[: round_no % len(names)]
        for name in order:
            start = time.perf_counter()
            sides[name](texts)
            seconds[name].append(time.perf_counter() - start)
        print(
            f"  round {round_no + 1}: " + ", ".join(f"{n} {len(texts) / seconds[n][-1]:.1f} chunks/s" for n in names),
            flush=True,
        )
    throughput = {name: len(texts) / min(s) for name, s in seconds.items()}

    # -- single-query latency ---------------------------------------------------------------------
    queries = list(data.queries.values())[: args.backends_queries]
    latency_ms: dict[str, list[float]] = {name: [] for name in names}
    for name in names:
        sides[name](queries[:5])  # warm
    for i, query in enumerate(queries):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            start = time.perf_counter()
            sides[name]([query])
            latency_ms[name].append(1000 * (time.perf_counter() - start))
    p50 = {name: percentile(ms, 50) for name, ms in latency_ms.items()}
    print("  query p50 ms: " + ", ".join(f"{n} {p50[n]:.2f}" for n in names), flush=True)

    # -- figures ----------------------------------------------------------------------------------
    within = [n for n in names if ndcg[n] >= ndcg["torch"] - MAX_NDCG_LOSS]
    fastest_within = max(within, key=lambda n: throughput[n])
    default = MEASURED_CPU_BACKEND
    figures = {
        name: {
            "ingest_chunks_per_s": round(throughput[name], 2),
            "ingest_ratio_vs_torch": round(throughput[name] / throughput["torch"], 3),
            "ingest_seconds": [round(s, 2) for s in seconds[name]],
            "query_p50_ms": round(p50[name], 3),
            "query_p90_ms": round(percentile(latency_ms[name], 90), 3),
            "query_p50_ratio_vs_torch": round(p50[name] / p50["torch"], 3),
            "ndcg@10": round(ndcg[name], 4),
            "ndcg@10_minus_torch": round(ndcg[name] - ndcg["torch"], 4),
            "paired_ndcg@10_minus_torch": paired_summary(
                [a - b for a, b in zip(per_query[name], per_query["torch"], strict=True)]
            ),
            "corpus_embed_seconds": embed_s[name],
            **({"first_load_seconds_with_export": export_s[name]} if name in export_s else {}),
        }
        for name in names
    }
    for name in names:
        f = figures[name]
        print(
            f"  {name}: ingest {f['ingest_chunks_per_s']} chunks/s (x{f['ingest_ratio_vs_torch']}), query p50"
            f" {f['query_p50_ms']} ms (x{f['query_p50_ratio_vs_torch']}), nDCG@10 {f['ndcg@10']}"
            f" ({f['ndcg@10_minus_torch']:+.4f})",
            flush=True,
        )
    ingest_ratio = throughput[default] / throughput["torch"]
    query_ratio = p50[default] / p50["torch"]
    passed = (
        ingest_ratio >= TARGET_INGEST_RATIO
        and query_ratio <= TARGET_QUERY_RATIO
        and default in within
        and default == fastest_within
    )
    report(
        NAME,
        f"default {default}: ingest {throughput[default]:.1f} vs torch {throughput['torch']:.1f} chunks/s -> x"
        f"{ingest_ratio:.2f} (target >= {TARGET_INGEST_RATIO}); query p50 {p50[default]:.2f} vs"
        f" {p50['torch']:.2f} ms -> x{query_ratio:.2f} (target <= {TARGET_QUERY_RATIO}); nDCG@10"
        f" {ndcg[default]:.4f} vs {ndcg['torch']:.4f} (within {MAX_NDCG_LOSS}: {default in within});"
        f" fastest within: {fastest_within}",
        passed,
    )
    write_result(
        NAME,
        measured=f"ingest chunks/s, single-query p50 and SciFact nDCG@10 of the default backend ({default})",
        baseline={
            "what": f"SentenceTransformer.encode on PyTorch (CPU, batch {batch}, normalized), same texts, same run",
            "ingest_chunks_per_s": round(throughput["torch"], 2),
            "query_p50_ms": round(p50["torch"], 3),
            "ndcg@10": round(ndcg["torch"], 4),
        },
        value=round(throughput[default], 2),
        ratio=round(ingest_ratio, 4),
        query_p50_ratio=round(query_ratio, 4),
        target=f"ingest ratio >= {TARGET_INGEST_RATIO}, query p50 ratio <= {TARGET_QUERY_RATIO}, nDCG@10 >= torch -"
        f" {MAX_NDCG_LOSS}, default = fastest backend within that",
        passed=passed,
        default_backend=default,
        fastest_backend_within_ndcg_bound=fastest_within,
        backends=figures,
        throughput_chunks=len(texts),
        throughput_documents=min(args.backends_docs, len(data.corpus)),
        rounds=args.backends_rounds,
        latency_queries=len(queries),
        quality={
            "corpus": "all of SciFact" if len(corpus) == len(data.corpus) else "judged documents + seeded sample",
            "documents": len(corpus),
            "chunks": len(corpus_texts),
            "queries": len(qrels),
        },
        batch_size=batch,
        omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", "unset (OpenMP threads spin)"),
        onnx_export=[str(p) for p in sorted(exports.glob("*/*/export.json"))],
    )
    return passed
