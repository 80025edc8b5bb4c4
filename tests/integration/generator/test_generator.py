"""The generator over a real gRPC channel, on the real vLLM engine and the real base model."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ragtune.generator.v1 import generator_pb2 as pb
from ragtune.generator.v1 import generator_pb2_grpc
from ragtune_common.server import run_until_signal
from ragtune_generator.main import create_server
from ragtune_generator.runtime import GeneratorRuntime
from tests.fixtures.generator import write_fake_adapter
from tests.fixtures.security import direct_channel

GREEDY = pb.SamplingParams(temperature=0, max_tokens=40)
LONG = pb.SamplingParams(temperature=0, max_tokens=900)
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,"


def chat(content: str, sampling: pb.SamplingParams = GREEDY, adapter: str = "", tenant: str = "") -> pb.GenerateRequest:
    return pb.GenerateRequest(
        messages=[pb.ChatMessage(role="user", content=content)], sampling=sampling, adapter=adapter, tenant=tenant
    )


async def collect(stub, request: pb.GenerateRequest) -> tuple[list[str], pb.Completion]:
    deltas, final = [], None
    async for response in stub.Generate(request):
        if response.HasField("final"):
            final = response.final
        else:
            deltas.append(response.delta)
    assert final is not None, "the stream ended without a final message"
    return deltas, final


async def expect(call, code: grpc.StatusCode, fragment: str = "") -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == code, err.value.details()
    assert fragment in err.value.details()


async def wait_idle(runtime: GeneratorRuntime, seconds: float = 10.0) -> None:
    for _ in range(int(seconds * 10)):
        if runtime.engine.unfinished_requests() == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{runtime.engine.unfinished_requests()} generations still running in the engine")


async def test_answers_a_context_question_and_streams(generator_stub):
    question = "Context: The capital of the island of Varnholm is Tessaly.\nQuestion: What is the capital of Varnholm?"
    deltas, final = await collect(generator_stub, chat(question))
    assert "Tessaly" in final.text
    assert len(deltas) > 1 and "".join(deltas) == final.text
    assert final.finish_reason == pb.FINISH_REASON_STOP and final.model == "SmolLM2-135M-Instruct"
    assert final.usage.prompt_tokens > 20 and 0 < final.usage.completion_tokens <= 40
    assert final.usage.total_tokens == final.usage.prompt_tokens + final.usage.completion_tokens
    unary = await generator_stub.GenerateUnary(chat(question))
    assert unary.text == final.text, "temperature 0 is not deterministic"


async def test_seeded_sampling_is_reproducible(generator_stub):
    sampling = pb.SamplingParams(temperature=1.0, top_p=0.9, max_tokens=30, seed=1234)
    first = await generator_stub.GenerateUnary(chat("Write a short poem about rain.", sampling))
    second = await generator_stub.GenerateUnary(chat("Write a short poem about rain.", sampling))
    assert first.text == second.text and first.text


async def test_stop_sequences_and_max_tokens(generator_stub):
    stopped = await generator_stub.GenerateUnary(
        pb.GenerateRequest(prompt=COUNTING, sampling=pb.SamplingParams(temperature=0, max_tokens=60, stop=["16"]))
    )
    assert stopped.finish_reason == pb.FINISH_REASON_STOP and stopped.stop_sequence == "16"
    assert "16" not in stopped.text and "15" in stopped.text
    capped = await generator_stub.GenerateUnary(
        pb.GenerateRequest(prompt=COUNTING, sampling=pb.SamplingParams(temperature=0, max_tokens=5))
    )
    assert capped.finish_reason == pb.FINISH_REASON_LENGTH and capped.usage.completion_tokens == 5


async def test_without_max_tokens_it_generates_past_256_tokens(generator_stub):
    """No max_tokens: the answer runs to its end (here a stop sequence), bounded only by the
    context, as OpenAI and vLLM's server; the generator no longer cuts it at 256 tokens."""
    counted = await generator_stub.GenerateUnary(
        pb.GenerateRequest(prompt=COUNTING, sampling=pb.SamplingParams(temperature=0, stop=[" 130,"]))
    )
    assert counted.finish_reason == pb.FINISH_REASON_STOP, counted.text[-200:]
    assert counted.usage.completion_tokens > 256 and "129," in counted.text


@pytest.mark.parametrize(
    ("request_kwargs", "field"),
    [
        ({"prompt": "hi", "sampling": {"temperature": 3.0}}, "sampling.temperature"),
        ({"prompt": "hi", "sampling": {"top_p": 0.0}}, "sampling.top_p"),
        ({"prompt": "hi", "sampling": {"max_tokens": -2}}, "sampling.max_tokens"),
        ({"prompt": "hi", "sampling": {"max_tokens": 5000}}, "sampling.max_tokens"),
        ({"prompt": "hi", "sampling": {"stop": [""]}}, "sampling.stop[0]"),
        ({"prompt": "hi", "messages": [{"role": "user", "content": "x"}]}, "messages"),
        ({}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"prompt": "word " * 1200}, "prompt"),
    ],
)
async def test_invalid_requests(generator_stub, request_kwargs, field):
    await expect(
        generator_stub.GenerateUnary(pb.GenerateRequest(**request_kwargs)), grpc.StatusCode.INVALID_ARGUMENT, field
    )


async def test_unknown_adapter(generator_stub):
    await expect(generator_stub.GenerateUnary(chat("hi", adapter="nope")), grpc.StatusCode.NOT_FOUND, "nope")


async def test_adapter_lifecycle(generator_stub, make_adapter):
    question = "Name three primary colors."
    base = await generator_stub.GenerateUnary(chat(question))
    path = make_adapter(seed=1)
    loaded = await generator_stub.LoadAdapter(
        pb.LoadAdapterRequest(name="ft:test:colors:v1", path=str(path), tenant="t1")
    )
    assert (
        loaded.newly_loaded and loaded.adapter.rank == 8 and list(loaded.adapter.target_modules) == ["q_proj", "v_proj"]
    )
    tuned = await generator_stub.GenerateUnary(chat(question, adapter="ft:test:colors:v1", tenant="t1"))
    assert tuned.model == "ft:test:colors:v1" and tuned.text != base.text, "the adapter did not change the output"
    # the generator checks ownership itself: another tenant (or none) does not see the adapter
    await expect(
        generator_stub.GenerateUnary(chat(question, adapter="ft:test:colors:v1", tenant="t2")),
        grpc.StatusCode.NOT_FOUND,
        "ft:test:colors:v1",
    )
    await expect(generator_stub.GenerateUnary(chat(question, adapter="ft:test:colors:v1")), grpc.StatusCode.NOT_FOUND)
    again = await generator_stub.LoadAdapter(
        pb.LoadAdapterRequest(name="ft:test:colors:v1", path=str(path), tenant="t1")
    )
    assert not again.newly_loaded, "loading the same adapter twice must be a no-op"
    for other in (
        pb.LoadAdapterRequest(name="ft:test:colors:v1", path=str(make_adapter(seed=2)), tenant="t1"),
        pb.LoadAdapterRequest(name="ft:test:colors:v1", path=str(path), tenant="t2"),
    ):
        await expect(generator_stub.LoadAdapter(other), grpc.StatusCode.ALREADY_EXISTS, "new name")
    listed = await generator_stub.ListAdapters(pb.ListAdaptersRequest(tenant="t1"))
    assert [a.name for a in listed.adapters] == ["ft:test:colors:v1"]
    models = await generator_stub.ListModels(pb.ListModelsRequest(tenant="t1"))
    assert [(m.id, m.is_adapter) for m in models.models] == [
        ("SmolLM2-135M-Instruct", False),
        ("ft:test:colors:v1", True),
    ]
    assert models.models[1].base_model == "SmolLM2-135M-Instruct" and models.models[1].loaded_at.seconds > 0
    await expect(
        generator_stub.UnloadAdapter(pb.UnloadAdapterRequest(name="ft:test:colors:v1", tenant="t2")),
        grpc.StatusCode.NOT_FOUND,
    )
    await generator_stub.UnloadAdapter(pb.UnloadAdapterRequest(name="ft:test:colors:v1", tenant="t1"))
    await expect(
        generator_stub.GenerateUnary(chat(question, adapter="ft:test:colors:v1", tenant="t1")),
        grpc.StatusCode.NOT_FOUND,
    )
    await expect(
        generator_stub.UnloadAdapter(pb.UnloadAdapterRequest(name="ft:test:colors:v1", tenant="t1")),
        grpc.StatusCode.NOT_FOUND,
    )


def _lora_config(**overrides):
    config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"], "modules_to_save": None}
    return {**config, **overrides}


def _q_proj(rank: int = 4, in_features: int = 576, out_features: int = 576) -> dict:
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    return {
        f"{prefix}.lora_A.weight": [[0.0] * in_features] * rank,
        f"{prefix}.lora_B.weight": [[0.0] * rank] * out_features,
    }


@pytest.mark.parametrize(
    ("config", "tensors", "code", "fragment"),
    [
        (None, _q_proj(), grpc.StatusCode.INVALID_ARGUMENT, "adapter_config.json"),
        (_lora_config(r=128), _q_proj(128), grpc.StatusCode.FAILED_PRECONDITION, "max_lora_rank"),
        (_lora_config(target_modules=["embed_tokens"]), _q_proj(), grpc.StatusCode.INVALID_ARGUMENT, "embed_tokens"),
        (_lora_config(modules_to_save=["lm_head"]), _q_proj(), grpc.StatusCode.INVALID_ARGUMENT, "modules_to_save"),
        (_lora_config(), _q_proj(in_features=64), grpc.StatusCode.FAILED_PRECONDITION, "input features"),
        (_lora_config(peft_type="IA3"), _q_proj(), grpc.StatusCode.INVALID_ARGUMENT, "LORA"),
    ],
)
async def test_adapter_validation(generator_stub, tmp_path, config, tensors, code, fragment):
    path = write_fake_adapter(tmp_path / "adapter", config or {}, tensors)
    if config is None:
        (path / "adapter_config.json").unlink()
    await expect(generator_stub.LoadAdapter(pb.LoadAdapterRequest(name="bad", path=str(path))), code, fragment)
    assert "bad" not in [a.name for a in (await generator_stub.ListAdapters(pb.ListAdaptersRequest())).adapters]


async def test_missing_path(generator_stub, tmp_path):
    request = pb.LoadAdapterRequest(name="gone", path=str(tmp_path / "nowhere"))
    await expect(generator_stub.LoadAdapter(request), grpc.StatusCode.INVALID_ARGUMENT, "path")


async def test_cancellation_and_deadline_abort_the_engine_request(generator_stub, generator_runtime):
    call = generator_stub.Generate(pb.GenerateRequest(prompt=COUNTING, sampling=LONG))
    received = 0
    async for _ in call:
        received += 1
        if received == 3:
            break
    assert generator_runtime.engine.unfinished_requests() == 1
    call.cancel()
    await wait_idle(generator_runtime)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await generator_stub.GenerateUnary(pb.GenerateRequest(prompt=COUNTING, sampling=LONG), timeout=1.0)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await wait_idle(generator_runtime)


async def test_back_pressure(generator_stub, generator_runtime, generator_settings):
    calls = [generator_stub.Generate(pb.GenerateRequest(prompt=COUNTING, sampling=LONG)) for _ in range(3)]
    for call in calls:  # all admitted and generating
        await call.read()
    await expect(generator_stub.GenerateUnary(pb.GenerateRequest(prompt="hi")), grpc.StatusCode.RESOURCE_EXHAUSTED)
    for call in calls:
        call.cancel()
    await wait_idle(generator_runtime)
    assert generator_settings.max_inflight == 3
    answer = await generator_stub.GenerateUnary(
        pb.GenerateRequest(prompt="hi", sampling=pb.SamplingParams(max_tokens=2))
    )
    assert answer.usage.completion_tokens >= 1, "back-pressure did not release"


async def test_restart_restores_adapters_and_a_dead_engine_stops_the_server(
    generator_stub, generator_settings, make_adapter
):
    path = make_adapter(seed=3, rank=4, targets=("q_proj", "k_proj", "v_proj", "o_proj"))
    await generator_stub.LoadAdapter(pb.LoadAdapterRequest(name="ft:test:restart:v1", path=str(path)))
    before = await generator_stub.GenerateUnary(chat("Say hello.", adapter="ft:test:restart:v1"))

    # a second generator on the same state directory, served as `ragtune-generator` serves it
    children = {p.pid for p in psutil.Process().children()}
    runtime = GeneratorRuntime(generator_settings)
    bound = await create_server(generator_settings, runtime)
    serving = asyncio.ensure_future(
        run_until_signal(bound, generator_settings, ready=runtime.start, close=runtime.close, fatal=runtime.fatal)
    )
    try:
        async with direct_channel(bound.port, bound.service_names[0]) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            check = health_pb2.HealthCheckRequest()
            status = (await health.Check(check, timeout=5, wait_for_ready=True)).status
            assert status == health_pb2.HealthCheckResponse.NOT_SERVING, "serving before the engine is up"
            for _ in range(600):
                if (await health.Check(check, timeout=5)).status == health_pb2.HealthCheckResponse.SERVING:
                    break
                await asyncio.sleep(0.5)
            stub = generator_pb2_grpc.GeneratorServiceStub(channel)
            names = [a.name for a in (await stub.ListAdapters(pb.ListAdaptersRequest())).adapters]
            assert "ft:test:restart:v1" in names
            after = await stub.GenerateUnary(chat("Say hello.", adapter="ft:test:restart:v1"))
            assert after.text == before.text

            # its vLLM engine core dies: requests get UNAVAILABLE (retryable), never INTERNAL, and
            # the server stops with exit status 1 so that its supervisor starts a fresh one
            engine_cores = [p for p in psutil.Process().children() if p.pid not in children]
            assert engine_cores, "the second engine's core process was not found"
            for process in engine_cores:
                process.kill()
            await expect(stub.GenerateUnary(chat("Say hello."), timeout=30), grpc.StatusCode.UNAVAILABLE)
            assert await asyncio.wait_for(serving, 60) == 1
    finally:
        if not serving.done():
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving
    await generator_stub.UnloadAdapter(pb.UnloadAdapterRequest(name="ft:test:restart:v1"))
