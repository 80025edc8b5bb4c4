"""Typed domain errors, raised by service cores and mapped to gRPC status codes once.

Cores never import grpc to report a client mistake: they raise one of these, and the
error-mapping interceptor in :mod:`ragtune_common.server` turns it into a status.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

# The trailing-metadata key of the rich status (a serialized google.rpc.Status), as grpcio-status
# and every gRPC implementation name it.
STATUS_DETAILS_KEY = "grpc-status-details-bin"


class RagtuneError(Exception):
    """Base class: an error whose status code and message are safe to show to the client."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        self.message = message
        super().__init__(self.describe())

    def describe(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def status_details(error: RagtuneError) -> tuple[tuple[str, bytes], ...]:
    """The trailing metadata that carries ``error`` as a ``google.rpc.Status``, with a
    ``google.rpc.BadRequest`` field violation when it names a field: clients read the field from
    there instead of parsing the message. Empty for an error without a field."""
    if not error.field:
        return ()
    violation = error_details_pb2.BadRequest.FieldViolation(field=error.field, description=error.message)
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    status = status_pb2.Status(code=error.code.value[0], message=error.describe(), details=[detail])
    return ((STATUS_DETAILS_KEY, status.SerializeToString()),)


def field_violations(trailing_metadata: Iterable[tuple[str, str | bytes]] | None) -> list[tuple[str, str]]:
    """The ``(field, description)`` pairs of the ``google.rpc.BadRequest`` details in a failed
    call's trailing metadata (what :func:`status_details` sends); empty when there are none."""
    violations: list[tuple[str, str]] = []
    for key, value in trailing_metadata or ():
        if key != STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status()
        status.ParseFromString(value)
        for detail in status.details:
            bad_request = error_details_pb2.BadRequest()
            if detail.Unpack(bad_request):
                violations += [(v.field, v.description) for v in bad_request.field_violations]
    return violations


class InvalidArgument(RagtuneError):
    """The request itself is wrong; ``field`` names the offending field (dotted path)."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(RagtuneError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(RagtuneError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(RagtuneError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(RagtuneError):
    """Back-pressure: the caller may retry later."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(RagtuneError):
    """A dependency (the database, an engine, another service) is down; retryable."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(RagtuneError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class PermissionDenied(RagtuneError):
    """The caller may not do this (e.g. a path outside the configured roots)."""

    code = grpc.StatusCode.PERMISSION_DENIED
