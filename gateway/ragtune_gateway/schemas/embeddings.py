"""``POST /v1/embeddings``: the request (``input`` a string or a list of strings; token arrays are
refused) and the answer as the official client's ``CreateEmbeddingResponse``: one ``Embedding``
per input, its vector as floats or as base64 of little-endian float32 (``encoding_format``), which
the client decodes.

``model`` names one of the retriever's embedding models (``RAGTUNE_RETRIEVER_EMBEDDING_MODELS``,
e.g. ``all-MiniLM-L6-v2``, or a backend variant such as ``all-MiniLM-L6-v2@onnx-int8``); the
vectors are those the retriever stores for chunks of the same text."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Discriminator, Field, Tag

from ragtune_gateway.schemas.common import PosInt32, ResponseModel, Text, WireModel, check_text

MAX_INPUTS = 2048  # as OpenAI; the retriever's RAGTUNE_RETRIEVER_MAX_EMBED_INPUTS bounds it too
MAX_INPUT_CHARS = 32768  # per input (RAGTUNE_RETRIEVER_MAX_EMBED_INPUT_CHARS)

InputText = Annotated[str, Field(min_length=1, max_length=MAX_INPUT_CHARS), AfterValidator(check_text)]


def _refuse_token_arrays(value: object) -> object:
    raise ValueError("token arrays are not supported: send the text (a string or a list of strings)")


def _input_kind(value: Any) -> str | None:
    """Which branch of ``input`` a value is: a string, strings, or token ids (refused)."""
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        return "list[int]" if any(isinstance(item, int | list) for item in value) else "list[str]"
    return None


EmbeddingInput = Annotated[
    Annotated[InputText, Tag("str")]
    | Annotated[list[InputText], Field(min_length=1, max_length=MAX_INPUTS), Tag("list[str]")]
    | Annotated[list[int] | list[list[int]], AfterValidator(_refuse_token_arrays), Tag("list[int]")],
    Discriminator(
        _input_kind, custom_error_type="invalid_input", custom_error_message="must be a string or a list of strings"
    ),
]


class EmbeddingRequest(WireModel):
    model_config = ConfigDict(extra="ignore")

    model: Text = Field(
        min_length=1,
        max_length=256,
        description="a retriever embedding model, e.g. all-MiniLM-L6-v2 or all-MiniLM-L6-v2@onnx-int8",
    )
    input: EmbeddingInput = Field(
        description=f"a string or 1-{MAX_INPUTS} strings, each 1-{MAX_INPUT_CHARS} characters; token arrays are"
        " not supported. Text beyond the model's sequence length is truncated, as the retriever's chunks are."
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: PosInt32 | None = Field(default=None, description="only the model's own dimension")
    user: Text | None = Field(default=None, max_length=256)

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)  # type: ignore[arg-type]


# Downstream field paths -> this request's parameters.
EMBED_FIELDS = {"inputs": "input", "model": "model"}


class Embedding(ResponseModel):
    """The official client's ``Embedding``: ``embedding`` is floats, or base64 of little-endian
    float32 with ``encoding_format: base64``."""

    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(ResponseModel):
    prompt_tokens: int = Field(description="tokens the model read, counted with its own tokenizer")
    total_tokens: int


class CreateEmbeddingResponse(ResponseModel):
    """The official client's ``CreateEmbeddingResponse``; ``model`` is the variant that computed
    the vectors (``all-MiniLM-L6-v2@onnx-int8``)."""

    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
