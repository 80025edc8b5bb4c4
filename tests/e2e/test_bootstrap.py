"""First start without an admin key (``make run``): an admin key and a "default" tenant with a key
are generated once into ``<state_dir>/gateway/credentials.json`` (0600) and reused afterwards."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from ragtune_gateway.runtime import GatewayRuntime
from ragtune_gateway.settings import GatewaySettings

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_credentials_are_generated_once(e2e_database_url: str, tmp_path: Path) -> None:
    settings = GatewaySettings(database_url=e2e_database_url, state_dir=tmp_path, admin_key=None)
    runtime = GatewayRuntime(settings)
    await runtime.start()
    try:
        path = settings.credentials_path
        saved = json.loads(path.read_text())
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert runtime.admin_key == saved["admin_key"] and saved["tenant"] == "default"
        assert await runtime.tenant_for_key(saved["api_key"]) == "default"
    finally:
        await runtime.close()
    again = GatewayRuntime(settings)
    await again.start()
    try:
        assert again.admin_key == saved["admin_key"]
    finally:
        await again.close()
