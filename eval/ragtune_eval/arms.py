"""The four arms and the training data of the two fine-tuned ones.

Every arm gets the same user turn (the question) under the same short-answer instruction; the RAG
arms add the gateway's own grounding (the ``rag`` extension of chat completions). The RAFT adapter
is trained on exactly the prompt the gateway builds at inference time (``ragtune_common.prompts``):
the gold passage shuffled among retrieved distractors, or, for a seeded fraction, distractors only."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from ragtune_common.prompts import grounded_messages
from ragtune_eval.dataset import QAItem

INSTRUCTION = "Answer with the shortest exact answer: a few words, no full sentence, no explanation."
CHARS_PER_TOKEN = 3.5  # conservative for English under SmolLM2's tokenizer: used to keep examples in length


@dataclass(frozen=True)
class Arm:
    name: str
    retrieval: bool
    training: str | None  # None, "closed_book" or "raft"
    description: str


ARMS = {
    arm.name: arm
    for arm in (
        Arm("base", False, None, "the base model alone"),
        Arm("rag", True, None, "base model + retrieval from the dataset's contexts"),
        Arm("ft", False, "closed_book", "LoRA adapter fine-tuned on the train split, closed-book"),
        Arm("rag+ft", True, "raft", "RAFT-trained LoRA adapter + retrieval"),
    )
}


def parse_arms(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in ARMS]
    if unknown or not names:
        raise ValueError(f"unknown arm(s) {unknown or value!r}: choose from {', '.join(ARMS)}")
    return [n for n in ARMS if n in names]  # canonical order


def question_messages(item: QAItem) -> list[dict[str, str]]:
    return [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": item.question}]


def closed_book_line(item: QAItem) -> str:
    messages = [*question_messages(item), {"role": "assistant", "content": item.answers[0]}]
    return json.dumps({"messages": messages}, ensure_ascii=False)


@dataclass(frozen=True)
class Passage:
    document_id: str
    name: str
    text: str


def raft_line(
    item: QAItem,
    gold: Passage,
    retrieved: list[Passage],
    distractors: int,
    with_gold: bool,
    seed: int,
    max_passage_chars: int,
) -> str:
    """One RAFT chat example in the gateway's grounded-prompt shape. Distractors are the best hits
    from other documents; passages are dropped from the end while the prompt exceeds the budget."""
    chosen = [p for p in retrieved if p.document_id != gold.document_id][:distractors]
    passages = [*chosen, *([gold] if with_gold else [])]
    random.Random(f"{seed}:{item.id}").shuffle(passages)
    while len(passages) > 1 and sum(len(p.text) for p in passages) > max_passage_chars:
        drop = next((p for p in reversed(passages) if p is not gold), None)
        if drop is None:
            break
        passages.remove(drop)
    sources = [(p.name or p.document_id, p.text) for p in passages]  # named as the gateway names a hit
    messages = [*grounded_messages(question_messages(item), sources), {"role": "assistant", "content": item.answers[0]}]
    return json.dumps({"messages": messages}, ensure_ascii=False)


def no_gold_ids(items: list[QAItem], fraction: float, seed: int) -> set[str]:
    """RAFT's 1-P: the questions trained without their gold passage (seeded)."""
    return {item.id for item in random.Random(seed).sample(items, round(len(items) * fraction))}
