"""What the generator needs at run time: the base model directory, the engine, the adapters."""

from __future__ import annotations

import asyncio
import logging

from ragtune_common.errors import Unavailable
from ragtune_common.models import resolve_base_model
from ragtune_generator.adapters import AdapterRegistry, BaseModelInfo
from ragtune_generator.engine import Engine, EngineDead, Sampling
from ragtune_generator.prompts import PromptRenderer
from ragtune_generator.settings import GeneratorSettings

log = logging.getLogger(__name__)


WATCH_INTERVAL_S = 1.0


class GeneratorRuntime:
    def __init__(self, settings: GeneratorSettings) -> None:
        self.settings = settings
        self.fatal = asyncio.Event()  # set when the engine died: the server stops and the process exits 1
        self._watchdog: asyncio.Task[None] | None = None
        self._engine: Engine | None = None
        self._adapters: AdapterRegistry | None = None
        self._prompts: PromptRenderer | None = None
        self.model_name = settings.served_model_name or settings.base_model.rstrip("/").rsplit("/", 1)[-1]

    def _ready(self) -> tuple[Engine, AdapterRegistry, PromptRenderer]:
        if self._engine is None or self._adapters is None or self._prompts is None:
            raise Unavailable("the generator is starting")
        if self._engine.dead:
            raise EngineDead()
        return self._engine, self._adapters, self._prompts

    @property
    def engine(self) -> Engine:
        return self._ready()[0]

    @property
    def adapters(self) -> AdapterRegistry:
        return self._ready()[1]

    @property
    def prompts(self) -> PromptRenderer:
        return self._ready()[2]

    async def start(self) -> None:
        """Convert/locate the base model, start and warm the engine, restore adapters."""
        settings = self.settings
        model_path = await asyncio.to_thread(resolve_base_model, settings.base_model, settings.state_dir)
        prompts = await asyncio.to_thread(PromptRenderer, model_path)
        engine = Engine(settings, model_path)
        await engine.start()
        warm = Sampling(temperature=0.0, top_p=1.0, max_tokens=1, stop=(), seed=None)
        async for _ in engine.generate("warmup", prompts.raw("Hello"), warm):
            pass
        adapters = AdapterRegistry(
            settings.state_dir, BaseModelInfo.from_dir(self.model_name, model_path), settings.max_lora_rank
        )
        await adapters.restore(engine)
        self._engine, self._adapters, self._prompts = engine, adapters, prompts
        self._watchdog = asyncio.create_task(self._watch(engine), name="generator-engine-watchdog")

    async def _watch(self, engine: Engine) -> None:
        """A dead engine core never comes back: report it, so the server stops serving and exits
        (a supervisor, compose or Kubernetes, starts a fresh generator)."""
        while not engine.dead:  # noqa: ASYNC110  (a flag set by a vLLM thread: nothing to await)
            await asyncio.sleep(WATCH_INTERVAL_S)
        log.error("the vLLM engine core has died: stopping the generator so that it is restarted")
        self.fatal.set()

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None
