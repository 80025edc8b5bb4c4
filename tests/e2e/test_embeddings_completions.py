"""``POST /v1/embeddings`` and ``POST /v1/completions`` driven by the official `openai` client
against the whole stack: strings and lists, float and base64 vectors (the client decodes base64
itself), whole and streamed legacy completions on a raw prompt, and the 400/404s that name the
field."""

from __future__ import annotations

import numpy as np
import openai
import pytest
from openai.types import Completion, CreateEmbeddingResponse

from tests.e2e.conftest import Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

MODEL = "all-MiniLM-L6-v2"
TEXTS = [
    "Every employee gets 27 days of paid leave per calendar year.",
    "New staff receive a laptop on their first day.",
    "Employees book economy class for flights shorter than six hours.",
]


def _matrix(reply: CreateEmbeddingResponse) -> np.ndarray:
    assert [d.index for d in reply.data] == list(range(len(reply.data)))
    return np.array([d.embedding for d in reply.data], dtype=np.float32)


async def test_embeddings_of_a_string_and_a_list_as_float_and_base64(tenant_a: Tenant) -> None:
    client = tenant_a.client
    as_float = await client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    assert as_float.object == "list" and as_float.model.startswith(f"{MODEL}@")
    floats = _matrix(as_float)
    assert floats.shape == (3, 384) and np.allclose(np.linalg.norm(floats, axis=1), 1.0, atol=1e-5)
    assert as_float.usage.prompt_tokens == as_float.usage.total_tokens > 3 * 5

    # the client asks for base64 unless told otherwise, and decodes it: the same float32 values
    as_base64 = await client.embeddings.create(model=MODEL, input=TEXTS)
    assert np.array_equal(_matrix(as_base64), floats)
    raw = await client.embeddings.with_raw_response.create(model=MODEL, input=TEXTS, encoding_format="base64")
    assert isinstance(raw.http_response.json()["data"][0]["embedding"], str)

    one = await client.embeddings.create(model=MODEL, input=TEXTS[0], encoding_format="float", dimensions=384)
    again = await client.embeddings.create(model=MODEL, input=[TEXTS[0]])
    assert np.array_equal(_matrix(one), _matrix(again))
    # int8 activations are quantized per batch: alone or beside others, a text's vector moves a little
    assert float(_matrix(one)[0] @ floats[0]) > 0.98

    question = await client.embeddings.create(model=MODEL, input="How many vacation days do I get?")
    assert int(np.argmax(floats @ _matrix(question)[0])) == 0


async def test_embeddings_with_a_backend_variant(tenant_a: Tenant) -> None:
    reply = await tenant_a.client.embeddings.create(model=f"{MODEL}@torch", input=["a cat"], encoding_format="float")
    assert reply.model == f"{MODEL}@torch" and len(reply.data[0].embedding) == 384


@pytest.mark.parametrize(
    ("kwargs", "status", "param"),
    [
        ({"input": [101, 2023, 102]}, 400, "input"),
        ({"input": [[101, 102], [101, 102]]}, 400, "input"),
        ({"input": ["fine", ""]}, 400, "input[1]"),
        ({"input": "fine", "dimensions": 128}, 400, "dimensions"),
        ({"input": "fine", "model": "text-embedding-3-small"}, 404, "model"),
        ({"input": "fine", "model": "all-MiniLM-L6-v2@fp4"}, 404, "model"),
    ],
)
async def test_embedding_refusals_name_the_field(tenant_a: Tenant, kwargs: dict, status: int, param: str) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        await tenant_a.client.embeddings.create(**{"model": MODEL, **kwargs})
    assert caught.value.status_code == status
    error = caught.value.body
    assert isinstance(error, dict) and error["param"] == param, error
    if status == 404:
        assert error["code"] == "model_not_found"
    if kwargs["input"] == [101, 2023, 102]:
        assert "token arrays are not supported" in error["message"]


async def test_completion_whole_and_streamed(tenant_a: Tenant, base_model: str) -> None:
    client = tenant_a.client
    prompt = "The three primary colors are red, yellow and"
    whole = await client.completions.create(model=base_model, prompt=prompt, max_tokens=8, temperature=0)
    assert isinstance(whole, Completion) and whole.object == "text_completion" and whole.id.startswith("cmpl-")
    assert whole.model == base_model and len(whole.choices) == 1
    choice = whole.choices[0]
    assert choice.text and choice.finish_reason in ("stop", "length") and choice.index == 0
    assert whole.usage is not None and 0 < whole.usage.completion_tokens <= 8

    # the raw prompt, no chat template: fewer prompt tokens than the same text as a chat message
    chat = await client.chat.completions.create(
        model=base_model, messages=[{"role": "user", "content": prompt}], max_tokens=1
    )
    assert chat.usage is not None and whole.usage.prompt_tokens < chat.usage.prompt_tokens

    stream = await client.completions.create(
        model=base_model,
        prompt=prompt,
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert all(c.object == "text_completion" and c.id == chunks[0].id for c in chunks)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == choice.text  # greedy: the same tokens
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [choice.finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


@pytest.mark.parametrize(
    ("kwargs", "status", "param"),
    [
        ({"n": 2}, 400, "n"),
        ({"best_of": 2}, 400, "best_of"),
        ({"echo": True}, 400, "echo"),
        ({"logprobs": 2}, 400, "logprobs"),
        ({"suffix": " the end"}, 400, "suffix"),
        ({"prompt": [1, 2, 3]}, 400, "prompt"),
        ({"prompt": ""}, 400, "prompt"),
        ({"temperature": 5}, 400, "temperature"),
        ({"model": "no-such-model"}, 404, "model"),
    ],
)
async def test_completion_refusals_name_the_field(
    tenant_a: Tenant, base_model: str, kwargs: dict, status: int, param: str
) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        await tenant_a.client.completions.create(**{"model": base_model, "prompt": "Hi", "max_tokens": 2, **kwargs})
    assert caught.value.status_code == status
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == param, caught.value.body
