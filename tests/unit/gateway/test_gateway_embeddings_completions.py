"""``/v1/embeddings`` and ``/v1/completions`` at the wire: the response models mirror the official
client's types and are documented in ``/openapi.json``; bad requests are 400s naming the field
(token arrays, unsupported options, empty or too many inputs); base64 vectors decode as the
client decodes them."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import openai.types as oai
import pytest
from fastapi.exceptions import RequestValidationError
from openai.types import create_embedding_response
from pydantic import BaseModel, ValidationError

from ragtune_gateway.errors import _validation_error
from ragtune_gateway.schemas import completions, embeddings
from ragtune_gateway.services.embeddings import encode_base64
from tests.fixtures.openapi import assert_mirrors, gateway_openapi, resolve

MIRRORS: list[tuple[type[BaseModel], type[BaseModel]]] = [
    (embeddings.CreateEmbeddingResponse, oai.CreateEmbeddingResponse),
    (embeddings.Embedding, oai.Embedding),
    (embeddings.EmbeddingUsage, create_embedding_response.Usage),
    (completions.Completion, oai.Completion),
    (completions.CompletionChoice, oai.CompletionChoice),
]


@pytest.mark.parametrize(("ours", "theirs"), MIRRORS, ids=lambda m: m.__name__)
def test_models_mirror_the_openai_types(ours: type[BaseModel], theirs: type[BaseModel]) -> None:
    assert_mirrors(ours, theirs)


def test_routes_document_their_bodies(tmp_path_factory: pytest.TempPathFactory) -> None:
    spec = gateway_openapi(tmp_path_factory.mktemp("state"))
    embed = spec["paths"]["/v1/embeddings"]["post"]
    schema = resolve(spec, embed["responses"]["200"]["content"]["application/json"]["schema"])
    assert set(schema["properties"]) >= {"object", "data", "model", "usage"}
    assert "all-MiniLM-L6-v2" in embed["description"]
    complete = spec["paths"]["/v1/completions"]["post"]
    content = complete["responses"]["200"]["content"]
    assert "text/event-stream" in content
    assert set(resolve(spec, content["application/json"]["schema"])["properties"]) >= {"id", "object", "choices"}


def _refusal(model: type[BaseModel], body: dict[str, Any]) -> tuple[str | None, str]:
    with pytest.raises(ValidationError) as bad:
        model.model_validate(body)
    error = _validation_error(RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in bad.value.errors()]))
    assert error.status == 400
    return error.param, error.message


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"model": "m", "input": [1, 2, 3]}, "input", "token arrays are not supported"),
        ({"model": "m", "input": [[1, 2], [3]]}, "input", "token arrays are not supported"),
        ({"model": "m", "input": ["ok", ""]}, "input[1]", "at least 1 character"),
        ({"model": "m", "input": ["ok", "a\x00"]}, "input[1]", "NUL"),
        ({"model": "m", "input": []}, "input", "at least 1 item"),
        ({"model": "m", "input": ["x"] * 2049}, "input", "at most 2048"),
        ({"model": "m", "input": "y" * 40000}, "input", "at most 32768"),
        ({"model": "m", "input": {"text": "a"}}, "input", "must be a string or a list of strings"),
        ({"input": "a"}, "model", "Field required"),
        ({"model": "m", "input": "a", "encoding_format": "int8"}, "encoding_format", "float"),
        ({"model": "m", "input": "a", "dimensions": 0}, "dimensions", "greater than or equal to 1"),
    ],
)
def test_embedding_requests_refused_naming_the_field(body: dict[str, Any], param: str, words: str) -> None:
    got, message = _refusal(embeddings.EmbeddingRequest, body)
    assert got == param and words in message, message


def test_embedding_input_as_string_or_list() -> None:
    assert embeddings.EmbeddingRequest(model="m", input="a b").texts() == ["a b"]
    assert embeddings.EmbeddingRequest(model="m", input=["a", "b"]).texts() == ["a", "b"]


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"model": "m", "prompt": [1, 2]}, "prompt", "token arrays are not supported"),
        ({"model": "m", "prompt": ["a", "b"]}, "prompt", "at most 1 item"),
        ({"model": "m", "prompt": "a", "stop": ["1"] * 9}, "stop", "at most 8"),
        ({"model": "m", "prompt": "a", "temperature": 3}, "temperature", "less than or equal to 2"),
        ({"model": "m", "prompt": "a", "max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
    ],
)
def test_completion_requests_refused_naming_the_field(body: dict[str, Any], param: str, words: str) -> None:
    got, message = _refusal(completions.CompletionRequest, body)
    assert got == param and words in message, message


@pytest.mark.parametrize(
    ("extra", "param"),
    [({"n": 2}, "n"), ({"best_of": 3}, "best_of"), ({"echo": True}, "echo"), ({"logprobs": 0}, "logprobs"),
     ({"suffix": "end"}, "suffix")],
)  # fmt: skip
def test_completion_options_ragtune_cannot_honour(extra: dict[str, Any], param: str) -> None:
    request = completions.CompletionRequest.model_validate({"model": "m", "prompt": "a", **extra})
    assert request.unsupported() is not None and request.unsupported()[0] == param  # type: ignore[index]


def test_completion_defaults_are_accepted_and_sampled_as_openai() -> None:
    request = completions.CompletionRequest.model_validate(
        {"model": "m", "prompt": ["Hi"], "n": 1, "best_of": 1, "echo": False, "suffix": "", "stop": "\n", "seed": 3}
    )
    assert request.unsupported() is None and request.prompt_text() == "Hi"
    sampling = request.sampling()
    assert sampling.max_tokens == completions.DEFAULT_MAX_TOKENS == 16
    assert list(sampling.stop) == ["\n"] and sampling.seed == 3 and not sampling.HasField("temperature")


def test_base64_decodes_as_the_openai_client_decodes() -> None:
    values = [0.1, -0.25, 3.5e-8, 1.0]
    decoded = np.frombuffer(base64.b64decode(encode_base64(values)), dtype="float32")
    assert decoded.tolist() == np.array(values, dtype=np.float32).tolist()
