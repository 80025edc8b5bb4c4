"""Bounded building blocks of the wire models.

- Text, ids and keys refuse NUL bytes and unpaired surrogates (neither PostgreSQL text nor
  protobuf strings can hold them): 400 naming the field, before anything is stored or sent.
- Integers that reach a protobuf field are range-checked for its type (``int32``, ``int64``,
  ``uint32``); floats are finite.
- Free JSON values (filters, metadata, attributes) are bounded in depth and in total nodes, their
  numbers finite and exactly representable as a protobuf ``double``.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Generic, Literal, TypeVar

from fastapi import Path, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT32_MAX = 2**32 - 1
DOUBLE_EXACT_INT = 2**53  # larger integers do not survive a google.protobuf.Value (a double)

MAX_ID_CHARS = 256
MAX_KEY_CHARS = 256
MAX_JSON_DEPTH = 8  # containers inside one another (a filter `and` of `or` of comparisons is 4)
MAX_JSON_NODES = 512  # containers + scalars + keys, in one JSON value


class WireModel(BaseModel):
    """Base of every request model: no NaN or infinity in any float field."""

    model_config = ConfigDict(allow_inf_nan=False)


def check_text(value: str) -> str:
    """Text PostgreSQL and protobuf can hold: no NUL byte, valid UTF-8 (no unpaired surrogate)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no unpaired surrogate)") from None
    return value


Text = Annotated[str, AfterValidator(check_text)]
Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS), AfterValidator(check_text)]
Key = Annotated[str, Field(min_length=1, max_length=MAX_KEY_CHARS), AfterValidator(check_text)]

# Path and query parameters: the same rules, so a NUL in a URL is a 400 naming the parameter.
PathId = Annotated[str, Path(min_length=1, max_length=MAX_ID_CHARS), AfterValidator(check_text)]
Cursor = Annotated[str, Query(max_length=MAX_ID_CHARS), AfterValidator(check_text)]

Int32 = Annotated[int, Field(ge=INT32_MIN, le=INT32_MAX)]
NonNegInt32 = Annotated[int, Field(ge=0, le=INT32_MAX)]
PosInt32 = Annotated[int, Field(ge=1, le=INT32_MAX)]
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
UInt32 = Annotated[int, Field(ge=0, le=UINT32_MAX)]


def check_json(value: Any, *, max_depth: int = MAX_JSON_DEPTH, max_nodes: int = MAX_JSON_NODES) -> Any:
    """Walks a JSON value once (iteratively: no recursion to exhaust) and refuses one that is too
    deep or too broad, or holds text or numbers the services cannot carry. Messages name the
    offending sub-path, e.g. ``filters.filters[3].key``."""
    nodes = 0
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        item, where, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise ValueError(f"has more than {max_nodes} values and keys in all")
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise ValueError(f"nests deeper than {max_depth} levels (at '{where}')")
            if isinstance(item, dict):
                for key, child in item.items():
                    nodes += 1
                    _check_json_text(key, f"{where}.{key!s:.64}" if where else f"{key!s:.64}", "key")
                    stack.append((child, f"{where}.{key}" if where else str(key), depth + 1))
            else:
                stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))
        elif isinstance(item, str):
            _check_json_text(item, where, "value")
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if abs(item) > DOUBLE_EXACT_INT:
                raise ValueError(f"number at '{where}' is outside +-2^53")
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"number at '{where}' is not finite")
    return value


def _check_json_text(text: str, where: str, what: str) -> None:
    try:
        check_text(text)
    except ValueError as exc:
        raise ValueError(f"{what} at '{where}' {exc}") from None


JsonObject = Annotated[dict[str, Any], AfterValidator(check_json)]


# Responses. Models of what the gateway answers: `/openapi.json` documents each body, and FastAPI
# serialises through them (a field the model lacks is never sent). OpenAI-facing models mirror the
# official SDK's types field for field; ragtune's extensions are extra, optional fields.


class ResponseModel(BaseModel):
    """Base of every response model."""

    model_config = ConfigDict(from_attributes=True)


def _is_none(value: object) -> bool:
    return value is None


Value = TypeVar("Value")
# A field sent only when it has a value (``field: Omitted[str] = None``): an optional field of the
# official client's type that ragtune does not fill, or an extension only some answers carry. It is
# documented, and absent from the body (not null) while None.
Omitted = Annotated[Value | None, Field(exclude_if=_is_none)]

Item = TypeVar("Item")


class ListPage(ResponseModel, Generic[Item]):
    """A page of a list, as OpenAI's cursor pages: ``after=<last_id>`` asks for the next one."""

    object: Literal["list"] = "list"
    data: list[Item]
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None

    @classmethod
    def of(cls, data: list[Item], has_more: bool = False) -> ListPage[Item]:
        """The page of ``data`` with its first and last ids (when its items have ids)."""
        ids = [getattr(item, "id", None) for item in data]
        return cls(data=data, has_more=has_more, first_id=ids[0] if ids else None, last_id=ids[-1] if ids else None)


class Deleted(ResponseModel):
    """What a DELETE answers: ``{"id", "object": "<kind>.deleted", "deleted": true}``."""

    id: str
    object: str
    deleted: bool = True
