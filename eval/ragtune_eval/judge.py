"""An optional LLM judge of RAG answers, off by default: any OpenAI-compatible chat endpoint (a hosted
model, a vLLM server, or ragtune's own gateway) reads each held-out question of a retrieval arm with
the passages the answer was given, the gold answers and the answer, and says whether the answer is
supported by the passages and whether it is correct. The default groundedness metrics
(``ragtune_eval.grounding``) need no model; these verdicts are a second opinion beside them.

Verdicts are kept per question in the run directory (``results/judge-<arm>.jsonl``), so a resumed
run judges each answer once; a reply the judge words unreadably counts as unjudged, not as a verdict.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from ragtune_eval.client import EvalApiError
from ragtune_eval.dataset import Split
from ragtune_eval.indexing import Progress
from ragtune_eval.rundir import RunStore
from ragtune_eval.tasks import run_each

API_KEY_VARIABLE = "RAGTUNE_JUDGE_API_KEY"
MAX_PASSAGE_CHARS = 1500  # per passage shown to the judge
_VERDICT = {key: re.compile(rf"\b{key}\**\s*[:=]\s*\**\s*(yes|no)\b", re.I) for key in ("supported", "correct")}

PROMPT = """You grade an answer to a question. Reply with exactly two lines:
SUPPORTED: yes or no (is everything the answer states found in the passages?)
CORRECT: yes or no (does the answer give the same answer as one of the reference answers?)

Question: {question}

Passages:
{passages}

Reference answers: {gold}

Answer to grade: {answer}"""


@dataclass(frozen=True)
class Verdict:
    supported: bool | None  # None: the judge's reply did not say
    correct: bool | None
    reply: str

    def as_row(self, question_id: str) -> dict[str, Any]:
        return {
            "id": question_id,
            "split": "test",
            "supported": self.supported,
            "correct": self.correct,
            "reply": self.reply[:500],
        }


def judge_prompt(question: str, passages: Sequence[str], gold: Sequence[str], answer: str) -> str:
    shown = "\n".join(f"[{i}] {p[:MAX_PASSAGE_CHARS]}" for i, p in enumerate(passages, 1)) or "(none)"
    return PROMPT.format(question=question, passages=shown, gold=" | ".join(gold), answer=answer.strip() or "(empty)")


def parse_verdict(reply: str) -> Verdict:
    """The two yes/no verdicts of a judge's reply, each None when it does not say."""
    found: dict[str, bool | None] = {}
    for key, pattern in _VERDICT.items():
        match = pattern.search(reply)
        found[key] = None if match is None else match.group(1).lower() == "yes"
    return Verdict(found["supported"], found["correct"], reply)


def summarize(verdicts: Sequence[dict[str, Any]], model: str) -> dict[str, Any]:
    """Shares of answers judged supported and correct, over the questions the judge gave a verdict on."""

    def share(key: str) -> float | None:
        said = [v[key] for v in verdicts if v.get(key) is not None]
        return round(sum(said) / len(said), 4) if said else None

    return {
        "model": model,
        "supported": share("supported"),
        "correct": share("correct"),
        "judged": len(verdicts),
        "unreadable": sum(1 for v in verdicts if v.get("supported") is None or v.get("correct") is None),
    }


class Judge:
    """A chat model behind an OpenAI-compatible ``base_url`` (ending in ``/v1``); the API key is
    read from ``RAGTUNE_JUDGE_API_KEY`` unless given."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 300.0,
        max_tokens: int = 24,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get(API_KEY_VARIABLE, "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.model, self.max_tokens = model, max_tokens
        self.http = httpx.AsyncClient(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s)

    async def verdict(self, question: str, passages: Sequence[str], gold: Sequence[str], answer: str) -> Verdict:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": judge_prompt(question, passages, gold, answer)}],
            "max_tokens": self.max_tokens,
            "temperature": 0,
        }
        try:
            response = await self.http.post("/chat/completions", json=body)
        except httpx.HTTPError as error:
            raise EvalApiError(f"judge at {self.http.base_url}: {type(error).__name__}: {error}") from None
        if response.status_code >= 400:
            raise EvalApiError(
                f"judge {self.model!r}: HTTP {response.status_code}: {response.text[:300]}", response.status_code
            )
        try:
            reply = response.json()["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            raise EvalApiError(f"judge {self.model!r}: not an OpenAI chat completion: {response.text[:300]}") from None
        return parse_verdict(str(reply))

    async def aclose(self) -> None:
        await self.http.aclose()


async def judge_arm(
    judge: Judge, run: RunStore, arm: str, split: Split, limit: asyncio.Semaphore, progress: Progress
) -> list[dict[str, Any]]:
    """The judge's verdicts on ``arm``'s held-out answers in ``run``, asking only for those not
    judged yet (kept in the run's ``judge-<arm>`` results)."""
    results = f"judge-{arm}"
    done = {row["id"] for row in await run.results(results)}
    todo = [r for r in await run.results(arm) if r["split"] == "test" and r["id"] not in done]
    progress.start(results, f"judging {arm}", len(todo))
    finished = 0

    async def one(row: dict[str, Any]) -> None:
        nonlocal finished
        async with limit:
            found = await judge.verdict(row["question"], row.get("passages") or [], row["answers"], row["prediction"])
        await run.append_result(results, found.as_row(row["id"]))
        finished += 1
        progress.update(results, finished)

    await run_each(todo, one)
    held_out = {item.id for item in split.test}
    return [row for row in await run.results(results) if row["id"] in held_out]
