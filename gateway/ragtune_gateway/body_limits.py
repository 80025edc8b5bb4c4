"""Bounded work before the work: an ASGI middleware that checks a request before its body is read.

In this order, answering at once (the body is never read) when a check fails:

1. NUL characters in the URL path or query -> 400 (PostgreSQL text cannot hold them; a query
   parameter is named).
2. A request to ``/v1/`` that carries a body must carry ``Authorization: Bearer <key>`` -> 401.
3. ``Content-Length`` over the limit of the route's class -> 413: an upload (``POST /v1/files``)
   may be ``max_upload_bytes`` plus multipart overhead, any other body ``max_json_body_bytes``.
4. The key is checked (the admin key on ``/v1/admin``, an API key elsewhere) -> 401, or 503 when
   PostgreSQL cannot say.

While the app reads the body, the bytes actually received are counted against the same limit (a
chunked body has no ``Content-Length``, and a declared one may lie): past it, reading stops and the
answer is 413, whatever the app made of the interrupted body.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

import psycopg
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragtune_gateway.errors import ApiError, database_unavailable
from ragtune_gateway.runtime import GatewayRuntime

log = logging.getLogger(__name__)

MULTIPART_OVERHEAD_BYTES = 64 * 1024  # boundaries and part headers around an uploaded file
# A body declared over the limit but under this is read and dropped before the 413: closing a socket
# with unread bytes makes the kernel reset the connection, and a client still sending then loses the
# answer (seen by the fuzzer under load). A larger one is refused at once and the connection closed.
DRAIN_MAX_BYTES = 8 * 1024 * 1024
_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class BodyTooLarge(ApiError):
    def __init__(self, limit: int, upload: bool, drain: int = 0) -> None:
        what = "The file" if upload else "The request body"
        code = "file_too_large" if upload else "request_too_large"
        super().__init__(
            413, f"{what} is over the limit of {limit} bytes.", param="file" if upload else None, code=code
        )
        self.drain = drain  # bytes to read and drop before answering (0: answer at once and close)


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, runtime: GatewayRuntime) -> None:
        self.app = app
        self.runtime = runtime

    def limit(self, scope: Scope) -> tuple[int, bool]:
        """(byte limit, is an upload) of the route class of this request."""
        settings = self.runtime.settings
        if scope["method"] == "POST" and scope["path"].rstrip("/") == "/v1/files":
            return settings.max_upload_bytes, True
        return settings.max_json_body_bytes, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            limit, upload = self.limit(scope)
            await self._check(scope, limit, upload)
        except ApiError as refusal:
            drained = isinstance(refusal, BodyTooLarge) and refusal.drain > 0 and await _drain(receive, refusal.drain)
            await send_error(send, refusal, close=not drained)
            return
        await self._forward_counted(scope, receive, send, limit, upload)

    async def _check(self, scope: Scope, limit: int, upload: bool) -> None:
        _check_url(scope)
        headers = {k.lower(): v for k, v in scope["headers"]}
        declared = headers.get(b"content-length", b"").decode("latin-1").strip()
        has_body = (declared not in ("", "0")) or b"transfer-encoding" in headers
        if not (has_body and scope["method"] in _BODY_METHODS):
            return
        needs_key = scope["path"].startswith("/v1/")
        key = _bearer(headers.get(b"authorization", b"").decode("latin-1"))
        if needs_key and key is None:
            raise ApiError(401, "Missing API key: send 'Authorization: Bearer <key>'.", code="missing_api_key")
        allowed = limit + MULTIPART_OVERHEAD_BYTES if upload else limit
        if declared.isdigit() and int(declared) > allowed:
            size = int(declared)
            raise BodyTooLarge(limit, upload, drain=size if size <= DRAIN_MAX_BYTES else 0)
        if needs_key and key is not None:
            await self._check_key(scope, key)

    async def _check_key(self, scope: Scope, key: str) -> None:
        if scope["path"].startswith("/v1/admin"):
            if not self.runtime.is_admin_key(key):
                raise ApiError(401, "This route needs the admin key.", code="invalid_admin_key")
            return
        try:
            caller = await self.runtime.caller(key)
        except psycopg.OperationalError as exc:
            log.warning("database unavailable while checking a key: %s", exc)
            raise database_unavailable() from None
        if caller is None:
            raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")
        scope.setdefault("state", {})["caller"] = caller  # request.state.caller: the route resolves it once

    async def _forward_counted(self, scope: Scope, receive: Receive, send: Send, limit: int, upload: bool) -> None:
        allowed = limit + MULTIPART_OVERHEAD_BYTES if upload else limit
        received = 0
        refusal: BodyTooLarge | None = None
        started = False

        async def counted_receive() -> Message:
            nonlocal received, refusal
            if refusal is not None:  # never hand the app more once over the limit
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > allowed:
                    refusal = BodyTooLarge(limit, upload)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refusal is not None and not started:  # whatever the app answered to a cut body: 413
                started = True
                await send_error(send, refusal)
                return
            if refusal is not None:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if refusal is None or started:
                raise
            started = True
            await send_error(send, refusal)


def _check_url(scope: Scope) -> None:
    if "\x00" in scope["path"]:
        raise ApiError(400, "The URL path must not contain NUL (%00) characters.", code="invalid_value")
    query = scope.get("query_string", b"")
    if b"%00" in query or b"\x00" in query:
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if "\x00" in name or "\x00" in value:
                message = f"{name}: must not contain NUL (%00) characters"
                raise ApiError(400, message, param=name.replace("\x00", "") or None, code="invalid_value")


def _bearer(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def _drain(receive: Receive, most: int) -> bool:
    """Read and drop the request body; True once it ended within ``most`` bytes."""
    seen = 0
    while seen <= most:
        message = await receive()
        if message["type"] != "http.request":
            return False
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return seen <= most
    return False


async def send_error(send: Send, error: ApiError, close: bool = True) -> None:
    """Answer ``error`` directly over ASGI (the body, if any, is left unread unless drained)."""
    body = error.response().body
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in error.headers().items()]
    if error.status == 413 and close:
        headers.append((b"connection", b"close"))  # an unread body too large to drain
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
