"""ingest_throughput: end-to-end ingest chunks/s through gRPC vs the embedding model alone.

Measured: one ``StreamUpsertDocuments`` call (16 documents a message) carrying the first N SciFact
documents into a fresh collection with the service's default chunking: parse, chunk, embed, write
to PostgreSQL (rows, tsvector, GIN and HNSW index) and answer. chunks/s = the response's
chunk_count / the call's wall time.

Baseline, same run, same machine: ``SentenceTransformer.encode`` in the bench process (batch 32,
normalize_embeddings=True) on exactly the chunk texts the service stores, obtained with the
service's own parser and chunker (``extract_text``, ``chunk_text`` with the model's tokenizer and
the collection's max_tokens/overlap), while the server sits idle. Each of ``--ingest-rounds`` (3)
rounds runs both sides, the order flipping every round (baseline first on odd rounds), so load that
comes and goes on this shared machine does not always land on the same side. The best of each side
is the figure: ratio = service / encode-only, target >= 0.85; the ratio within each round and
their median are kept too.

Both sides embed on the same device, ``--bench-device`` (default ``cpu``): the service gets it as
``RAGTUNE_RETRIEVER_EMBEDDING_DEVICE`` (its own default ``auto`` would pick a GPU where the baseline
stays on the CPU); the result records it.
"""

from __future__ import annotations

import argparse
import time
import uuid

from bench.common import Context, Retriever, load_scifact, percentile, report, stream_upsert, write_result
from ragtune.retriever.v1 import retriever_pb2 as pb
from ragtune_retriever.chunking import chunk_text
from ragtune_retriever.embedding import resolve_model_path
from ragtune_retriever.parsing import extract_text
from ragtune_retriever.settings import RetrieverSettings

NAME = "ingest_throughput"
TARGET_RATIO = 0.85
DOCS_PER_MESSAGE = 16


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--ingest-docs", type=int, default=600, help="SciFact documents per ingest")
    group.add_argument("--ingest-rounds", type=int, default=3, help="rounds, the order of the sides flipping")


def run(ctx: Context, args: argparse.Namespace) -> bool:
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    docs = load_scifact(ctx.datasets / "scifact").corpus[: args.ingest_docs]
    settings = RetrieverSettings()
    model_path = resolve_model_path(settings.embedding_model)
    device = args.bench_device
    model = SentenceTransformer(str(model_path), device=device, local_files_only=True)
    # chunking flips a tokenizer's truncation/padding state: like the service, it gets its own
    # instance, so the baseline encodes with the model's tokenizer as loaded
    chunk_tokenizer: PreTrainedTokenizerFast = AutoTokenizer.from_pretrained(str(model_path))  # type: ignore[assignment]
    baseline_s: list[float] = []
    service_s: list[float] = []
    service_chunks: list[int] = []
    with Retriever(ctx, NAME, env={"RAGTUNE_RETRIEVER_EMBEDDING_DEVICE": device}) as stub:
        texts: list[str] = []
        for round_no in range(1, args.ingest_rounds + 1):
            name = f"bench-ingest-{uuid.uuid4().hex[:8]}"
            collection = stub.CreateCollection(pb.CreateCollectionRequest(name=name), timeout=600).collection
            try:
                if not texts:  # the chunks the service will store, by its own parser and chunker
                    max_tokens, overlap = collection.chunking.max_tokens, collection.chunking.overlap_tokens
                    for doc_id, text in docs:
                        parsed = extract_text(text.encode("utf-8"), "text/plain", field=doc_id)
                        texts += [c.text for c in chunk_text(parsed, chunk_tokenizer, max_tokens, overlap)]
                for side in ("baseline", "service") if round_no % 2 else ("service", "baseline"):
                    start = time.perf_counter()
                    if side == "baseline":
                        model.encode(texts, batch_size=settings.embedding_batch_size, normalize_embeddings=True)
                        baseline_s.append(time.perf_counter() - start)
                    else:
                        response = stream_upsert(stub, name, docs, per_message=DOCS_PER_MESSAGE)
                        service_s.append(time.perf_counter() - start)
                        service_chunks.append(int(response.chunk_count))
                if response.created != len(docs):
                    raise RuntimeError(f"expected {len(docs)} documents created, got {response.created}")
            finally:
                stub.DeleteCollection(pb.DeleteCollectionRequest(name=name), timeout=600)
            print(
                f"  round {round_no}: encode-only {len(texts) / baseline_s[-1]:.1f} chunks/s"
                f" ({baseline_s[-1]:.1f}s), service {service_chunks[-1] / service_s[-1]:.1f} chunks/s"
                f" ({service_s[-1]:.1f}s)",
                flush=True,
            )

    if any(count != len(texts) for count in service_chunks):
        print(f"  WARNING: service stored {service_chunks} chunks, the bench's chunker gives {len(texts)}")
    baseline = len(texts) / min(baseline_s)
    value = max(c / s for c, s in zip(service_chunks, service_s, strict=True))
    ratio = value / baseline
    round_ratios = [(c / s) / (len(texts) / b) for c, s, b in zip(service_chunks, service_s, baseline_s, strict=True)]
    passed = ratio >= TARGET_RATIO
    report(
        NAME,
        f"service {value:.1f} chunks/s vs encode-only {baseline:.1f} chunks/s -> ratio {ratio:.3f}"
        f" (both on {device}; median of the per-round ratios {percentile(round_ratios, 50):.3f};"
        f" target >= {TARGET_RATIO})",
        passed,
    )
    write_result(
        NAME,
        measured=f"chunks/s of StreamUpsertDocuments end to end, {len(docs)} SciFact docs, best of {len(service_s)}",
        baseline={
            "what": f"SentenceTransformer.encode alone on the same {len(texts)} chunk texts (batch "
            f"{settings.embedding_batch_size}, normalized), best of {len(baseline_s)}",
            "value": round(baseline, 2),
        },
        value=round(value, 2),
        ratio=round(ratio, 4),
        target=f"ratio >= {TARGET_RATIO}",
        passed=passed,
        device=device,
        documents=len(docs),
        chunks=len(texts),
        round_ratios=[round(r, 4) for r in round_ratios],
        median_round_ratio=round(percentile(round_ratios, 50), 4),
        round_order=["baseline first" if r % 2 else "service first" for r in range(1, len(round_ratios) + 1)],
        service_chunks=service_chunks,
        service_seconds=[round(s, 2) for s in service_s],
        baseline_seconds=[round(s, 2) for s in baseline_s],
        chunking={"max_tokens": collection.chunking.max_tokens, "overlap_tokens": collection.chunking.overlap_tokens},
        docs_per_message=DOCS_PER_MESSAGE,
        stream_batch_documents=settings.stream_batch_documents,
    )
    return passed
