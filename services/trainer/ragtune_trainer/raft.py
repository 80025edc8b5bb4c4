"""RAFT (retrieval-augmented fine-tuning) data: each question's prompt holds its gold passage
shuffled among k distractor passages that the retriever returns for the question (never from the
gold document); for a seeded fraction of the questions only the distractors, so the model also
learns not to count on the gold passage always being retrieved (Zhang et al., 2024)."""

from __future__ import annotations

import asyncio
import json
import random
import re
from dataclasses import dataclass

import grpc

from ragtune.retriever.v1 import retriever_pb2, retriever_pb2_grpc
from ragtune_common.channels import ChannelSecurity, open_channel
from ragtune_common.errors import InvalidArgument, NotFound, RagtuneError, Unavailable

DEFAULT_SYSTEM_PROMPT = (
    "Answer the question using the documents given with it. "
    "If none of them holds the answer, answer from what you know and say so."
)
_SPACE = re.compile(r"\s+")
SEARCH_CONCURRENCY = 8
RETRIEVER = retriever_pb2.DESCRIPTOR.services_by_name["RetrieverService"].full_name


@dataclass(frozen=True)
class RaftItem:
    question: str
    answer: str
    gold_passage: str = ""
    gold_document_id: str = ""


@dataclass(frozen=True)
class Passage:
    document_id: str
    text: str


def _norm(text: str) -> str:
    return _SPACE.sub(" ", text).strip().lower()


def pick_distractors(hits: list[Passage], gold: str, gold_document_id: str, k: int) -> list[str]:
    """The first k distinct hits that are not the gold passage (nor overlap it, nor come from the
    gold document)."""
    gold_norm, chosen, seen = _norm(gold), [], set()
    for hit in hits:
        text = _norm(hit.text)
        if not text or text in seen or (gold_document_id and hit.document_id == gold_document_id):
            continue
        if gold_norm and (text in gold_norm or gold_norm in text):
            continue
        seen.add(text)
        chosen.append(hit.text.strip())
        if len(chosen) == k:
            break
    return chosen


def user_prompt(question: str, passages: list[str]) -> str:
    documents = "\n\n".join(f"[{i}] {p}" for i, p in enumerate(passages, start=1))
    return f"Documents:\n{documents}\n\nQuestion: {question}"


def no_gold_indices(count: int, fraction: float, seed: int) -> set[int]:
    return set(random.Random(seed).sample(range(count), round(count * fraction)))


def example_line(item: RaftItem, gold: str, distractors: list[str], with_gold: bool, seed: int, system: str) -> str:
    passages = [*distractors, *([gold] if with_gold else [])]
    random.Random(f"{seed}:{item.question}").shuffle(passages)
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": user_prompt(item.question, passages)},
        {"role": "assistant", "content": item.answer},
    ]
    return json.dumps({"messages": messages}, ensure_ascii=False)


def _retriever_error(exc: grpc.aio.AioRpcError, address: str, field: str) -> RagtuneError:
    if exc.code() == grpc.StatusCode.NOT_FOUND:
        return NotFound(f"retriever: {exc.details()}", field=field)
    if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(f"retriever: {exc.details()}", field=field)
    return Unavailable(f"retriever at {address}: {exc.code().name}: {exc.details()}")


class RaftBuilder:
    """Builds RAFT chat JSONL with a retriever reached at ``address``."""

    def __init__(self, address: str, timeout_s: float, security: ChannelSecurity) -> None:
        self.address = address
        self.security = security
        self.timeout_s = timeout_s

    async def build(
        self,
        tenant: str,
        collections: list[str],
        items: list[RaftItem],
        distractors: int,
        no_gold_fraction: float,
        seed: int,
        system_prompt: str,
    ) -> tuple[bytes, int]:
        """The JSONL bytes and how many examples lack the gold passage."""
        without_gold = no_gold_indices(len(items), no_gold_fraction, seed)
        limit = asyncio.Semaphore(SEARCH_CONCURRENCY)
        async with open_channel(
            self.address, RETRIEVER, self.security, idempotent=("Search", "GetDocument")
        ) as channel:
            stub = retriever_pb2_grpc.RetrieverServiceStub(channel)

            async def one(index: int, item: RaftItem) -> str:
                async with limit:
                    gold = item.gold_passage or await self._document_text(stub, tenant, collections, item, index)
                    hits = await self._search(stub, tenant, collections, item.question, distractors + 8)
                chosen = pick_distractors(hits, gold, item.gold_document_id, distractors)
                return example_line(item, gold, chosen, index not in without_gold, seed, system_prompt)

            lines = await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
        return ("\n".join(lines) + "\n").encode("utf-8"), len(without_gold)

    async def _search(
        self, stub: retriever_pb2_grpc.RetrieverServiceStub, tenant: str, collections: list[str], query: str, k: int
    ) -> list[Passage]:
        request = retriever_pb2.SearchRequest(tenant=tenant, collections=collections, query=query, top_k=k)
        try:
            reply = await stub.Search(request, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise _retriever_error(exc, self.address, "collections") from None
        return [Passage(hit.document_id, hit.text) for hit in reply.hits]

    async def _document_text(
        self,
        stub: retriever_pb2_grpc.RetrieverServiceStub,
        tenant: str,
        collections: list[str],
        item: RaftItem,
        index: int,
    ) -> str:
        field = f"examples[{index}].gold_document_id"
        for collection in collections:
            request = retriever_pb2.GetDocumentRequest(tenant=tenant, collection=collection, id=item.gold_document_id)
            try:
                return (await stub.GetDocument(request, timeout=self.timeout_s)).document.text
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise _retriever_error(exc, self.address, field) from None
        raise InvalidArgument(f"no document {item.gold_document_id!r} in {collections}", field=field)
