"""``ragtune distill``, ``ragtune distillations`` and ``ragtune finetune FILE_ID`` against a real gateway
over real PostgreSQL with a real trainer (it validates the distilled file line by line) and no
generator: a file from rated and corrected traffic, its held-out share, a job started on it; and each
failure as one line on stderr, exit 1."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from tests.fixtures.gateway import Gateway
from tests.integration.gateway.loop_stack import trainer_gateway
from tests.integration.gateway.test_cli import one_line_error, ragtune, succeeded, user
from tests.integration.gateway.test_distillations import runtime_of, traffic

__all__ = ["trainer_gateway"]  # the fixture, used by name

QUESTIONS = ("I lost my card", "my card was stolen", "where is my new card", "card not arriving", "cash withdrawal fee")


async def test_distill_list_and_train(trainer_gateway: Gateway, tmp_path: Path) -> None:
    gateway = trainer_gateway
    runtime = runtime_of(gateway)
    tenant, _, key = await gateway.new_tenant()
    env = user(gateway.url, key, tmp_path)
    made = [await traffic(runtime, tenant, q, "card_arrival", app="bank") for q in QUESTIONS]
    await traffic(runtime, tenant, "rude question", "rude answer", app="bank", feedback="bad")  # left out
    await traffic(runtime, tenant, "other app", "x", app="shop")
    succeeded(await ragtune(env, "completions", "rate", made[1], "bad"))
    succeeded(await ragtune(env, "completions", "correct", made[1], "lost_or_stolen_card"))
    assert "no distillations yet" in succeeded(await ragtune(env, "distillations"))

    out = succeeded(await ragtune(env, "distill", "-m", "app=bank", "--holdout", "0.2", "--since", "1d"))
    found = re.search(r"distillation (distill_\w+): file (file-\w+) \(", out)
    assert found, out
    distillation_id, file_id = found.groups()
    counts = re.search(r"matched 6: 4 training line\(s\) \(([01]) corrected, 0 from the teacher\), 1 held out", out)
    assert counts, out  # 5 distinct prompts (the rude one rejected), one of them held out
    assert "1 rejected (bad, no correction)" in out and f"ragtune finetune {file_id} --watch" in out
    listed = succeeded(await ragtune(env, "distillations"))
    assert distillation_id in listed and file_id in listed
    shown = succeeded(await ragtune(env, "distillations", distillation_id))
    (held_out,) = re.findall(r"held out: (chatcmpl-\w+)", shown)
    assert held_out in made and "filter: app=bank, since " in shown
    assert counts.group(1) == ("0" if held_out == made[1] else "1")  # the correction trains unless held out
    assert file_id in succeeded(await ragtune(env, "files", "list", "--purpose", "fine-tune"))

    started = succeeded(await ragtune(env, "finetune", file_id, "--epochs", "1"))
    job_id = re.search(r"job (ftjob-\w+) \w+ \(training file " + file_id, started)
    assert job_id, started
    async with gateway.client(key) as http:  # no need to train it here
        cancelled = await http.post(f"/v1/fine_tuning/jobs/{job_id.group(1)}/cancel")
    assert cancelled.status_code == 200, cancelled.text


async def test_distill_errors_are_one_line(trainer_gateway: Gateway, tmp_path: Path) -> None:
    gateway = trainer_gateway
    tenant, _, key = await gateway.new_tenant()
    env = user(gateway.url, key, tmp_path)
    await traffic(runtime_of(gateway), tenant, "I lost my card", "card_arrival", app="bank")
    nothing = one_line_error(await ragtune(env, "distill", "-m", "app=loans"))
    assert nothing.startswith("error: HTTP 400: ") and "matches no" in nothing and nothing.endswith("(filter)"), nothing
    meh = one_line_error(await ragtune(env, "distill", "--feedback", "meh"))
    assert meh.startswith("error: HTTP 400: ") and "(filter.feedback" in meh, meh
    assert "--since takes a date" in one_line_error(await ragtune(env, "distill", "--since", "yesterday"))
    assert "--teacher-url needs --teacher" in one_line_error(await ragtune(env, "distill", "--teacher-url", "http://x"))
    assert "HTTP 404" in one_line_error(await ragtune(env, "distillations", "distill_nothing"))
    async with gateway.client(key) as http:
        assert (await http.get("/v1/files")).json()["data"] == []  # nothing half-written


def test_moments_and_filters() -> None:
    from ragtune_eval.cli.distill import filter_text, moment

    now = datetime(2026, 12, 6, 12, 0)
    assert moment("2d", "--since", now) == int(datetime(2026, 12, 4, 12, 0).timestamp())
    assert moment("90m", "--since", now) == int(datetime(2026, 12, 6, 10, 30).timestamp())
    assert moment("2026-12-01 14:30", "--since") == int(datetime(2026, 12, 1, 14, 30).timestamp())
    assert filter_text({}) == "everything"
    chosen = {"model": "ft:support", "metadata": {"app": "bank"}, "feedback": ["bad", "none"], "limit": 50}
    assert filter_text(chosen) == "model ft:support, app=bank, feedback bad|none, newest 50"
