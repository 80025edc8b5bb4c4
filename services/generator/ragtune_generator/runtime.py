"""What the generator needs at run time: the base model directory, the engine, the adapter
registry (PostgreSQL pool, listener, the shared adapter store) and the prompt renderer."""

from __future__ import annotations

import asyncio
import logging

from psycopg_pool import AsyncConnectionPool

from ragtune_common.database import apply_migrations, open_pool, resolve_database_url, wait_for_database
from ragtune_common.errors import Unavailable
from ragtune_common.models import resolve_base_model
from ragtune_generator import metrics
from ragtune_generator.adapter_files import BaseModelInfo
from ragtune_generator.adapters import AdapterCatalog
from ragtune_generator.engine import Engine, EngineDead, Sampling
from ragtune_generator.listener import RegistryListener
from ragtune_generator.prompts import PromptRenderer
from ragtune_generator.registry import CHANNEL, SCHEMA, RegistryStore
from ragtune_generator.settings import GeneratorSettings

log = logging.getLogger(__name__)


WATCH_INTERVAL_S = 1.0


class GeneratorRuntime:
    def __init__(self, settings: GeneratorSettings) -> None:
        self.settings = settings
        self.fatal = asyncio.Event()  # set when the engine died: the server stops and the process exits 1
        self._tasks: list[asyncio.Task[None]] = []
        self._engine: Engine | None = None
        self._adapters: AdapterCatalog | None = None
        self._prompts: PromptRenderer | None = None
        self._pool: AsyncConnectionPool | None = None
        self.listener: RegistryListener | None = None
        self.model_name = settings.served_model_name or settings.base_model.rstrip("/").rsplit("/", 1)[-1]

    def _ready(self) -> tuple[Engine, AdapterCatalog, PromptRenderer]:
        if self._engine is None or self._adapters is None or self._prompts is None:
            raise Unavailable("the generator is starting")
        if self._engine.dead:
            raise EngineDead()
        return self._engine, self._adapters, self._prompts

    @property
    def engine(self) -> Engine:
        return self._ready()[0]

    @property
    def adapters(self) -> AdapterCatalog:
        return self._ready()[1]

    @property
    def prompts(self) -> PromptRenderer:
        return self._ready()[2]

    async def start(self) -> None:
        """Migrate the registry, convert/locate the base model, start and warm the engine, check the
        registered adapters' files, and follow the registry."""
        settings = self.settings
        url = resolve_database_url(settings, settings.state_dir)
        await wait_for_database(url, timeout_s=60)
        await apply_migrations(url, SCHEMA, "ragtune_generator.migrations")
        self._pool = await open_pool(url, settings)
        model_path = await asyncio.to_thread(resolve_base_model, settings.base_model, settings.state_dir)
        prompts = await asyncio.to_thread(PromptRenderer, model_path)
        engine = Engine(settings, model_path)
        self._engine = engine
        await engine.start()
        warm = Sampling(temperature=0.0, top_p=1.0, max_tokens=1, stop=(), seed=None)
        async for _ in engine.generate("warmup", prompts.raw("Hello"), warm):
            pass
        adapters = AdapterCatalog(
            RegistryStore(self._pool),
            engine,
            BaseModelInfo.from_dir(self.model_name, model_path),
            settings.adapter_store,
            settings.allowed_adapter_roots,
            settings.max_lora_rank,
            capacity=max(settings.max_cpu_loras, settings.max_loras),
        )
        await adapters.import_legacy(settings.state_dir)
        await adapters.check_all()
        await adapters.resync()
        self.listener = RegistryListener(url, CHANNEL, adapters.resync, adapters.changed)
        self.listener.start()
        metrics.LOADED_ADAPTERS.set_function(lambda: len(adapters.residency.loaded))
        metrics.REGISTERED_ADAPTERS.set_function(lambda: len(adapters.rows))
        self._adapters, self._prompts = adapters, prompts
        self._tasks = [
            asyncio.create_task(self._watch(engine), name="generator-engine-watchdog"),
            asyncio.create_task(
                adapters.retry_failed(settings.adapter_retry_interval_s), name="generator-adapter-retries"
            ),
        ]

    async def _watch(self, engine: Engine) -> None:
        """A dead engine core never comes back: report it, so the server stops serving and exits
        (a supervisor, compose or Kubernetes, starts a fresh generator)."""
        while not engine.dead:  # noqa: ASYNC110  (a flag set by a vLLM thread: nothing to await)
            await asyncio.sleep(WATCH_INTERVAL_S)
        log.error("the vLLM engine core has died: stopping the generator so that it is restarted")
        self.fatal.set()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.listener is not None:
            await self.listener.close()
            self.listener = None
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None
        if self._prompts is not None:
            self._prompts.close()
            self._prompts = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
