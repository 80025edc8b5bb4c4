"""The console's files as the gateway serves them (no browser needed): /ui answers without a key
and with its security headers, every module a page imports is in the package, and no script builds
markup from strings (API text is always rendered as text)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from ragtune_gateway.app import create_app
from ragtune_gateway.settings import GatewaySettings
from ragtune_gateway.ui import CONSOLE_DIR

IMPORT = re.compile(r"""^import\s.*?\sfrom\s+"(\.{1,2}/[^"]+)";""", re.MULTILINE | re.DOTALL)
MARKUP_SINKS = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function")
SCRIPTS = sorted(CONSOLE_DIR.rglob("*.js"))


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    settings = GatewaySettings(admin_key=SecretStr("a" * 40), state_dir=tmp_path_factory.mktemp("state"))
    return TestClient(create_app(settings))  # no lifespan: static files need no database


def test_the_console_loads_without_a_key_and_with_its_headers(client: TestClient) -> None:
    moved = client.get("/ui", follow_redirects=False)
    assert moved.status_code in (307, 308) and moved.headers["location"].endswith("/ui/")
    for path, kind in (("/ui/", "text/html"), ("/ui/js/app.js", "text/javascript"), ("/ui/style.css", "text/css")):
        answer = client.get(path)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(kind), path
        policy = answer.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy and "'unsafe" not in policy
        assert answer.headers["x-content-type-options"] == "nosniff" and answer.headers["x-frame-options"] == "DENY"


def test_the_page_has_no_inline_script_and_nothing_remote() -> None:
    html = (CONSOLE_DIR / "index.html").read_text(encoding="utf-8")
    assert re.findall(r"<script[^>]*>", html) == ['<script type="module" src="js/app.js">']
    for path in [CONSOLE_DIR / "index.html", CONSOLE_DIR / "style.css", *SCRIPTS]:
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", path.read_text(encoding="utf-8")), path


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(CONSOLE_DIR)))
def test_modules_resolve_and_render_text_only(script: Path) -> None:
    source = script.read_text(encoding="utf-8")
    for target in IMPORT.findall(source):
        assert (script.parent / target).resolve().is_file(), f"{script.name} imports missing {target}"
    assert not [sink for sink in MARKUP_SINKS if sink in source], script.name
