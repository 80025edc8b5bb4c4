"""Checks on request values before they reach PostgreSQL or a model.

PostgreSQL ``text`` and ``jsonb`` cannot hold the NUL character (U+0000): an id, a name, a query
or a metadata key or value that carries one is refused here with ``INVALID_ARGUMENT`` naming the
field (document *text* is different: its NULs are stripped, see :mod:`ragtune_retriever.parsing`).
Metadata (JSON objects attached to documents and collections) is bounded in depth, number of
keys, key length and serialized size, and walked without recursion so that no input can exhaust
the stack.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from ragtune_common.errors import InvalidArgument

NUL = "\x00"
METADATA_MAX_DEPTH = 8
METADATA_MAX_KEYS = 256
METADATA_MAX_KEY_CHARS = 256
METADATA_MAX_BYTES = 32 * 1024


def check_text(value: str, field: str) -> str:
    """``value`` unchanged, or InvalidArgument if it holds a NUL character."""
    if NUL in value:
        raise InvalidArgument(f"must not contain NUL (\\x00) characters (at index {value.index(NUL)})", field=field)
    return value


def check_texts(values: Iterable[str], field: str) -> list[str]:
    """Each of a repeated field's values, checked as ``field[i]``."""
    return [check_text(value, f"{field}[{i}]") for i, value in enumerate(values)]


def check_metadata(value: Mapping[str, Any], field: str) -> dict[str, Any]:
    """A metadata object within bounds and free of NULs, as a plain dict."""
    keys = 0
    stack: list[tuple[Any, str, int]] = [(value, field, 1)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, Mapping | list) and depth > METADATA_MAX_DEPTH:
            raise InvalidArgument(f"is nested deeper than {METADATA_MAX_DEPTH} levels", field=path)
        if isinstance(node, Mapping):
            keys += len(node)
            if keys > METADATA_MAX_KEYS:
                raise InvalidArgument(f"has more than {METADATA_MAX_KEYS} keys in all", field=field)
            for key, child in node.items():
                child_path = f"{path}.{key}"
                if len(key) > METADATA_MAX_KEY_CHARS:
                    raise InvalidArgument(f"key is longer than {METADATA_MAX_KEY_CHARS} characters", field=path)
                if NUL in key:  # named escaped: a NUL cannot travel in a status message
                    raise InvalidArgument(
                        "key must not contain NUL (\\x00) characters", field=child_path.replace(NUL, "\\x00")
                    )
                stack.append((child, child_path, depth + 1))
        elif isinstance(node, list):
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(node))
        elif isinstance(node, str):
            check_text(node, path)
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    if size > METADATA_MAX_BYTES:
        raise InvalidArgument(f"is {size} bytes as JSON, over the limit of {METADATA_MAX_BYTES}", field=field)
    return dict(value)
