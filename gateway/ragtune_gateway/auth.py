"""Request dependencies: the runtime, the caller's tenant (from ``Authorization: Bearer <key>``),
the admin check, and the request id carried into logs and (by the downstream clients) to the services."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragtune_common.interceptors import REQUEST_ID_HEADER
from ragtune_common.logging import new_request_id, request_id_var
from ragtune_gateway.errors import ApiError
from ragtune_gateway.runtime import GatewayRuntime


def get_runtime(request: Request) -> GatewayRuntime:
    runtime: GatewayRuntime = request.app.state.runtime
    return runtime


Runtime = Annotated[GatewayRuntime, Depends(get_runtime)]


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "Missing API key: send 'Authorization: Bearer <key>'.", code="missing_api_key")
    return token.strip()


async def current_tenant(request: Request, runtime: Runtime) -> str:
    """The caller's tenant; each call also takes one request from the key's rate limit (429)."""
    key = _bearer(request)
    # the body-limit middleware resolved the key already when the request carries a body
    caller = getattr(request.state, "caller", None) or await runtime.caller(key)
    if caller is None:
        raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")
    request.state.key_hash = caller.key_hash  # what per-key limits count by (limits.StreamSlots)
    runtime.rate_limiter.check(caller.key_hash)
    return caller.tenant


TenantId = Annotated[str, Depends(current_tenant)]


def is_admin(request: Request, runtime: GatewayRuntime) -> bool:
    """Whether the request carries the admin key (no error when it carries none)."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and runtime.is_admin_key(key.strip())


async def require_admin(request: Request, runtime: Runtime) -> None:
    _bearer(request)
    if not is_admin(request, runtime):
        raise ApiError(401, "This route needs the admin key.", code="invalid_admin_key")


class RequestIdMiddleware:
    """Takes ``x-request-id`` from the request (or makes one), puts it in the logging context and
    echoes it on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        request_id = given if 0 < len(given) <= 64 and given.isprintable() else new_request_id()
        token = request_id_var.set(request_id)

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (REQUEST_ID_HEADER.encode(), request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            request_id_var.reset(token)
