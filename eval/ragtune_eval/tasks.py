"""Many REST calls of the evaluation at once, failing as one: the first error raised as itself."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


def first_error(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


async def run_each(items: Iterable[T], work: Callable[[T], Coroutine[Any, Any, None]]) -> None:
    """``work(item)`` for every item, all at once (callers bound them with their own semaphore); if
    any fails, the others are cancelled and the first failure is raised as itself, not as a group
    (what the finished ones wrote is kept)."""
    try:
        async with asyncio.TaskGroup() as group:
            for item in items:
                group.create_task(work(item))
    except ExceptionGroup as failed:
        raise first_error(failed) from None
