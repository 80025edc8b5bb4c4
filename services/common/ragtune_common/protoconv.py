"""Conversions between protobuf well-known types and plain Python values."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from ragtune_common.errors import InvalidArgument


def struct_to_dict(message: struct_pb2.Struct, field: str) -> dict[str, Any]:
    try:
        value = json_format.MessageToDict(message)
    except (json_format.Error, ValueError) as exc:  # e.g. NaN
        raise InvalidArgument(f"is not valid JSON: {exc}", field=field) from None
    return value if isinstance(value, dict) else {}


def dict_to_struct(value: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


def to_timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp
