"""The teacher of a distillation: the model that re-answers the kept training prompts. Without a
``base_url`` it is one of the tenant's own models on this server (called in-process, not stored);
with one, any OpenAI-compatible ``/chat/completions`` endpoint among those the operator allowed
(``RAGTUNE_GATEWAY_TEACHER_BASE_URLS``), sent ``RAGTUNE_GATEWAY_TEACHER_API_KEY`` as the judge of
the evaluation is sent its key. A teacher that cannot be reached or refuses is a 400 naming the
field, and nothing is written."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from ragtune_gateway.errors import ApiError
from ragtune_gateway.runtime import GatewayRuntime
from ragtune_gateway.schemas.chat import ChatCompletionRequest
from ragtune_gateway.schemas.distillations import Teacher
from ragtune_gateway.services import chat

CONCURRENCY = 4
TIMEOUT_S = 120.0


def allowed_urls(runtime: GatewayRuntime) -> set[str]:
    return {u.strip().rstrip("/") for u in runtime.settings.teacher_base_urls.split(",") if u.strip()}


def check(runtime: GatewayRuntime, teacher: Teacher) -> None:
    if teacher.base_url is not None and teacher.base_url.rstrip("/") not in allowed_urls(runtime):
        message = (
            f"The teacher endpoint {teacher.base_url!r} is not among those this server may call"
            " (RAGTUNE_GATEWAY_TEACHER_BASE_URLS); leave base_url out to use one of your models here."
        )
        raise ApiError(400, message, param="teacher.base_url", code="teacher_not_allowed")


async def _local(runtime: GatewayRuntime, tenant: str, teacher: Teacher, messages: list[dict[str, str]]) -> str:
    body = ChatCompletionRequest.model_validate(
        {
            "model": teacher.model,
            "messages": messages,
            "temperature": teacher.temperature,
            "max_tokens": teacher.max_tokens,
            "store": False,
        }
    )
    try:
        completion = await chat.complete(runtime, tenant, body)
    except ApiError as exc:
        if exc.param == "model":
            raise ApiError(exc.status, exc.message, param="teacher.model", code=exc.code) from None
        raise
    return completion.choices[0].message.content or ""


async def _remote(http: httpx.AsyncClient, teacher: Teacher, messages: list[dict[str, str]]) -> str:
    body: dict[str, Any] = {"model": teacher.model, "messages": messages, "temperature": teacher.temperature}
    if teacher.max_tokens is not None:
        body["max_tokens"] = teacher.max_tokens
    where = f"The teacher at {teacher.base_url}"
    try:
        reply = await http.post("chat/completions", json=body)
    except httpx.HTTPError as exc:
        raise ApiError(400, f"{where} cannot be reached: {type(exc).__name__}.", param="teacher.base_url") from None
    if reply.status_code in (401, 403):
        raise ApiError(400, f"{where} refused the key ({reply.status_code}).", param="teacher.base_url")
    if reply.status_code == 404:
        raise ApiError(400, f"{where} has no model {teacher.model!r} (404).", param="teacher.model")
    if reply.status_code != 200:
        raise ApiError(400, f"{where} answered {reply.status_code}.", param="teacher")
    try:
        content = reply.json()["choices"][0]["message"]["content"]
    except (ValueError, LookupError, TypeError):
        raise ApiError(400, f"{where} did not answer as a chat completion.", param="teacher") from None
    return str(content or "")


async def answer_all(
    runtime: GatewayRuntime, tenant: str, teacher: Teacher, prompts: dict[str, list[dict[str, str]]]
) -> dict[str, str]:
    """The teacher's answer to each prompt (by its key), a few at a time; the first failure stops all."""
    check(runtime, teacher)
    key = runtime.settings.teacher_api_key
    headers = {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}
    gate = asyncio.Semaphore(CONCURRENCY)
    base_url = (teacher.base_url or "http://unused").rstrip("/") + "/"
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=TIMEOUT_S) as http:

        async def one(messages: list[dict[str, str]]) -> str:
            async with gate:
                if teacher.base_url is None:
                    return await _local(runtime, tenant, teacher, messages)
                return await _remote(http, teacher, messages)

        try:
            async with asyncio.TaskGroup() as group:
                tasks = {k: group.create_task(one(m)) for k, m in prompts.items()}
        except ExceptionGroup as failed:  # the first failure, as it was raised
            raise failed.exceptions[0] from None
    return {k: t.result() for k, t in tasks.items()}
