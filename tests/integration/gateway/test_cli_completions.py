"""``ragtune completions`` against a real gateway over real PostgreSQL (no model: completions are
recorded through the service the chat route calls once the generator has answered): list with its
filters, show one whole, rate, correct (short in metadata, long in ragtune's field), delete; and each
failure as one line on stderr, exit 1."""

from __future__ import annotations

import asyncio
from pathlib import Path

from typer.testing import CliRunner

from ragtune_eval.cli.main import app
from tests.integration.gateway.conftest import GatewayFactory
from tests.integration.gateway.test_cli import one_line_error, ragtune, succeeded, user
from tests.integration.gateway.test_stored_completions import answer, runtime_of


async def test_list_show_rate_correct_delete(start_gateway: GatewayFactory, tmp_path: Path) -> None:
    gateway = await start_gateway()
    runtime = runtime_of(gateway)
    tenant, key_id, key = await gateway.new_tenant()
    env = user(gateway.url, key, tmp_path)
    assert "no stored completions (store: true keeps them)" in succeeded(await ragtune(env, "completions", "list"))
    first, _ = await answer(runtime, tenant, metadata={"topic": "leave"}, grounded=True)
    second, _ = await answer(runtime, tenant, model="ft:base:colours", text="Blue.")
    third, _ = await answer(runtime, tenant, metadata={"topic": "pay"}, text="On the 25th.")

    listed = succeeded(await ragtune(env, "completions", "list"))
    assert [line.split()[1] for line in listed.splitlines() if "chatcmpl" in line] == [third, second, first]
    assert "How many days of leave?" in listed and "On the 25th." in listed
    assert succeeded(await ragtune(env, "completions", "list", "--oldest-first", "--limit", "1")).count("chatcmpl") == 1
    by_model = succeeded(await ragtune(env, "completions", "list", "--model", "ft:base:colours"))
    assert second in by_model and first not in by_model and third not in by_model
    by_topic = succeeded(await ragtune(env, "completions", "list", "-m", "topic=leave"))
    assert first in by_topic and third not in by_topic
    assert "no stored completions match" in succeeded(await ragtune(env, "completions", "list", "-m", "topic=x"))

    assert f"{first} rated bad" in succeeded(await ragtune(env, "completions", "rate", first, "bad"))
    assert f"{first} corrected (8 characters)" in succeeded(
        await ragtune(env, "completions", "correct", first, "28 days.")
    )
    rated = succeeded(await ragtune(env, "completions", "list", "-m", "feedback=bad"))
    assert first in rated and "bad +correction" in rated and third not in rated
    shown = succeeded(await ragtune(env, "completions", "show", first))
    for line in ("[system] Be brief.", "[user] How many days of leave?", "[answer] 27 days.", "[correction] 28 days."):
        assert line in shown, shown
    assert "topic: leave" in shown and "feedback: bad" in shown  # rating kept the other metadata
    assert "[1] handbook.txt (0-12): Leave policy" in shown  # the grounded answer's citation
    history = [line for line in shown.splitlines() if key_id in line]
    assert len(history) == 2 and "bad" in history[0] and "28 days." in history[1], shown

    long = "Twenty-eight days. " * 40  # over a metadata value's 512 characters: ragtune's field
    corrected = await asyncio.to_thread(
        CliRunner().invoke, app, ["completions", "correct", third, "-"], input=long, env={"COLUMNS": "200", **env}
    )
    assert f"{third} corrected ({len(long.strip())} characters)" in succeeded(corrected)
    async with gateway.client(key) as client:
        got = (await client.get(f"/v1/chat/completions/{third}")).json()
    assert got["correction"] == long.strip() and got["metadata"] == {"topic": "pay"}
    assert "[correction] Twenty-eight days." in succeeded(await ragtune(env, "completions", "show", third))

    assert f"deleted {second}" in succeeded(await ragtune(env, "completions", "delete", second))
    gone = one_line_error(await ragtune(env, "completions", "show", second))
    assert gone.startswith("error: HTTP 404: ") and second in gone and gone.endswith("(completion_id)"), gone


async def test_one_line_errors(start_gateway: GatewayFactory, tmp_path: Path) -> None:
    gateway = await start_gateway()
    tenant, _, key = await gateway.new_tenant()
    env = user(gateway.url, key, tmp_path)
    known, _ = await answer(runtime_of(gateway), tenant)
    unknown = "chatcmpl-nothing"
    for command in (("show", unknown), ("rate", unknown, "good"), ("correct", unknown, "x"), ("delete", unknown)):
        refused = one_line_error(await ragtune(env, "completions", *command))
        assert refused.startswith("error: HTTP 404: ") and unknown in refused, (command, refused)
    meh = one_line_error(await ragtune(env, "completions", "rate", known, "meh"))
    assert meh.startswith("error: HTTP 400: ") and "good" in meh and meh.endswith("(metadata)"), meh
    assert "--metadata takes key=value, not 'topic'" in one_line_error(
        await ragtune(env, "completions", "list", "-m", "topic")
    )
    assert "the correction is empty" in one_line_error(await ragtune(env, "completions", "correct", known, " "))
    other_tenant_key = (await gateway.new_tenant())[2]  # another tenant's completion is not found
    assert "HTTP 404" in one_line_error(
        await ragtune(user(gateway.url, other_tenant_key, tmp_path), "completions", "show", known)
    )
    async with gateway.client(key) as client:
        kept = (await client.get(f"/v1/chat/completions/{known}")).json()
    assert kept["metadata"] == {}  # the refused rating changed nothing
