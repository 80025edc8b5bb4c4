"""``/docs`` and ``/redoc`` work on a machine without internet: every script, style and icon the
pages load comes from the gateway itself (a CDN link made /docs a blank page offline)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from ragtune_gateway.app import create_app
from ragtune_gateway.settings import GatewaySettings

ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|(?:url|specUrl)\s*:\s*["']([^"']+)["']""")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    settings = GatewaySettings(state_dir=tmp_path_factory.mktemp("state"))
    return TestClient(create_app(settings))  # no lifespan: the pages need no database


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_local_assets(client: TestClient, page: str) -> None:
    html = client.get(page)
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    assets = [a or b for a, b in ASSET.findall(html.text)]
    assert assets, "the page names no assets at all"
    external = [a for a in assets if re.match(r"^(https?:)?//", a)]
    assert not external, f"{page} loads assets from the network: {external}"
    for asset in assets:
        if asset.endswith("openapi.json"):
            continue
        reply = client.get(asset)
        assert reply.status_code == 200 and len(reply.content) > 1000, asset


def test_swagger_bundle_is_the_real_script(client: TestClient) -> None:
    html = client.get("/docs").text
    script = next(a for a, _ in ASSET.findall(html) if a.endswith("swagger-ui-bundle.js"))
    body = client.get(script)
    assert "javascript" in body.headers["content-type"] and b"SwaggerUIBundle" in body.content
