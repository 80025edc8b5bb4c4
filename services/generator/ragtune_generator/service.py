"""GeneratorService servicer: validates requests, admits a bounded number of them, resolves the
tenant's adapter, renders prompts with the model's own chat template (off the event loop), and
streams engine steps as protobuf."""

from __future__ import annotations

import contextlib
import logging
import math
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

from ragtune.generator.v1 import generator_pb2 as pb
from ragtune.generator.v1 import generator_pb2_grpc
from ragtune_common.errors import InvalidArgument, ResourceExhausted
from ragtune_common.logging import request_id_var
from ragtune_common.protoconv import to_timestamp
from ragtune_generator import metrics
from ragtune_generator.engine import Sampling
from ragtune_generator.registry import AdapterRow
from ragtune_generator.runtime import GeneratorRuntime

log = logging.getLogger(__name__)

ROLES = frozenset({"system", "user", "assistant"})
MAX_STOP = 8
_FINISH = {"stop": pb.FINISH_REASON_STOP, "length": pb.FINISH_REASON_LENGTH, "abort": pb.FINISH_REASON_ABORTED}


@dataclass(frozen=True)
class Admitted:
    prompt_ids: list[int]
    sampling: Sampling
    adapter: AdapterRow | None
    model: str


def _sampling(message: pb.SamplingParams, default_max_tokens: int | None) -> Sampling:
    """The request's sampling; ``max_tokens`` 0 (neither the request nor the settings give one) is
    the room the context leaves after the prompt, set once the prompt is tokenized."""
    temperature = message.temperature if message.HasField("temperature") else 1.0
    if not (math.isfinite(temperature) and 0.0 <= temperature <= 2.0):
        raise InvalidArgument("must be between 0 and 2", field="sampling.temperature")
    top_p = message.top_p if message.HasField("top_p") else 1.0
    if not (math.isfinite(top_p) and 0.0 < top_p <= 1.0):
        raise InvalidArgument("must be in (0, 1]", field="sampling.top_p")
    if message.max_tokens < 0:
        raise InvalidArgument("must be positive", field="sampling.max_tokens")
    if len(message.stop) > MAX_STOP:
        raise InvalidArgument(f"at most {MAX_STOP} stop sequences", field="sampling.stop")
    for i, stop in enumerate(message.stop):
        if not 0 < len(stop) <= 128:
            raise InvalidArgument("must be 1-128 characters", field=f"sampling.stop[{i}]")
    return Sampling(
        temperature=temperature,
        top_p=top_p,
        max_tokens=message.max_tokens or default_max_tokens or 0,
        stop=tuple(message.stop),
        seed=message.seed if message.HasField("seed") else None,
    )


def _adapter_pb(row: AdapterRow) -> pb.Adapter:
    return pb.Adapter(
        name=row.name,
        tenant=row.tenant,
        base_model=row.base_model,
        rank=row.rank,
        alpha=row.alpha,
        target_modules=row.target_modules,
        loaded_at=to_timestamp(row.created_at),
        fingerprint=row.fingerprint,
        load_error=row.load_error,
    )


class GeneratorServicer(generator_pb2_grpc.GeneratorServiceServicer):
    def __init__(self, runtime: GeneratorRuntime) -> None:
        self._runtime = runtime
        self._settings = runtime.settings
        self._inflight = 0

    def _validate(self, request: pb.GenerateRequest) -> Sampling:
        if bool(request.messages) == bool(request.prompt):
            raise InvalidArgument("give exactly one of messages or prompt", field="messages")
        for i, message in enumerate(request.messages):
            if message.role not in ROLES:
                raise InvalidArgument(f"role must be one of {sorted(ROLES)}", field=f"messages[{i}].role")
        return _sampling(request.sampling, self._settings.default_max_tokens)

    async def _prepare(self, request: pb.GenerateRequest, sampling: Sampling) -> Admitted:
        runtime = self._runtime
        adapter, model = None, runtime.model_name
        if request.adapter and request.adapter != runtime.model_name:
            adapter = await runtime.adapters.resolve(request.adapter, request.tenant)
            model = adapter.name
        field = "messages" if request.messages else "prompt"
        chars = sum(len(m.content) for m in request.messages) if request.messages else len(request.prompt)
        if runtime.prompts.fewest_tokens(chars) > self._settings.max_model_len:
            raise InvalidArgument(
                f"is {chars} characters, more than the model's context of {self._settings.max_model_len} tokens"
                " can hold",
                field=field,
            )
        if request.messages:
            prompt_ids = await runtime.prompts.chat_ids(
                [{"role": m.role, "content": m.content} for m in request.messages]
            )
        else:
            prompt_ids = await runtime.prompts.raw_ids(request.prompt)
        room = self._settings.max_model_len - len(prompt_ids)
        if room < 1:
            raise InvalidArgument(
                f"is {len(prompt_ids)} tokens; the model's context is {self._settings.max_model_len}", field=field
            )
        if sampling.max_tokens == 0 or sampling.max_tokens > room:
            if request.sampling.max_tokens:
                raise InvalidArgument(
                    f"{sampling.max_tokens} tokens do not fit after a {len(prompt_ids)}-token prompt"
                    f" (context {self._settings.max_model_len})",
                    field="sampling.max_tokens",
                )
            sampling = Sampling(sampling.temperature, sampling.top_p, room, sampling.stop, sampling.seed)
        return Admitted(prompt_ids, sampling, adapter, model)

    async def _run(self, request: pb.GenerateRequest) -> AsyncIterator[pb.GenerateResponse]:
        sampling = self._validate(request)
        if self._inflight >= self._settings.max_inflight:
            raise ResourceExhausted(f"{self._inflight} requests in flight; retry later")
        request_id = f"{request.request_id or request_id_var.get()}-{uuid.uuid4().hex[:8]}"
        self._inflight += 1
        metrics.IN_FLIGHT.inc()
        held: int | None = None
        try:
            admitted = await self._prepare(request, sampling)
            if admitted.adapter is not None:
                await self._runtime.adapters.acquire(admitted.adapter)
                held = admitted.adapter.id
            metrics.PROMPT_TOKENS.inc(len(admitted.prompt_ids))
            async with contextlib.aclosing(self._stream(request_id, admitted)) as stream:
                async for response in stream:  # closed at once on cancellation: the engine aborts
                    yield response
        finally:
            if held is not None:
                self._runtime.adapters.residency.release(held)
            self._inflight -= 1
            metrics.IN_FLIGHT.dec()

    async def _stream(self, request_id: str, admitted: Admitted) -> AsyncGenerator[pb.GenerateResponse, None]:
        parts: list[str] = []
        tokens = 0
        lora_id = admitted.adapter.id if admitted.adapter else None
        steps = self._runtime.engine.generate(request_id, admitted.prompt_ids, admitted.sampling, lora_id)
        async with contextlib.aclosing(steps):
            async for step in steps:
                tokens += step.new_tokens
                metrics.TOKEN_RATE.add(step.new_tokens)
                if step.delta:
                    parts.append(step.delta)
                    yield pb.GenerateResponse(delta=step.delta)
                if step.finished:
                    usage = pb.Usage(
                        prompt_tokens=len(admitted.prompt_ids),
                        completion_tokens=tokens,
                        total_tokens=len(admitted.prompt_ids) + tokens,
                    )
                    final = pb.Completion(
                        text="".join(parts),
                        finish_reason=_FINISH.get(step.finish_reason or "", pb.FINISH_REASON_UNSPECIFIED),
                        stop_sequence=step.stop_reason or "",
                        usage=usage,
                        model=admitted.model,
                    )
                    yield pb.GenerateResponse(final=final)

    async def Generate(self, request: pb.GenerateRequest, context: Any) -> AsyncIterator[pb.GenerateResponse]:
        async for response in self._run(request):
            yield response

    async def GenerateUnary(self, request: pb.GenerateRequest, context: Any) -> pb.Completion:
        final = pb.Completion()
        async for response in self._run(request):
            if response.HasField("final"):
                final = response.final
        return final

    async def LoadAdapter(self, request: pb.LoadAdapterRequest, context: Any) -> pb.LoadAdapterResponse:
        row, new = await self._runtime.adapters.publish(request.name, request.path, request.tenant)
        return pb.LoadAdapterResponse(adapter=_adapter_pb(row), newly_loaded=new)

    async def UnloadAdapter(self, request: pb.UnloadAdapterRequest, context: Any) -> pb.UnloadAdapterResponse:
        await self._runtime.adapters.unload(request.name, request.tenant)
        return pb.UnloadAdapterResponse()

    async def ListAdapters(self, request: pb.ListAdaptersRequest, context: Any) -> pb.ListAdaptersResponse:
        return pb.ListAdaptersResponse(
            adapters=[_adapter_pb(r) for r in await self._runtime.adapters.list(request.tenant)]
        )

    async def ListModels(self, request: pb.ListModelsRequest, context: Any) -> pb.ListModelsResponse:
        runtime = self._runtime
        models = [pb.Model(id=runtime.model_name, max_model_len=self._settings.max_model_len)]
        for row in await runtime.adapters.list(request.tenant):
            models.append(
                pb.Model(
                    id=row.name,
                    base_model=row.base_model,
                    is_adapter=True,
                    rank=row.rank,
                    loaded_at=to_timestamp(row.created_at),
                    tenant=row.tenant,
                    max_model_len=self._settings.max_model_len,
                    load_error=row.load_error,
                )
            )
        return pb.ListModelsResponse(models=models)
