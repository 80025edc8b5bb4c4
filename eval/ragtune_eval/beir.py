"""Retrieval alone on a BEIR dataset, for tuning a collection: the corpus ingested into a vector
store through REST, every query searched per search mode and ``ef_search``, scored at the document
level (a document ranks at its best chunk) with nDCG@10, Recall@k and MRR."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ragtune_eval.client import GatewayClient
from ragtune_eval.dataset import BeirDataset
from ragtune_eval.indexing import Progress, ensure_store
from ragtune_eval.rundir import RunDir
from ragtune_eval.scoring import mean, ndcg_at_k, percentile, recall_at_k, reciprocal_rank

MAX_RESULTS = 50  # the REST search's max_num_results


@dataclass(frozen=True)
class BeirConfig:
    dataset: str
    modes: tuple[str, ...] = ("vector", "keyword", "hybrid")
    ef_search: tuple[int, ...] = ()  # empty: the server's default only
    top_k: int = MAX_RESULTS
    max_queries: int = 0  # 0 = every judged query
    concurrency: int = 4

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "modes": list(self.modes), "ef_search": list(self.ef_search)}

    def settings(self) -> list[tuple[str, int | None]]:
        """(mode, ef_search) pairs; ef_search only matters where vectors are searched."""
        efs: list[int | None] = list(self.ef_search) or [None]
        return [(mode, ef) for mode in self.modes for ef in (efs if mode != "keyword" else [None])]


def setting_name(mode: str, ef: int | None) -> str:
    return f"{mode}" if ef is None else f"{mode}-ef{ef}"


class BeirEvaluation:
    def __init__(
        self, client: GatewayClient, data: BeirDataset, config: BeirConfig, run: RunDir, progress: Progress
    ) -> None:
        self.client, self.data, self.config, self.run, self.progress = client, data, config, run, progress
        self.limit = asyncio.Semaphore(config.concurrency)

    def queries(self) -> list[str]:
        ids = sorted(self.data.qrels)
        return ids[: self.config.max_queries] if self.config.max_queries else ids

    async def execute(self) -> dict[str, Any]:
        await self.run.check_config(self.config.as_dict())
        store = await ensure_store(self.client, self.run, self.data.corpus, self.limit, self.progress)
        corpus_id = {file_id: doc_id for doc_id, file_id in store["files"].items()}
        figures = {}
        for mode, ef in self.config.settings():
            name = setting_name(mode, ef)
            await self.search_all(name, mode, ef, corpus_id)
            figures[name] = self.figures(await self.run.results(name))
            self.progress.log(f"{name}: {figures[name]}")
        report = {
            "config": self.config.as_dict(),
            "vector_store_id": store["id"],
            "index": {k: store.get(k) for k in ("documents", "chunks", "build_s", "upload_s", "text_bytes")},
            "settings": figures,
            "notes": [
                "Document level: a document ranks at its best chunk.",
                "ef_search travels as a ragtune extension field of the REST search; a gateway that does not "
                "forward it searches with the server default, and the ef rows are then the same.",
            ],
        }
        self.run.write_json("report.json", report)
        (self.run.path / "report.md").write_text(to_markdown(report), encoding="utf-8")
        return report

    async def search_all(self, name: str, mode: str, ef: int | None, corpus_id: dict[str, str]) -> None:
        done = {row_id for _, row_id in await self.run.done(name)}
        todo = [qid for qid in self.queries() if qid not in done]
        total = len(self.queries())
        self.progress.start(f"search-{name}", f"searching {name}", total)
        finished = total - len(todo)
        self.progress.update(f"search-{name}", finished)

        async def one(qid: str) -> None:
            nonlocal finished
            async with self.limit:
                start = time.perf_counter()
                hits = await self.client.search(
                    self.run.state["store"]["id"], self.data.queries[qid], self.config.top_k, mode, ef
                )
                latency = time.perf_counter() - start
            ranked = list(dict.fromkeys(corpus_id.get(h["document_id"], h["document_id"]) for h in hits))
            relevance = self.data.qrels[qid]
            relevant = [doc for doc, grade in relevance.items() if grade > 0]
            await self.run.append_result(
                name,
                {
                    "id": qid,
                    "split": "test",
                    "ranked": ranked[: self.config.top_k],
                    "ndcg@10": ndcg_at_k(ranked, relevance, 10),
                    "recall@10": recall_at_k(ranked, relevant, 10),
                    f"recall@{self.config.top_k}": recall_at_k(ranked, relevant, self.config.top_k),
                    "mrr@10": reciprocal_rank(ranked, relevant, 10),
                    "latency_s": round(latency, 4),
                },
            )
            finished += 1
            self.progress.update(f"search-{name}", finished)

        async with asyncio.TaskGroup() as group:
            for qid in todo:
                group.create_task(one(qid))

    def figures(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        keys = ["ndcg@10", "recall@10", f"recall@{self.config.top_k}", "mrr@10"]
        latencies = [r["latency_s"] for r in rows]
        return {
            "queries": len(rows),
            **{key: round(mean([r[key] for r in rows]), 4) for key in keys},
            "latency_p50_ms": round(1000 * percentile(latencies, 50), 1),
            "latency_p95_ms": round(1000 * percentile(latencies, 95), 1),
        }


def to_markdown(report: dict[str, Any]) -> str:
    k = report["config"]["top_k"]
    lines = [
        f"# ragtune eval beir: {Path(report['config']['dataset']).name}",
        "",
        f"{report['index']['documents']} documents, {report['index']['chunks']} chunks, "
        f"index built in {report['index']['build_s']:.0f}s.",
        "",
        f"| setting | queries | nDCG@10 | Recall@10 | Recall@{k} | MRR@10 | p50 ms | p95 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, f in report["settings"].items():
        lines.append(
            f"| {name} | {f['queries']} | {f['ndcg@10']:.4f} | {f['recall@10']:.4f} | {f[f'recall@{k}']:.4f} | "
            f"{f['mrr@10']:.4f} | {f['latency_p50_ms']:.0f} | {f['latency_p95_ms']:.0f} |"
        )
    return "\n".join([*lines, "", *[f"- {n}" for n in report["notes"]], ""])
