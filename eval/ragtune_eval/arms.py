"""The four arms and the training data of the two fine-tuned ones.

Every arm gets the same user turn (the question) under the same short-answer instruction; the RAG
arms add the gateway's own grounding (the ``rag`` extension of chat completions). The RAFT adapter
is trained on exactly the prompt the gateway builds at inference time (``ragtune_common.prompts``):
the gold passage shuffled among retrieved distractors, or, for a seeded fraction, distractors only.

Two RAFT recipes:

- ``published`` (Zhang et al. 2024, "RAFT: Adapting Language Model to Domain Specific RAG"): the
  answer is a chain of thought that quotes the gold passage between ``##begin_quote##`` and
  ``##end_quote##`` and ends with ``<ANSWER>: <the answer>``; one gold passage among four
  distractors by default. The paper writes the reasoning with GPT-4; no such model ships here, so
  the reasoning is a template around the quoted sentence that holds the answer.
- ``answer-only``: the answer alone (what ragtune trained before), shorter to train and to generate.

Answers are scored on the final answer (after ``<ANSWER>:`` when there is one), raw, and in
short-answer form: the same gold-blind extraction for every arm (:func:`short_answer`).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass

from ragtune_common.prompts import grounded_messages
from ragtune_eval.dataset import QAItem

INSTRUCTION = "Answer with the shortest exact answer: a few words, no full sentence, no explanation."
CHARS_PER_TOKEN = 3.5  # conservative for English under SmolLM2's tokenizer: used to keep examples in length
RAFT_RECIPES = ("published", "answer-only")
BEGIN_QUOTE, END_QUOTE, ANSWER_MARK = "##begin_quote##", "##end_quote##", "<ANSWER>:"
# Closed-book paraphrase augmentation (Ovadia et al. 2024: paraphrased repetitions help fine-tuning
# absorb facts). Template rephrasings of the question; no paraphrasing model ships here.
QUESTION_PARAPHRASES = (
    "{q}",
    "Question: {q}",
    "{q} Give only the answer.",
    "Tell me: {q}",
    "I would like to know this. {q}",
)


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


def closed_book_lines(item: QAItem, paraphrases: int = 0) -> list[str]:
    """The example, and ``paraphrases`` more with the question rephrased (the same answer)."""
    lines = [closed_book_line(item)]
    for template in QUESTION_PARAPHRASES[1 : 1 + paraphrases]:
        rephrased = QAItem(item.id, template.format(q=item.question), item.answers, item.context)
        lines.append(closed_book_line(rephrased))
    return lines


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def quote_for(context: str, answer: str, max_chars: int = 400) -> str:
    """The sentence of ``context`` that holds ``answer`` (case-insensitively), for the reasoning's
    quote; the window around the answer when no sentence boundary helps; the answer itself when the
    context does not hold it."""
    lowered = answer.lower()
    for sentence in _SENTENCE_END.split(context):
        if lowered in sentence.lower():
            sentence = sentence.strip()
            if len(sentence) <= max_chars:
                return sentence
            at = sentence.lower().index(lowered)
            start = max(0, at - (max_chars - len(answer)) // 2)
            return sentence[start : start + max_chars].strip()
    return answer


def raft_reasoning(item: QAItem, gold: Passage) -> str:
    """The published recipe's answer: reasoning that quotes the gold passage, then the answer."""
    answer = item.answers[0]
    quote = quote_for(gold.text, answer)
    return (
        f"##Reason: The passage {gold.name or gold.document_id} says {BEGIN_QUOTE} {quote} {END_QUOTE} "
        f"so the answer is {answer}.\n{ANSWER_MARK} {answer}"
    )


_CITATION = re.compile(r"\s*\[\d{1,3}\]")
_LEAD = re.compile(r"^(?:(?:the|my|final)\s+)?answer\s*(?:is|:)\s*|^(?:it|this|that)\s+(?:is|was|are|were)\s+", re.I)


def final_answer(text: str) -> str:
    """What follows the last ``<ANSWER>:`` (the published RAFT format), else the whole text."""
    at = text.rfind(ANSWER_MARK)
    return text[at + len(ANSWER_MARK) :].strip() if at >= 0 else text.strip()


def short_answer(text: str) -> str:
    """The answer span, read the same way for every arm and blind to the gold answers: the final
    answer, without citation markers, cut at the first line and the first sentence end, without a
    leading "The answer is" / "It is", quotes and trailing punctuation."""
    text = _CITATION.sub("", final_answer(text)).strip()
    text = text.splitlines()[0] if text else ""
    text = _SENTENCE_END.split(text)[0]
    text = _LEAD.sub("", text.strip())
    return text.strip().strip("\"'`").rstrip(".!?,;:").strip()


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
    recipe: str = "published",
) -> str:
    """One RAFT chat example in the gateway's grounded-prompt shape. Distractors are the best hits
    from other documents; passages are dropped from the end while the prompt exceeds the budget.
    The answer follows ``recipe`` (see the module's docstring); without the gold passage in the
    prompt it is the same answer (the paper's 1-P examples: the model learns to answer from memory)."""
    chosen = [p for p in retrieved if p.document_id != gold.document_id][:distractors]
    passages = [*chosen, *([gold] if with_gold else [])]
    random.Random(f"{seed}:{item.id}").shuffle(passages)
    while len(passages) > 1 and sum(len(p.text) for p in passages) > max_passage_chars:
        drop = next((p for p in reversed(passages) if p is not gold), None)
        if drop is None:
            break
        passages.remove(drop)
    sources = [(p.name or p.document_id, p.text) for p in passages]  # named as the gateway names a hit
    answer = raft_reasoning(item, gold) if recipe == "published" else item.answers[0]
    messages = [*grounded_messages(question_messages(item), sources), {"role": "assistant", "content": answer}]
    return json.dumps({"messages": messages}, ensure_ascii=False)


def no_gold_ids(items: list[QAItem], fraction: float, seed: int) -> set[str]:
    """RAFT's 1-P: the questions trained without their gold passage (seeded)."""
    return {item.id for item in random.Random(seed).sample(items, round(len(items) * fraction))}
