"""Who may talk to a gRPC service: the shared service token, the loopback rule and TLS.

- With ``RAGTUNE_SERVICE_TOKEN`` set, every RPC except ``grpc.health.v1.Health/*`` must carry
  ``authorization: Bearer <token>`` (compared in constant time), else UNAUTHENTICATED. Reflection
  is no exception: it describes every method.
- Without it, a server binds only a loopback address; asked for any other it refuses to start.
- With ``RAGTUNE_TLS_CERT_FILE``/``RAGTUNE_TLS_KEY_FILE`` it serves TLS; with ``RAGTUNE_TLS_CA_FILE``
  as well it requires client certificates signed by that CA (mutual TLS).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from ragtune_common.settings import ServiceSettings

log = logging.getLogger(__name__)

HEALTH_PREFIX = "/grpc.health.v1.Health/"
AUTHORIZATION = "authorization"


class InsecureBindError(SystemExit):
    """A server was asked to listen beyond loopback with nothing to tell callers apart, or TLS is
    half configured. A SystemExit: the process ends with the message, not a traceback."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback literals; wildcards and names count as exposed."""
    host = host.strip().removeprefix("[").removesuffix("]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind_allowed(settings: ServiceSettings) -> None:
    """Refuse a non-loopback bind without a service token (raises InsecureBindError)."""
    if settings.service_token is None and not is_loopback(settings.host):
        raise InsecureBindError(
            f"refusing to listen on {settings.host}:{settings.port} without RAGTUNE_SERVICE_TOKEN: anyone who"
            " reaches that address could read and change every tenant's data. Set RAGTUNE_SERVICE_TOKEN (the"
            " same value in every service and the gateway, e.g. `openssl rand -hex 32`), or bind 127.0.0.1."
        )


def server_credentials(settings: ServiceSettings) -> grpc.ServerCredentials | None:
    """TLS server credentials when a certificate is configured, else None (plaintext)."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        if settings.tls_ca_file is not None:
            raise InsecureBindError(
                "RAGTUNE_TLS_CA_FILE is set but RAGTUNE_TLS_CERT_FILE/RAGTUNE_TLS_KEY_FILE are not:"
                " a server needs its own certificate to require client certificates"
            )
        return None
    ca = settings.tls_ca_file.read_bytes() if settings.tls_ca_file else None
    return grpc.ssl_server_credentials(
        [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())],
        root_certificates=ca,
        require_client_auth=ca is not None,
    )


def _refuse_unary(message: str) -> Callable[..., Awaitable[Any]]:
    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    return refuse


def _refuse_stream(message: str) -> Callable[..., AsyncIterator[Any]]:
    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover  (makes this an async generator, as streaming handlers are)

    return refuse


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """UNAUTHENTICATED for every call but health checks that lacks the bearer token."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def _authorized(self, metadata: Any) -> bool:
        presented = b""
        for key, value in metadata or ():
            if key == AUTHORIZATION:
                presented = value.encode() if isinstance(value, str) else bytes(value)
                break
        return hmac.compare_digest(presented, self._expected)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        if method.startswith(HEALTH_PREFIX) or self._authorized(handler_call_details.invocation_metadata):
            return await continuation(handler_call_details)
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: UNIMPLEMENTED, as without the token
            return handler
        log.warning("refused %s: missing or wrong service token", method)
        message = "missing or wrong service token (authorization: Bearer <RAGTUNE_SERVICE_TOKEN>)"
        if handler.unary_unary:
            return handler._replace(unary_unary=_refuse_unary(message))  # type: ignore[attr-defined]
        if handler.stream_unary:
            return handler._replace(stream_unary=_refuse_unary(message))  # type: ignore[attr-defined]
        if handler.unary_stream:
            return handler._replace(unary_stream=_refuse_stream(message))  # type: ignore[attr-defined]
        return handler._replace(stream_stream=_refuse_stream(message))  # type: ignore[attr-defined]


def auth_interceptors(settings: ServiceSettings) -> list[grpc.aio.ServerInterceptor]:
    """The interceptors that enforce the token (none on a loopback server without one)."""
    if settings.service_token is None:
        return []
    return [TokenAuthInterceptor(settings.service_token.get_secret_value())]
