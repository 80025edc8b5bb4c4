"""In-process wake-ups for WatchJob streams; the events themselves are always read from the database."""

from __future__ import annotations

import asyncio
import contextlib


class JobSignals:
    """Wakes WatchJob streams when any job's events change (they re-read from the database)."""

    def __init__(self) -> None:
        self._changed = asyncio.Condition()

    async def notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait(self, timeout_s: float) -> None:
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout_s)
