"""Which registry adapters are loaded in this replica's vLLM engine.

vLLM keeps LoRA weights in an LRU cache of ``max_cpu_loras`` entries (``LRUCacheWorkerLoRAManager``)
and, for a request whose adapter is not in it, loads the files *inside the engine step*, where a
failure kills the engine core. So adapters are loaded here first, through ``add_lora`` (whose errors
come back to the caller), and this replica evicts the least recently used idle adapter itself before
the engine would: vLLM then never has to load from disk on its own, and never drops an adapter that
a running request uses. When every slot is busy with running requests, a new adapter waits for
RESOURCE_EXHAUSTED's retry rather than evicting one in use.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict
from collections.abc import Coroutine
from typing import Any, Protocol

from ragtune_common.errors import ResourceExhausted

log = logging.getLogger(__name__)


class LoraEngine(Protocol):
    async def add_lora(self, name: str, lora_id: int, path: str) -> None: ...
    async def remove_lora(self, lora_id: int) -> None: ...


class AdapterResidency:
    def __init__(self, engine: LoraEngine, capacity: int) -> None:
        self._engine = engine
        self._capacity = capacity
        self._loaded: OrderedDict[int, str] = OrderedDict()  # lora id -> name, least recently used first
        self._inflight: Counter[int] = Counter()
        self._retired: set[int] = set()
        self._lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()

    @property
    def loaded(self) -> list[int]:
        return list(self._loaded)

    async def acquire(self, lora_id: int, name: str, path: str) -> None:
        """Make sure the adapter is in the engine and hold it there until :meth:`release`.
        Errors of the engine's ``add_lora`` propagate (the adapter is then not held)."""
        async with self._lock:
            if lora_id in self._loaded:
                self._loaded.move_to_end(lora_id)
            else:
                while len(self._loaded) >= self._capacity:
                    idle = next((i for i in self._loaded if not self._inflight[i]), None)
                    if idle is None:
                        raise ResourceExhausted(f"all {self._capacity} adapter slots are serving requests; retry later")
                    await self._remove(idle)
                await self._engine.add_lora(name, lora_id, path)
                self._loaded[lora_id] = name
                log.info("adapter %s (id %d) loaded into the engine", name, lora_id)
            self._inflight[lora_id] += 1

    def release(self, lora_id: int) -> None:
        self._inflight[lora_id] -= 1
        if self._inflight[lora_id] <= 0:
            del self._inflight[lora_id]
            if lora_id in self._retired:
                self._spawn(self.retire(lora_id))

    async def retire(self, lora_id: int) -> None:
        """The adapter left the registry: drop it from the engine once no request uses it."""
        async with self._lock:
            if self._inflight[lora_id]:
                self._retired.add(lora_id)
                return
            self._retired.discard(lora_id)
            if lora_id in self._loaded:
                await self._remove(lora_id)

    async def _remove(self, lora_id: int) -> None:
        name = self._loaded.pop(lora_id)
        await self._engine.remove_lora(lora_id)
        log.info("adapter %s (id %d) evicted from the engine", name, lora_id)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
