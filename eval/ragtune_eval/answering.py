"""Asking an arm its items: every (split, item) not yet answered under a results name is asked,
bounded by the caller's semaphore, and its row kept as soon as it comes, so a rerun asks only what
is missing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from ragtune_eval.indexing import Progress
from ragtune_eval.rundir import RunStore
from ragtune_eval.tasks import run_each


class HasId(Protocol):
    @property
    def id(self) -> str: ...


T = TypeVar("T", bound=HasId)


async def answer_missing(
    run: RunStore,
    results: str,
    wanted: list[tuple[str, T]],
    answer: Callable[[str, T], Awaitable[dict[str, Any]]],
    limit: asyncio.Semaphore,
    progress: Progress,
) -> None:
    """``answer(split, item)`` for each of ``wanted`` missing from ``results``, its row appended."""
    done = await run.done(results)
    todo = [(split, item) for split, item in wanted if (split, item.id) not in done]
    key = f"answer-{results}"
    progress.start(key, f"asking {results}", len(wanted))
    progress.update(key, len(wanted) - len(todo))
    finished = len(wanted) - len(todo)

    async def one(pair: tuple[str, T]) -> None:
        nonlocal finished
        async with limit:
            row = await answer(*pair)
        await run.append_result(results, row)
        finished += 1
        progress.update(key, finished)

    await run_each(todo, one)
