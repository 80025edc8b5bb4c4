"""The CLI's view of the gateway: where it is, which key to use, the official ``openai`` client for
the routes in the OpenAI dialect (files, vector stores) and JSON/SSE calls over httpx for ragtune's
own (admin, ``rag`` chat with citations, job events)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from openai import APIStatusError, OpenAI

from ragtune_common.state_paths import credentials_path

TIMEOUT_S = 600.0


class CliError(Exception):
    """A failure to show the user as one line (no traceback)."""


def state_dir() -> Path:
    return Path(os.environ.get("RAGTUNE_STATE_DIR", ".ragtune")).expanduser().resolve()


def base_url() -> str:
    """The gateway's root: ``RAGTUNE_BASE_URL`` (with or without the ``/v1`` an OpenAI client is
    given), else ``http://127.0.0.1:$RAGTUNE_GATEWAY_PORT`` (8080)."""
    if url := os.environ.get("RAGTUNE_BASE_URL"):
        return url.rstrip("/").removesuffix("/v1")
    return f"http://127.0.0.1:{os.environ.get('RAGTUNE_GATEWAY_PORT', '8080')}"


def _saved_key(field: str, missing: str) -> str:
    """A key the gateway wrote to the state directory on its first start (when it was given no admin key)."""
    path = credentials_path(state_dir())
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))[field])
    except (OSError, ValueError, KeyError):
        raise CliError(f"{missing}, or run where `ragtune up` wrote {path} (RAGTUNE_STATE_DIR)") from None


def api_key() -> str:
    """``RAGTUNE_API_KEY``, else the default tenant's key that the gateway wrote on first start."""
    return os.environ.get("RAGTUNE_API_KEY") or _saved_key("api_key", "no API key: set RAGTUNE_API_KEY")


def admin_key() -> str:
    """``RAGTUNE_ADMIN_KEY``, else the admin key that the gateway wrote on first start."""
    return os.environ.get("RAGTUNE_ADMIN_KEY") or _saved_key(
        "admin_key", "no admin key: set RAGTUNE_ADMIN_KEY (the gateway's RAGTUNE_GATEWAY_ADMIN_KEY)"
    )


def error_line(status: int, body: object) -> str:
    """``HTTP 404: No such file: 'file-x'. (file_id)``: the gateway's message and the field it names,
    from an error body (``{"error": {...}}``, or the inner object as the ``openai`` client keeps it)."""
    error = body.get("error", body) if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        param = f" ({error['param']})" if error.get("param") else ""
        return f"HTTP {status}: {error['message']}{param}"
    return f"HTTP {status}: {' '.join(str(body).split())[:300]}"


def refusal_line(error: APIStatusError) -> str:
    """:func:`error_line` of an error answer as the ``openai`` client raises it."""
    return error_line(error.status_code, error.body if error.body is not None else error.message)


def openai_client() -> OpenAI:
    """The official client on this gateway: one retry (a 429 waits as the gateway asks), then the error."""
    return OpenAI(base_url=f"{base_url()}/v1", api_key=api_key(), timeout=TIMEOUT_S, max_retries=1)


class Gateway:
    """ragtune's own routes over httpx, with the tenant's key (or the admin key: ``Gateway(key=admin_key())``)."""

    def __init__(self, url: str | None = None, key: str | None = None, timeout_s: float = TIMEOUT_S) -> None:
        self.http = httpx.Client(
            base_url=url or base_url(), headers={"Authorization": f"Bearer {key or api_key()}"}, timeout=timeout_s
        )

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    @staticmethod
    def _check(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                body: object = response.json()
            except ValueError:
                body = response.text
            raise CliError(error_line(response.status_code, body))
        return response.json()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return self._check(self.http.request(method, path, **kwargs))
        except httpx.TransportError as exc:
            raise CliError(f"cannot reach the gateway at {self.http.base_url}: {exc}") from None

    def events(self, method: str, path: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """The JSON payloads of a server-sent event stream, until ``[DONE]``."""
        try:
            with self.http.stream(method, path, **kwargs) as response:
                if response.status_code >= 400:
                    response.read()
                    self._check(response)
                for line in response.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    data = line[len("data: ") :]
                    if data == "[DONE]":
                        return
                    payload = json.loads(data)
                    if "error" in payload:
                        raise CliError(payload["error"].get("message", "stream failed"))
                    yield payload
        except httpx.TransportError as exc:
            raise CliError(f"cannot reach the gateway at {self.http.base_url}: {exc}") from None
