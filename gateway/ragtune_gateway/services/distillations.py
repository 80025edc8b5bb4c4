"""Distillation (``POST /v1/distillations``, a ragtune extension): the tenant's stored chat
completions, chosen by a filter, become a fine-tuning file in the chat format.

- Each completion gives ``{"messages": [<the request's messages>, <the assistant's answer>]}``; the
  answer is its correction when it has one, else the stored answer (or, with a teacher, the
  teacher's: a correction still wins). One rated ``bad`` without a correction is left out.
- Completions with the same messages are merged into one line: the corrected one, else the latest.
- A seeded ``holdout_fraction`` of the distinct prompts is kept apart: not in the file, recorded,
  and what an eval run's ``stored_completions`` source with ``distillation_id`` takes.
- The file goes through the upload path of every fine-tune file (the trainer's line-numbered
  validation); the distillation is recorded after, and a failure there deletes the file again."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ragtune_gateway import ids
from ragtune_gateway.errors import ApiError, not_found
from ragtune_gateway.repositories import distillations as rows
from ragtune_gateway.repositories import files as file_rows
from ragtune_gateway.repositories import stored_completions as stored
from ragtune_gateway.repositories.distillations import DistillationRow, Item
from ragtune_gateway.repositories.stored_completions import StoredFilter, StoredRow
from ragtune_gateway.runtime import GatewayRuntime
from ragtune_gateway.schemas.common import ListPage
from ragtune_gateway.schemas.distillations import (
    CreateDistillation,
    Distillation,
    DistillationCounts,
    DistillationFilter,
)
from ragtune_gateway.services import distilled_files, teachers

ROLES = ("system", "developer", "user", "assistant")


@dataclass
class Group:
    """The completions sharing one prompt (messages), the preferred one first once chosen."""

    messages: list[dict[str, str]]
    members: list[StoredRow] = field(default_factory=list)

    def chosen(self) -> StoredRow:
        """The corrected one, else the latest (rows come oldest first)."""
        corrected = [r for r in self.members if r.correction]
        return (corrected or self.members)[-1]


@dataclass
class Plan:
    train: list[Group]
    holdout: list[Group]
    matched: int
    rejected: int


def text_of(content: Any) -> str:
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def prompt_of(row: StoredRow) -> list[dict[str, str]]:
    """The request's messages as chat-format messages (text content; roles the trainer takes)."""
    return [
        {"role": "system" if m["role"] == "developer" else m["role"], "content": text_of(m.get("content"))}
        for m in row.messages
        if m.get("role") in ROLES
    ]


def stored_answer(row: StoredRow) -> str:
    return text_of(((row.choices or [{}])[0].get("message") or {}).get("content"))


def reference_answer(row: StoredRow) -> str:
    """What a user accepted: the correction, else the stored answer."""
    return row.correction or stored_answer(row)


def rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def plan(found: list[StoredRow], holdout_fraction: float, seed: int) -> Plan:
    """Rejected answers out, duplicates merged, the held-out prompts chosen by a seeded hash (so the
    same prompts stay held out when the same traffic is distilled again with the same seed)."""
    groups: dict[str, Group] = {}
    rejected = 0
    for row in found:
        if row.metadata.get("feedback") == "bad" and not row.correction:
            rejected += 1
            continue
        messages = prompt_of(row)
        key = json.dumps(messages, sort_keys=True, ensure_ascii=False)
        groups.setdefault(key, Group(messages)).members.append(row)
    ordered = sorted(groups, key=lambda k: rank(seed, k))
    held = round(holdout_fraction * len(ordered))
    return Plan(
        train=[groups[k] for k in ordered[held:]],
        holdout=[groups[k] for k in ordered[:held]],
        matched=len(found),
        rejected=rejected,
    )


def stored_filter(where: DistillationFilter) -> StoredFilter:
    def when(seconds: int | None) -> datetime | None:
        return datetime.fromtimestamp(seconds, UTC) if seconds is not None else None

    return StoredFilter(
        model=where.model or "",
        metadata=where.metadata or {},
        ratings=tuple(where.feedback or ()),
        created_after=when(where.created_after),
        created_before=when(where.created_before),
        limit=where.limit or 100_000,
    )


async def create(runtime: GatewayRuntime, tenant: str, body: CreateDistillation) -> Distillation:
    found = await stored.select(runtime.pool, tenant, stored_filter(body.filter))
    if not found:
        raise ApiError(400, "The filter matches no stored chat completion.", param="filter", code="no_match")
    built = plan(found, body.holdout_fraction, body.seed)
    if not built.train:
        why = f"{built.rejected} rated bad without a correction, {len(built.holdout)} prompts held out"
        raise ApiError(400, f"Nothing is left to train on ({why}).", param="filter", code="too_few_examples")
    answers = {g.chosen().id: reference_answer(g.chosen()) for g in built.train}
    taught = 0
    if body.teacher is not None:
        prompts = {g.chosen().id: g.messages for g in built.train if not g.chosen().correction}
        from_teacher = await teachers.answer_all(runtime, tenant, body.teacher, prompts)
        answers.update(from_teacher)
        taught = len(from_teacher)
    lines = [{"messages": [*g.messages, {"role": "assistant", "content": answers[g.chosen().id]}]} for g in built.train]
    distillation_id = ids.new_id(ids.DISTILLATION)
    filename = body.filename or f"distilled-{distillation_id}.jsonl"
    try:
        record = await distilled_files.upload_lines(runtime, tenant, filename, lines)
    except ApiError as exc:
        if exc.status == 400 and "too few examples" in exc.message:
            message = f"{len(lines)} training examples are too few to train on: {exc.message}"
            raise ApiError(400, message, param="filter", code="too_few_examples") from None
        raise
    counts = DistillationCounts(
        matched=built.matched,
        rejected=built.rejected,
        merged=sum(len(g.members) - 1 for g in built.train + built.holdout),
        training=len(lines),
        holdout=len(built.holdout),
        corrected=sum(1 for g in built.train if g.chosen().correction),
        teacher=taught,
    )
    items = [Item(g.chosen().id, "train", i, line) for i, (g, line) in enumerate(zip(built.train, lines, strict=True))]
    items += [Item(g.chosen().id, "holdout") for g in built.holdout]
    items += [Item(r.id, "merged") for g in built.train + built.holdout for r in g.members if r is not g.chosen()]
    row = DistillationRow(
        id=distillation_id,
        tenant_id=tenant,
        file_id=record.id,
        filename=filename,
        filter=body.filter.model_dump(exclude_none=True),
        holdout_fraction=body.holdout_fraction,
        seed=body.seed,
        teacher=body.teacher.model_dump(exclude_none=True) if body.teacher else None,
        counts=counts.model_dump(),
        created_at=datetime.now(UTC),
    )
    try:
        saved = await rows.insert(runtime.pool, row, items)
    except BaseException:
        await asyncio.shield(file_rows.delete_files(runtime.pool, tenant, [record.id]))  # no orphan file
        raise
    return await distillation_object(runtime, saved)


async def distillation_object(runtime: GatewayRuntime, row: DistillationRow) -> Distillation:
    return Distillation(
        id=row.id,
        created_at=int(row.created_at.timestamp()),
        file_id=row.file_id,
        filename=row.filename,
        filter=row.filter,
        holdout_fraction=row.holdout_fraction,
        seed=row.seed,
        teacher=row.teacher,
        counts=DistillationCounts.model_validate(row.counts),
        holdout_completion_ids=await rows.holdout_ids(runtime.pool, row.id),
    )


async def owned(runtime: GatewayRuntime, tenant: str, distillation_id: str, param: str) -> DistillationRow:
    row = await rows.get(runtime.pool, tenant, distillation_id)
    if row is None:
        raise not_found("distillation", distillation_id, param)
    return row


async def get(runtime: GatewayRuntime, tenant: str, distillation_id: str) -> Distillation:
    return await distillation_object(runtime, await owned(runtime, tenant, distillation_id, "distillation_id"))


async def list_distillations(runtime: GatewayRuntime, tenant: str, after: str, limit: int) -> ListPage[Distillation]:
    """Newest first."""
    if after and await rows.get(runtime.pool, tenant, after) is None:
        raise ApiError(400, f"No distillation '{after}' to list after.", param="after", code="invalid_value")
    found = await rows.list_page(runtime.pool, tenant, after, limit + 1)
    data = [await distillation_object(runtime, r) for r in found[:limit]]
    return ListPage[Distillation].of(data, has_more=len(found) > limit)
