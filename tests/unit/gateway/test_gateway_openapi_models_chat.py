"""``/openapi.json`` documents what the model, alias and chat routes answer: every operation names
a JSON response schema (a pydantic model, not ``{}``), and the chat route also its SSE stream. The
models carry every field of the official openai client's types (optional where the client's are),
and the bodies built from them are what the gateway always sent: the client's optional fields that
ragtune does not fill are absent, not null."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import openai.types as oai
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from openai.types.chat import chat_completion, chat_completion_chunk
from pydantic import BaseModel

from ragtune.generator.v1 import generator_pb2 as gpb
from ragtune.retriever.v1 import retriever_pb2 as rpb
from ragtune_gateway.repositories.aliases import Alias
from ragtune_gateway.schemas import chat, models, stored_completions
from ragtune_gateway.services import chat as chat_service
from ragtune_gateway.services import models as model_service
from tests.fixtures.openapi import assert_mirrors, gateway_openapi, operations, resolve

# (ours, the openai client's)
MIRRORS: list[tuple[type[BaseModel], type[BaseModel]]] = [
    (models.Model, oai.Model),
    (models.AliasModel, oai.Model),
    (models.EmbeddingModel, oai.Model),
    (chat.ChatCompletion, oai.chat.ChatCompletion),
    (chat.Choice, chat_completion.Choice),
    (chat.ChatCompletionMessage, oai.chat.ChatCompletionMessage),
    (chat.CompletionUsage, oai.CompletionUsage),
    (chat.ChatCompletionChunk, oai.chat.ChatCompletionChunk),
    (chat.ChunkChoice, chat_completion_chunk.Choice),
    (chat.ChoiceDelta, chat_completion_chunk.ChoiceDelta),
    (stored_completions.StoredCompletion, oai.chat.ChatCompletion),
    (stored_completions.StoredMessage, oai.chat.ChatCompletionStoreMessage),
    (stored_completions.ChatCompletionDeleted, oai.chat.ChatCompletionDeleted),
]

PREFIXES = ("/v1/models", "/v1/aliases", "/v1/chat")


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return gateway_openapi(tmp_path_factory.mktemp("state"))


def _properties(spec: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    """The fields of a schema, or of every branch of a union (their intersection)."""
    schema = resolve(spec, schema)
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        return set.intersection(*(_properties(spec, b) for b in branches))
    return set(schema.get("properties", {}))


def test_every_model_alias_and_chat_route_documents_its_response(spec: dict[str, Any]) -> None:
    routes = operations(spec, PREFIXES)
    assert len(routes) == 15, [(p, m) for p, m, _ in routes]
    for path, method, operation in routes:
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert _properties(spec, schema) >= {"object"}, f"{method.upper()} {path} documents no response body"


@pytest.mark.parametrize(
    ("path", "method", "fields"),
    [
        ("/v1/models", "get", {"object", "data", "has_more"}),
        ("/v1/models/{model}", "get", {"id", "object", "created", "owned_by", "parent"}),
        ("/v1/aliases", "get", {"object", "data"}),
        ("/v1/aliases/{alias}", "get", {"id", "object", "model", "metric", "score", "updated_at"}),
        ("/v1/aliases/{alias}", "delete", {"id", "object", "deleted"}),
        ("/v1/aliases/{alias}/promotions", "post", {"id", "candidate", "holder", "promoted", "reason"}),
        ("/v1/aliases/{alias}/rollback", "post", {"id", "candidate", "holder", "promoted", "reason"}),
        ("/v1/chat/completions", "post", {"id", "object", "created", "model", "choices", "usage", "citations"}),
        ("/v1/chat/completions", "get", {"object", "data", "has_more", "first_id", "last_id"}),
        ("/v1/chat/completions/{completion_id}", "get", {"id", "object", "choices", "metadata", "request_model"}),
        ("/v1/chat/completions/{completion_id}", "post", {"id", "object", "metadata", "correction"}),
        ("/v1/chat/completions/{completion_id}", "delete", {"id", "object", "deleted"}),
        ("/v1/chat/completions/{completion_id}/messages", "get", {"object", "data", "has_more"}),
        ("/v1/chat/completions/{completion_id}/feedback", "get", {"object", "data"}),
    ],
)
def test_response_schemas_name_the_fields(spec: dict[str, Any], path: str, method: str, fields: set[str]) -> None:
    schema = spec["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
    assert _properties(spec, schema) >= fields


def test_chat_documents_its_event_stream(spec: dict[str, Any]) -> None:
    content = spec["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    assert "text/event-stream" in content and "application/json" in content


@pytest.mark.parametrize(("ours", "theirs"), MIRRORS, ids=lambda m: m.__name__)
def test_models_mirror_the_openai_types(ours: type[BaseModel], theirs: type[BaseModel]) -> None:
    assert_mirrors(ours, theirs)


def test_models_are_sent_as_before_and_validate_as_the_openai_type() -> None:
    loaded = Timestamp(seconds=1_700_000_000)
    base = gpb.Model(id="SmolLM2", max_model_len=2048, loaded_at=loaded)
    adapter = gpb.Model(id="ft:SmolLM2:x:ftjob-1", is_adapter=True, tenant="tn_1", base_model="SmolLM2")
    alias = Alias("tn_1", "ft:good", adapter.id, "f1", 40.0, {}, datetime.fromtimestamp(1_700_000_001, UTC))
    page = models.ModelList.of(
        [
            model_service.model_from_proto(base),
            model_service.model_from_proto(adapter),
            model_service.alias_model(alias),
        ]
    )
    sent = page.model_dump(mode="json")
    assert sent["data"] == [
        {"id": "SmolLM2", "object": "model", "created": 1_700_000_000, "owned_by": "ragtune", "parent": None,
         "max_model_len": 2048},
        {"id": adapter.id, "object": "model", "created": 0, "owned_by": "tn_1", "parent": "SmolLM2",
         "max_model_len": None},
        {"id": "ft:good", "object": "model", "created": 1_700_000_001, "owned_by": "tn_1", "parent": None,
         "alias_for": adapter.id},
    ]  # fmt: skip
    assert sent["object"] == "list" and sent["first_id"] == "SmolLM2" and sent["last_id"] == "ft:good"
    assert [oai.Model.model_validate(m).id for m in sent["data"]] == ["SmolLM2", adapter.id, "ft:good"]


def test_completion_and_chunks_are_sent_as_before() -> None:
    hit = rpb.SearchHit(document_id="file-1", chunk_id="file-1#0", collection="vs_1", text="abc", score=0.5)
    hit.end_offset = 3
    cited = chat_service.citation(1, hit)
    usage = chat.CompletionUsage(prompt_tokens=3, completion_tokens=2, total_tokens=5)
    message = chat.ChatCompletionMessage(content="hi")
    whole = chat.ChatCompletion(
        id="chatcmpl-1", created=1, model="m", choices=[chat.Choice(index=0, message=message, finish_reason="stop")]
    )
    assert whole.model_copy(update={"usage": usage}).model_dump(mode="json") == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop", "logprobs": None}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }
    grounded = whole.model_copy(update={"usage": usage, "citations": [cited]}).model_dump(mode="json")
    assert grounded["citations"] == [
        {"index": 1, "document_id": "file-1", "chunk_id": "file-1#0", "vector_store_id": "vs_1", "file_id": "file-1",
         "filename": None, "start_offset": 0, "end_offset": 3, "text": "abc", "score": 0.5, "attributes": {}}
    ]  # fmt: skip
    oai.chat.ChatCompletion.model_validate(grounded)

    opening = chat.ChatCompletionChunk(
        id="chatcmpl-2",
        created=1,
        model="m",
        choices=[chat.ChunkChoice(index=0, delta=chat.ChoiceDelta(role="assistant", content=""))],
    )
    assert opening.model_dump(mode="json", exclude={"usage"}) == {
        "id": "chatcmpl-2",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None, "logprobs": None}
        ],
    }
    last = chat.ChatCompletionChunk(
        id="chatcmpl-2",
        created=1,
        model="m",
        choices=[chat.ChunkChoice(index=0, delta=chat.ChoiceDelta(), finish_reason="length")],
    ).model_dump(mode="json")
    assert last["choices"][0]["delta"] == {} and last["usage"] is None
    oai.chat.ChatCompletionChunk.model_validate(last)
