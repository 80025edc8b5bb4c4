"""The traffic loop in the console, in a real headless Chromium against the whole stack (generator,
trainer, retriever, gateway): intent traffic answered through an alias serving the base model, stored
and corrected (through the official client, as users' apps would); then on the Distill & promote page:
a dataset from the corrected traffic with a held-out share, a LoRA job started and watched to its end,
the adapter and the alias's holder evaluated on the held-out completions (the comparison shown), the
adapter offered for the alias (moved only on a significant improvement) and, if it moved, rolled
back. With RAGTUNE_SCREENSHOTS=<dir> it saves loop.png (the whole loop)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.e2e.browser import Console, driver
from tests.e2e.conftest import make_tenant
from tests.e2e.test_traffic_loop import APP, INTENTS, SYSTEM

__all__ = ["driver"]  # the fixture, used by name
ALIAS = "ft:support"


def reopen(console: Console) -> None:
    """Back to the page (the tab keeps its key), as a user returning to it."""
    console.driver.get(f"{console.base_url}/ui/#loop")
    console.find("#page-loop")


def leave(console: Console) -> None:
    """Away from the page while the machine is busy training or generating (a starved browser stops
    answering the driver); what happened meanwhile is the server's, and the page shows it on return."""
    console.driver.get("about:blank")


def distill_and_train(console: Console, key: str) -> None:
    console.sign_in(key)
    console.open("loop")
    console.find("#lp-build")
    console.fill("#lp-model", ALIAS)
    console.fill("#lp-metadata", "app=loop")
    console.find("#lp-rating-good").click()  # only the corrected (bad) answers
    console.find("#lp-rating-none").click()
    console.fill("#lp-holdout", "0.4")
    console.fill("#lp-seed", "1")
    console.find("#lp-build").click()
    console.until(lambda d: d.find_elements(By.ID, "lp-counts"), message="the dataset")
    assert console.find("#lp-counts").text.startswith("9 training, 6 held out (15 matched, 9 corrected")
    for css, value in (("#lp-epochs", "6"), ("#lp-batch", "4"), ("#lp-lr", "10")):
        console.fill(css, value)
    console.find("#lp-train").click()
    console.until(lambda d: console.text("#lp-job [data-status]"), message="the job")
    leave(console)


def evaluate(console: Console) -> str:
    """The adapter the page shows, then its evaluation started."""
    reopen(console)
    console.until(lambda d: console.text("#lp-job [data-status]") == "succeeded", message="the finished job")
    adapter = console.find("#lp-adapter").text
    console.fill("#lp-eval-alias", ALIAS)
    Select(console.find("#lp-grader")).select_by_value("contains")
    console.fill("#lp-max-tokens", "8")
    console.find("#lp-evaluate").click()
    console.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#lp-runs tbody tr")) == 2, message="two runs")
    leave(console)
    return str(adapter)


def promote_and_roll_back(console: Console, adapter: str, base_model: str) -> bool:
    """The comparison, the promotion offered: whether the alias moved (then rolled back)."""
    reopen(console)
    runs = "#lp-runs tr[data-key='{}'] [data-status]"
    both = ("holder", "candidate")
    console.until(lambda d: all(console.text(runs.format(r)) == "completed" for r in both), message="the runs")
    console.until(lambda d: "significant" in console.text("#lp-verdict"), message="the comparison")
    assert console.find("#lp-alias").get_attribute("value") == ALIAS
    console.find("#lp-promote").click()
    console.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#lp-outcome [data-promoted]"), message="the decision")
    moved = console.find("#lp-outcome [data-promoted]").get_attribute("data-promoted") == "true"
    console.until(lambda d: console.text("#lp-holder") == (adapter if moved else base_model))
    console.snap("loop")
    if moved:
        console.find("#lp-rollback").click()
        console.until(lambda d: console.text("#lp-holder") == base_model, message="rolled back")
    assert not console.errors()
    return moved


async def _until(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    for _ in range(int(timeout_s)):
        try:
            if await check():
                return
        except httpx.TransportError:  # a kept-alive connection the loaded gateway closed meanwhile: ask again
            pass
        await asyncio.sleep(1)
    raise AssertionError(f"{what} did not finish in {timeout_s} s")


async def test_the_loop_in_the_console(
    driver: Chrome, admin: httpx.AsyncClient, gateway_url: str, base_model: str
) -> None:
    tenant = await make_tenant(admin, gateway_url)
    try:
        stored = await admin.post(f"/v1/admin/tenants/{tenant.id}/settings", json={"store_completions": True})
        assert stored.status_code == 200, stored.text
        serving = await tenant.http.post(
            f"/v1/aliases/{ALIAS}/promotions",
            json={"candidate": base_model, "candidate_score": 0, "metric": "pass_rate"},
        )
        assert serving.status_code == 200, serving.text
        for intent, queries in INTENTS.items():
            for query in queries:
                answer = await tenant.client.chat.completions.create(
                    model=ALIAS,
                    messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": query}],
                    max_tokens=8,
                    temperature=0,
                    metadata=APP,
                )
                await tenant.client.chat.completions.update(
                    answer.id, metadata={**APP, "feedback": "bad", "correction": intent}
                )

        console = Console(driver, gateway_url)
        await asyncio.to_thread(distill_and_train, console, tenant.key)

        async def job_done() -> bool:
            jobs = (await tenant.http.get("/v1/fine_tuning/jobs")).json()["data"]
            return bool(jobs) and jobs[0]["status"] in ("succeeded", "failed", "cancelled")

        await _until(job_done, 900, "the job")
        adapter = await asyncio.to_thread(evaluate, console)

        async def runs_done() -> bool:
            (ev,) = (await tenant.http.get("/v1/evals")).json()["data"]
            runs = (await tenant.http.get(f"/v1/evals/{ev['id']}/runs")).json()["data"]
            return len(runs) == 2 and all(r["status"] not in ("queued", "in_progress") for r in runs)

        await _until(runs_done, 600, "the eval runs")
        moved = await asyncio.to_thread(promote_and_roll_back, console, adapter, base_model)

        history = (await tenant.http.get(f"/v1/aliases/{ALIAS}/promotions")).json()["data"]
        offered = [p for p in history if p["candidate"] == adapter]
        assert len(offered) == 1 and offered[0]["promoted"] is moved and offered[0]["holder"] == base_model
        assert offered[0]["evaluation"]["holder_run_id"]  # decided against the holder's run on the same items
        assert (await tenant.http.get(f"/v1/aliases/{ALIAS}")).json()["model"] == base_model
    finally:
        await tenant.http.aclose()
        await tenant.client.close()
