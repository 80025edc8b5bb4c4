"""The `ragtune` CLI's everyday commands (keys, tenants, stores, files) against a real gateway over real
PostgreSQL and the session's real retriever (no model needed): the happy paths, and each failure as
one line on stderr with a non-zero exit, never a traceback. Each test has tenants of its own."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path

from typer.testing import CliRunner, Result

from ragtune_eval.cli.main import app
from tests.integration.gateway.conftest import ADMIN_KEY, GatewayFactory


async def ragtune(env: dict[str, str], *args: str) -> Result:
    """The command run as a user would (in a worker thread: the gateway serves on this loop)."""
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), env={"COLUMNS": "200", **env})


def succeeded(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def one_line_error(result: Result) -> str:
    """The failure's one line (``error: ...``), after checking it exited non-zero without a traceback."""
    assert isinstance(result.exception, SystemExit), result.exception  # nothing escaped as a traceback
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def user(url: str, key: str, tmp_path: Path) -> dict[str, str]:
    """A user's environment: this gateway and key, and a state directory without credentials."""
    return {"RAGTUNE_BASE_URL": url, "RAGTUNE_API_KEY": key, "RAGTUNE_STATE_DIR": str(tmp_path / "no-state")}


async def test_keys_and_tenants(start_gateway: GatewayFactory, tmp_path: Path) -> None:
    gateway = await start_gateway()
    state = tmp_path / "cli-state"
    admin = {"RAGTUNE_BASE_URL": gateway.url, "RAGTUNE_ADMIN_KEY": ADMIN_KEY, "RAGTUNE_STATE_DIR": str(state)}
    tenant = f"cli-{uuid.uuid4().hex[:8]}"
    assert f"tenant {tenant} (Acme)" in succeeded(await ragtune(admin, "tenants", "create", "Acme", "--id", tenant))
    assert tenant in succeeded(await ragtune(admin, "tenants", "list"))

    created = succeeded(await ragtune(admin, "keys", "create", "--tenant", tenant))
    key_id = re.search(r"key (key_\w+) of tenant", created).group(1)  # type: ignore[union-attr]
    key = created.splitlines()[1]
    assert f"export RAGTUNE_API_KEY={key}" in created
    succeeded(await ragtune(user(gateway.url, key, tmp_path), "stores", "list"))  # the new key works
    listed = succeeded(await ragtune(admin, "keys", "list", "--tenant", tenant))
    assert key_id in listed and key not in listed

    assert f"revoked {key_id}" in succeeded(await ragtune(admin, "keys", "revoke", key_id, "--tenant", tenant))
    refused = one_line_error(await ragtune(user(gateway.url, key, tmp_path), "stores", "list"))
    assert refused == "error: HTTP 401: Incorrect API key provided.", refused

    # the admin key from the state directory the gateway writes on first start (`make run`)
    credentials = state / "gateway" / "credentials.json"
    credentials.parent.mkdir(parents=True)
    credentials.write_text(json.dumps({"admin_key": ADMIN_KEY, "tenant": "default", "api_key": "rt-unused"}))
    from_state = {k: v for k, v in admin.items() if k != "RAGTUNE_ADMIN_KEY"}
    assert key_id in succeeded(await ragtune(from_state, "keys", "list", "--tenant", tenant))

    # failures: a tenant's key is not the admin key, an unknown tenant or key, no admin key at all
    _, _, tenant_key = await gateway.new_tenant()
    as_tenant = {**admin, "RAGTUNE_ADMIN_KEY": tenant_key}
    assert "This route needs the admin key." in one_line_error(await ragtune(as_tenant, "keys", "list"))
    assert one_line_error(await ragtune(admin, "keys", "create", "--tenant", "nobody")) == (
        "error: HTTP 404: No tenant found with id 'nobody'."
    )
    unknown = one_line_error(await ragtune(admin, "keys", "revoke", "key_nothing", "--tenant", tenant))
    assert "HTTP 404" in unknown and "(key_id)" in unknown, unknown
    nothing = {**from_state, "RAGTUNE_STATE_DIR": str(tmp_path / "elsewhere")}
    assert "no admin key: set RAGTUNE_ADMIN_KEY" in one_line_error(await ragtune(nothing, "keys", "list"))


async def test_files_and_stores(start_gateway: GatewayFactory, tmp_path: Path) -> None:
    gateway = await start_gateway()
    _, _, key = await gateway.new_tenant()
    env = user(gateway.url, key, tmp_path)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "parking.md").write_text("# Parking\n\nThe staff car park opens at 6:30 and closes at 22:00.\n")
    (docs / "canteen[v2].txt").write_text("The canteen serves lunch from noon until two o'clock.\n")

    uploaded = succeeded(await ragtune(env, "files", "upload", str(docs / "canteen[v2].txt")))
    file_id = re.search(r"(file-\w+)\s+canteen\[v2\]\.txt", uploaded).group(1)  # type: ignore[union-attr]
    assert file_id in succeeded(await ragtune(env, "files", "list", "--purpose", "assistants"))
    copy = tmp_path / "copy.txt"
    assert str(copy) in succeeded(await ragtune(env, "files", "download", file_id, "-o", str(copy)))
    assert copy.read_text() == (docs / "canteen[v2].txt").read_text()
    assert "noon" in succeeded(await ragtune(env, "files", "download", file_id, "-o", "-"))
    assert "exists" in one_line_error(await ragtune(env, "files", "download", file_id, "-o", str(copy)))
    assert f"deleted {file_id}" in succeeded(await ragtune(env, "files", "delete", file_id))

    created = succeeded(await ragtune(env, "stores", "create", "handbook", str(docs)))
    store_id = re.search(r"(vs_\w+) \(handbook\): 2 file\(s\)", created).group(1)  # type: ignore[union-attr]
    listed = succeeded(await ragtune(env, "stores", "list"))
    assert re.search(rf"{store_id}\W+handbook\W+2\W", listed), listed
    in_store = succeeded(await ragtune(env, "stores", "files", "handbook"))
    assert "parking.md" in in_store and "completed" in in_store
    assert "canteen[v2].txt" in in_store  # brackets are text, not markup
    taken = one_line_error(await ragtune(env, "stores", "create", "handbook"))
    assert f"a vector store is named 'handbook' already ({store_id})" in taken
    assert f"deleted {store_id} (handbook)" in succeeded(await ragtune(env, "stores", "delete", "handbook"))
    ingested = succeeded(await ragtune(env, "ingest", str(docs / "parking.md"), "--store", "kb"))  # creates kb
    assert re.search(r"1 file\(s\) in vector store vs_\w+ \(kb\)", ingested), ingested
    assert "parking.md" in succeeded(await ragtune(env, "stores", "files", "kb"))
    succeeded(await ragtune(env, "stores", "delete", "kb"))

    # failures: an unknown id or name, a missing local file, a bad key, an unreachable gateway
    missing = one_line_error(await ragtune(env, "files", "delete", "file-0000"))
    assert missing.startswith("error: HTTP 404: ") and "file-0000" in missing, missing
    assert "HTTP 404" in one_line_error(await ragtune(env, "stores", "files", "vs_0000"))
    assert "no vector store named 'nowhere'" in one_line_error(await ragtune(env, "stores", "delete", "nowhere"))
    absent = tmp_path / "absent.md"
    assert f"no such file or directory: {absent}" in one_line_error(await ragtune(env, "files", "upload", str(absent)))
    bad_key = {**env, "RAGTUNE_API_KEY": "rt-wrong"}
    assert "HTTP 401: Incorrect API key provided." in one_line_error(await ragtune(bad_key, "files", "list"))
    down = {**env, "RAGTUNE_BASE_URL": "http://127.0.0.1:9/v1"}
    assert "cannot reach the gateway at http://127.0.0.1:9" in one_line_error(await ragtune(down, "stores", "list"))


async def test_a_tenant_at_its_store_quota_deletes_one(start_gateway: GatewayFactory, tmp_path: Path) -> None:
    gateway = await start_gateway(max_vector_stores_per_tenant=1)
    _, _, key = await gateway.new_tenant()
    env = user(gateway.url, key, tmp_path)
    doc = tmp_path / "doc.txt"
    doc.write_text("Quota test.\n")
    succeeded(await ragtune(env, "stores", "create", "first", str(doc)))
    full = one_line_error(await ragtune(env, "stores", "create", "second", str(doc)))
    assert full.startswith("error: HTTP 409: This tenant already has 1 vector stores (the limit is 1"), full
    assert len(re.findall(r"file-\w+", succeeded(await ragtune(env, "files", "list")))) == 1  # nothing uploaded
    assert "and 1 file(s)" in succeeded(await ragtune(env, "stores", "delete", "first", "--with-files"))
    assert succeeded(await ragtune(env, "files", "list")).strip() == "no files"
    assert "(second): 1 file(s)" in succeeded(await ragtune(env, "stores", "create", "second", str(doc)))


async def test_a_refused_file_leaves_no_store_and_no_upload(start_gateway: GatewayFactory, tmp_path: Path) -> None:
    gateway = await start_gateway()
    _, _, key = await gateway.new_tenant()
    env = user(gateway.url, key, tmp_path)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a-good.txt").write_text("A readable document, added before the broken one.\n")
    (docs / "broken.pdf").write_bytes(b"not a pdf at all")
    refused = one_line_error(await ragtune(env, "stores", "create", "broken", str(docs)))
    assert refused.startswith(f"error: {docs / 'broken.pdf'}: HTTP 400: "), refused  # the file named
    assert "no vector stores yet" in succeeded(await ragtune(env, "stores", "list"))
    assert succeeded(await ragtune(env, "files", "list")).strip() == "no files"
    refused = one_line_error(await ragtune(env, "ingest", str(docs / "broken.pdf"), "--store", "kb"))
    assert refused.startswith(f"error: {docs / 'broken.pdf'}: HTTP 400: "), refused
    assert succeeded(await ragtune(env, "files", "list")).strip() == "no files"
