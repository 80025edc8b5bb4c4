"""Typed domain errors, raised by service cores and mapped to gRPC status codes once.

Cores never import grpc to report a client mistake: they raise one of these, and the
error-mapping interceptor in :mod:`ragtune_common.server` turns it into a status.
"""

from __future__ import annotations

import grpc


class RagtuneError(Exception):
    """Base class: an error whose status code and message are safe to show to the client."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        self.message = message
        super().__init__(self.describe())

    def describe(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


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
