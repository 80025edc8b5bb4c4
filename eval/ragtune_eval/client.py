"""The evaluation's only way into ragtune: the public REST API of the gateway (OpenAI dialect plus
ragtune's extensions), over one async httpx client, so that every figure is what a user gets."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Any

import httpx

RETRIES = 8
RETRY_PAUSE_S = 0.25
# What a client knows of the gateway's names (the gateway's own definitions are server code)
VECTOR_STORE_PREFIX = "vs_"
ALIAS = re.compile(r"ft:[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # "ft:" and a name without further colons


def is_alias(name: str) -> bool:
    return ALIAS.fullmatch(name) is not None


class EvalApiError(RuntimeError):
    """A REST call the evaluation cannot go on without, with the gateway's message."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ChatResult:
    text: str
    latency_s: float
    prompt_tokens: int
    completion_tokens: int
    document_ids: list[str]  # cited passages' documents, in rank order (RAG only)
    passages: list[str]


class GatewayClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout_s: float = 900.0,
        transport: httpx.AsyncBaseTransport | None = None,  # the gateway's own app, when it evaluates
    ) -> None:
        self.http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout_s,
            transport=transport,
        )

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One REST call. Back-pressure (429: refused, so nothing was done) is retried with a
        growing pause; so is 503 (a service restarting) for calls that only read or answer."""
        for attempt in range(RETRIES + 1):
            try:
                response = await self.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise EvalApiError(f"cannot reach the gateway at {self.http.base_url}: {exc}") from None
            retryable = response.status_code == 429 or (
                response.status_code == 503 and (method == "GET" or path.endswith(("/chat/completions", "/search")))
            )
            if not retryable or attempt == RETRIES:
                break
            await asyncio.sleep(min(RETRY_PAUSE_S * 2**attempt, 10.0))
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                message = error["message"] + (f" ({error['param']})" if error.get("param") else "")
            except (ValueError, KeyError, TypeError):
                message = response.text[:300]
            raise EvalApiError(f"{method} {path}: HTTP {response.status_code}: {message}", response.status_code)
        return response.json()

    async def base_model(self) -> str:
        models = (await self.call("GET", "/v1/models"))["data"]
        return str(next(m["id"] for m in models if not m.get("parent") and not m.get("alias_for")))

    async def upload(self, filename: str, data: bytes, purpose: str) -> str:
        body = await self.call("POST", "/v1/files", files={"file": (filename, data)}, data={"purpose": purpose})
        return str(body["id"])

    async def create_store(self, name: str, file_ids: list[str]) -> dict[str, Any]:
        return dict(await self.call("POST", "/v1/vector_stores", json={"name": name, "file_ids": file_ids}))

    async def add_to_store(self, store_id: str, file_id: str, attributes: dict[str, Any] | None = None) -> None:
        body: dict[str, Any] = {"file_id": file_id}
        if attributes:
            body["attributes"] = attributes
        await self.call("POST", f"/v1/vector_stores/{store_id}/files", json=body)

    async def get_store(self, store_id: str) -> dict[str, Any]:
        return dict(await self.call("GET", f"/v1/vector_stores/{store_id}"))

    async def search(
        self,
        store_id: str,
        query: str,
        k: int,
        mode: str = "hybrid",
        ef_search: int | None = None,
        filters: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"query": query, "max_num_results": k, "ranking_options": {"ranker": mode}}
        if filters is not None:
            body["filters"] = filters  # OpenAI's attribute filters: {"type": "lt", "key", "value"}
        if ef_search is not None:
            body["ef_search"] = ef_search  # ragtune extension; see the evaluation's README note
        return list((await self.call("POST", f"/v1/vector_stores/{store_id}/search", json=body))["data"])

    async def chat(
        self, model: str, messages: list[dict[str, str]], max_tokens: int, rag: dict[str, Any] | None = None
    ) -> ChatResult:
        body: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0}
        if rag is not None:
            body["rag"] = rag
        start = time.perf_counter()
        answer = await self.call("POST", "/v1/chat/completions", json=body)
        latency = time.perf_counter() - start
        citations = answer.get("citations") or []
        return ChatResult(
            text=answer["choices"][0]["message"]["content"] or "",
            latency_s=latency,
            prompt_tokens=int(answer["usage"]["prompt_tokens"]),
            completion_tokens=int(answer["usage"]["completion_tokens"]),
            document_ids=[c["document_id"] for c in citations],
            passages=[c["text"] for c in citations],
        )

    async def create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(await self.call("POST", "/v1/fine_tuning/jobs", json=body))

    async def get_job(self, job_id: str) -> dict[str, Any]:
        return dict(await self.call("GET", f"/v1/fine_tuning/jobs/{job_id}"))

    async def get_alias(self, alias: str) -> dict[str, Any] | None:
        """The alias's record, or None when it has no holder yet."""
        try:
            return dict(await self.call("GET", f"/v1/aliases/{alias}"))
        except EvalApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def promote(
        self,
        alias: str,
        candidate: str,
        score: float,
        holder: str | None,
        holder_score: float | None,
        evaluation: dict[str, Any],
        comparison: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Offer ``candidate`` for ``alias``; over a holder, ``comparison`` is the paired difference
        (candidate - holder) on the same questions with its interval, which the gateway requires."""
        body = {
            "candidate": candidate,
            "candidate_score": score,
            "holder": holder,
            "holder_score": holder_score,
            "metric": "f1",
            "evaluation": evaluation,
            "comparison": comparison,
        }
        return dict(await self.call("POST", f"/v1/aliases/{alias}/promotions", json=body))

    async def job_events(self, job_id: str) -> list[dict[str, Any]]:
        """A finished job's events, oldest first."""
        page = await self.call("GET", f"/v1/fine_tuning/jobs/{job_id}/events", params={"limit": 1000})
        return list(page["data"])
