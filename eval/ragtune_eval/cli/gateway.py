"""The CLI's view of the gateway: where it is, which key to use, and JSON/SSE calls over httpx."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from ragtune_common.state_paths import credentials_path
from ragtune_eval.client import VECTOR_STORE_PREFIX


class CliError(Exception):
    """A failure to show the user as one line (no traceback)."""


def state_dir() -> Path:
    return Path(os.environ.get("RAGTUNE_STATE_DIR", ".ragtune")).expanduser().resolve()


def base_url() -> str:
    if url := os.environ.get("RAGTUNE_BASE_URL"):
        return url.rstrip("/")
    return f"http://127.0.0.1:{os.environ.get('RAGTUNE_GATEWAY_PORT', '8080')}"


def api_key() -> str:
    """``RAGTUNE_API_KEY``, else the default tenant's key that the gateway wrote on first start."""
    if key := os.environ.get("RAGTUNE_API_KEY"):
        return key
    path = credentials_path(state_dir())
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))["api_key"])
    except (OSError, ValueError, KeyError):
        raise CliError(f"no API key: set RAGTUNE_API_KEY, or start ragtune (`ragtune up`) to create {path}") from None


class Gateway:
    def __init__(self, url: str | None = None, key: str | None = None, timeout_s: float = 600.0) -> None:
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
                error = response.json()["error"]
                param = f" ({error['param']})" if error.get("param") else ""
                message = f"{error['message']}{param}"
            except (ValueError, KeyError, TypeError):
                message = response.text[:300]
            raise CliError(f"HTTP {response.status_code}: {message}")
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

    def find_or_create_store(self, name_or_id: str) -> dict[str, Any]:
        after = ""
        while True:
            page = self.request("GET", "/v1/vector_stores", params={"limit": 100, "after": after})
            for store in page["data"]:
                if name_or_id in (store["id"], store["name"]):
                    return dict(store)
            if not page["has_more"]:
                break
            after = page["last_id"]
        if name_or_id.startswith(VECTOR_STORE_PREFIX):
            raise CliError(f"no vector store {name_or_id}")
        return dict(self.request("POST", "/v1/vector_stores", json={"name": name_or_id}))
