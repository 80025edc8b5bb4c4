"""Two generator replicas on one PostgreSQL registry and one adapter store, each a real vLLM
engine behind a real gRPC port: an adapter published once answers on both, changes reach the
other replica by LISTEN/NOTIFY (also after its listener's connection is killed), broken stored
files keep the adapter registered as failed and are retried, and the old per-replica registry
file is imported."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import psycopg
import pytest
import pytest_asyncio

from ragtune.generator.v1 import generator_pb2 as pb
from ragtune.generator.v1 import generator_pb2_grpc
from ragtune_generator.adapter_files import fingerprint
from ragtune_generator.listener import APPLICATION_NAME
from ragtune_generator.main import create_server
from ragtune_generator.runtime import GeneratorRuntime
from ragtune_generator.settings import GeneratorSettings
from tests.fixtures.security import direct_channel
from tests.integration.generator.test_generator import chat, expect

QUESTION = "Name three primary colors."
TENANT = "replicas"


class Replica:
    """A generator replica served as ``ragtune-generator`` serves it; restartable."""

    def __init__(self, settings: GeneratorSettings) -> None:
        self.settings = settings
        self._stack: contextlib.AsyncExitStack | None = None
        self.runtime: GeneratorRuntime
        self.stub: generator_pb2_grpc.GeneratorServiceStub

    async def start(self) -> None:
        stack = contextlib.AsyncExitStack()
        self.runtime = GeneratorRuntime(self.settings)
        stack.push_async_callback(self.runtime.close)
        bound = await create_server(self.settings, self.runtime)
        await bound.server.start()
        stack.push_async_callback(bound.stop, 1)
        self._stack = stack
        await self.runtime.start()
        await bound.set_serving()
        channel = await stack.enter_async_context(direct_channel(bound.port, bound.service_names[0]))
        self.stub = generator_pb2_grpc.GeneratorServiceStub(channel)

    async def stop(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None


@pytest_asyncio.fixture(scope="module")
async def replica_b(generator_settings: GeneratorSettings, generator_server) -> AsyncIterator[Replica]:
    """The second replica (the session's generator is the first), with fast retries of failed adapters."""
    replica = Replica(generator_settings.model_copy(update={"adapter_retry_interval_s": 0.5}))
    await replica.start()
    yield replica
    await replica.stop()


async def eventually(predicate, seconds: float = 10.0) -> None:
    for _ in range(int(seconds * 20)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the condition did not become true in time")


async def publish(stub, name: str, path: Path, tenant: str = TENANT) -> pb.LoadAdapterResponse:
    return await stub.LoadAdapter(pb.LoadAdapterRequest(name=name, path=str(path), tenant=tenant))


async def test_an_adapter_published_once_answers_on_both_replicas(
    generator_stub, generator_runtime, replica_b, make_adapter
):
    name = "ft:test:replicas:v1"
    base_a = await generator_stub.GenerateUnary(chat(QUESTION))
    base_b = await replica_b.stub.GenerateUnary(chat(QUESTION))
    assert base_a.text == base_b.text
    source = make_adapter(seed=11)
    published = await publish(generator_stub, name, source)
    assert published.newly_loaded and published.adapter.load_error == ""
    # replica B learns of it by notification, not by being asked
    await eventually(lambda: name in replica_b.runtime.adapters.rows)
    on_a = await generator_stub.GenerateUnary(chat(QUESTION, adapter=name, tenant=TENANT))
    on_b = await replica_b.stub.GenerateUnary(chat(QUESTION, adapter=name, tenant=TENANT))
    assert on_b.model == name and on_b.text != base_b.text, "the adapter did not change replica B's output"
    assert on_a.text == on_b.text, "the same adapter answers differently on the two replicas"
    ids = {replica_b.runtime.adapters.rows[name].id}
    assert ids <= set(replica_b.runtime.adapters.residency.loaded), "B did not load it on first use"
    # publishing again on B is a no-op: one registry row, one id
    again = await publish(replica_b.stub, name, source)
    assert not again.newly_loaded and again.adapter.fingerprint == published.adapter.fingerprint
    for stub in (generator_stub, replica_b.stub):
        listed = await stub.ListAdapters(pb.ListAdaptersRequest(tenant=TENANT))
        assert [a.name for a in listed.adapters] == [name]
        await expect(stub.GenerateUnary(chat(QUESTION, adapter=name, tenant="intruder")), grpc.StatusCode.NOT_FOUND)

    # unloading on B removes it from A too (A hears of it), and from the store
    stored = replica_b.runtime.adapters.path(replica_b.runtime.adapters.rows[name])
    await replica_b.stub.UnloadAdapter(pb.UnloadAdapterRequest(name=name, tenant=TENANT))
    await eventually(lambda: name not in generator_runtime.adapters.rows)
    assert ids.isdisjoint(generator_runtime.adapters.residency.loaded), "A kept the unloaded adapter in its engine"
    await expect(generator_stub.GenerateUnary(chat(QUESTION, adapter=name, tenant=TENANT)), grpc.StatusCode.NOT_FOUND)
    assert not stored.exists()


async def test_the_listener_reconnects_after_its_connection_dies(generator_stub, replica_b, make_adapter, database_url):
    listener = replica_b.runtime.listener
    assert listener is not None
    before = listener.connections
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (APPLICATION_NAME,)
        )
    await eventually(lambda: listener.connections > before and listener.connected.is_set())
    name = "ft:test:replicas:after-reconnect"
    await publish(generator_stub, name, make_adapter(seed=12))
    await eventually(lambda: name in replica_b.runtime.adapters.rows)
    await generator_stub.UnloadAdapter(pb.UnloadAdapterRequest(name=name, tenant=TENANT))
    await eventually(lambda: name not in replica_b.runtime.adapters.rows)


async def test_broken_files_stay_registered_as_failed_and_are_retried(
    generator_stub, generator_runtime, replica_b, make_adapter, generator_settings, tmp_path
):
    name = "ft:test:replicas:broken"
    source = make_adapter(seed=13)
    await publish(generator_stub, name, source)
    stored = generator_settings.adapter_store / generator_runtime.adapters.rows[name].directory
    weights = stored / "adapter_model.safetensors"
    healthy = weights.read_bytes()
    weights.write_bytes(healthy[: len(healthy) // 2])  # a disk that lost half the file

    # an adapter from the registry file of earlier versions is imported by the restarted replica
    legacy_name = "ft:test:replicas:legacy"
    legacy_files = tmp_path / "legacy-snapshot"
    shutil.copytree(make_adapter(seed=14), legacy_files)
    legacy = generator_settings.state_dir / "generator" / "adapters.json"
    legacy.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "name": legacy_name,
        "tenant": TENANT,
        "lora_id": 1,
        "path": str(legacy_files),
        "base_model": "SmolLM2-135M-Instruct",
        "rank": 8,
        "alpha": 16.0,
        "target_modules": ["q_proj", "v_proj"],
        "loaded_at": "2026-01-01T00:00:00+00:00",
        "fingerprint": fingerprint(legacy_files),
    }
    legacy.write_text(json.dumps({"next_id": 2, "adapters": [record]}))

    await replica_b.stop()
    await replica_b.start()  # a restart: it checks every registered adapter's files
    try:
        listed = {
            a.name: a for a in (await replica_b.stub.ListAdapters(pb.ListAdaptersRequest(tenant=TENANT))).adapters
        }
        assert name in listed and listed[name].load_error, "a broken adapter must stay listed, marked failed"
        assert (
            legacy_name in listed
            and listed[legacy_name].load_error == ""
            and not legacy.exists()
            and legacy.with_name("adapters.json.imported").exists()
        )
        await expect(
            replica_b.stub.GenerateUnary(chat(QUESTION, adapter=name, tenant=TENANT)),
            grpc.StatusCode.FAILED_PRECONDITION,
            name,
        )
        # the files come back (an operator restores the volume): the retry makes it servable again
        weights.write_bytes(healthy)
        await eventually(lambda: not replica_b.runtime.adapters.rows[name].load_error)
        tuned = await replica_b.stub.GenerateUnary(chat(QUESTION, adapter=name, tenant=TENANT))
        base = await replica_b.stub.GenerateUnary(chat(QUESTION))
        assert tuned.model == name and tuned.text != base.text
        await eventually(lambda: not generator_runtime.adapters.rows[name].load_error)  # replica A heard it too
    finally:
        for adapter in (name, legacy_name):
            with contextlib.suppress(grpc.aio.AioRpcError):
                await generator_stub.UnloadAdapter(pb.UnloadAdapterRequest(name=adapter, tenant=TENANT))


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/etc", grpc.StatusCode.PERMISSION_DENIED),
        ("relative/dir", grpc.StatusCode.INVALID_ARGUMENT),
        ("", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_adapter_paths_outside_the_roots_are_refused(generator_stub, path, code):
    await expect(generator_stub.LoadAdapter(pb.LoadAdapterRequest(name="outside", path=path)), code, "path")


async def test_a_symlink_out_of_the_roots_is_refused(generator_stub, make_adapter, tmp_path):
    outside = Path("/var/tmp") / f"ragtune-outside-{tmp_path.name}"
    shutil.copytree(make_adapter(seed=15), outside)
    try:
        link = tmp_path / "link"
        link.symlink_to(outside)
        await expect(
            generator_stub.LoadAdapter(pb.LoadAdapterRequest(name="outside", path=str(link))),
            grpc.StatusCode.PERMISSION_DENIED,
            "path",
        )
        inside = tmp_path / "inside"
        inside.mkdir()
        (inside / "adapter_config.json").symlink_to(outside / "adapter_config.json")
        shutil.copy(outside / "adapter_model.safetensors", inside)
        await expect(
            generator_stub.LoadAdapter(pb.LoadAdapterRequest(name="outside", path=str(inside))),
            grpc.StatusCode.PERMISSION_DENIED,
            "path",
        )
    finally:
        shutil.rmtree(outside, ignore_errors=True)


def sample(name: str) -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value(name)
    assert value is not None, f"{name} is not exported"
    return value


async def test_metrics_count_generated_tokens(generator_stub):
    before = {kind: sample(f"ragtune_generator_{kind}_tokens_total") for kind in ("generated", "prompt")}
    answer = await generator_stub.GenerateUnary(chat(QUESTION))
    assert sample("ragtune_generator_generated_tokens_total") - before["generated"] == answer.usage.completion_tokens
    assert sample("ragtune_generator_prompt_tokens_total") - before["prompt"] == answer.usage.prompt_tokens
    assert sample("ragtune_generator_tokens_per_second") > 0
    assert sample("ragtune_generator_in_flight") == 0


async def test_adapter_gauges_count_registered_and_loaded_adapters(generator_stub, replica_b, make_adapter):
    """The adapter gauges read the runtime started last in this process, replica B (a generator
    process runs one): an adapter published on A raises B's registered count by one when B hears
    of it, its first request on B loads it into B's engine, and unloading it takes both back."""
    registered, loaded = "ragtune_generator_registered_adapters", "ragtune_generator_loaded_adapters"
    adapters = replica_b.runtime.adapters
    capacity = max(replica_b.settings.max_cpu_loras, replica_b.settings.max_loras)
    registered_before, loaded_before = sample(registered), sample(loaded)
    assert registered_before == len(adapters.rows) and loaded_before == len(adapters.residency.loaded)
    name = "ft:test:replicas:gauges"
    await publish(generator_stub, name, make_adapter(seed=16))
    try:
        await eventually(lambda: name in adapters.rows)
        assert sample(registered) == registered_before + 1
        lora_id = adapters.rows[name].id
        assert lora_id not in adapters.residency.loaded and sample(loaded) == loaded_before  # loaded on first use
        await replica_b.stub.GenerateUnary(chat(QUESTION, adapter=name, tenant=TENANT))
        assert lora_id in adapters.residency.loaded
        assert sample(loaded) == min(loaded_before + 1, capacity) == len(adapters.residency.loaded)
    finally:
        await generator_stub.UnloadAdapter(pb.UnloadAdapterRequest(name=name, tenant=TENANT))
    await eventually(lambda: name not in adapters.rows and lora_id not in adapters.residency.loaded)
    assert sample(registered) == registered_before
    assert sample(loaded) == len(adapters.residency.loaded)


async def test_residency_evicts_the_least_recently_used_idle_adapter(generator_runtime, make_adapter):
    """On the real engine, with room for two: a third adapter evicts the least recently used idle
    one, never one a request holds; with every slot held, RESOURCE_EXHAUSTED."""
    from ragtune_common.errors import ResourceExhausted
    from ragtune_generator.residency import AdapterResidency

    engine = generator_runtime.engine
    residency = AdapterResidency(engine, capacity=2)
    first, second, third = 900_001, 900_002, 900_003  # ids no registry row uses
    paths = {i: str(make_adapter(seed=20 + n)) for n, i in enumerate((first, second, third))}
    try:
        for lora_id in (first, second):
            await residency.acquire(lora_id, f"lru-{lora_id}", paths[lora_id])
        residency.release(second)  # `first` stays held by a "request"
        await residency.acquire(third, "lru-third", paths[third])
        assert residency.loaded == [first, third]
        assert {first, third} <= await engine.loaded_loras() and second not in await engine.loaded_loras()
        with pytest.raises(ResourceExhausted):
            await residency.acquire(second, "lru-second", paths[second])
        residency.release(first)
        residency.release(third)
        await residency.acquire(second, "lru-second", paths[second])  # evicts `first`, now the oldest idle
        assert residency.loaded == [third, second]
        residency.release(second)
    finally:
        for lora_id in (first, second, third):
            await residency.retire(lora_id)
    assert not {first, second, third} & await engine.loaded_loras()
