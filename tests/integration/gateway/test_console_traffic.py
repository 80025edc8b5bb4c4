"""The console's Traffic page in a real headless Chromium against a real gateway over real PostgreSQL
(no model: completions are recorded through the service the chat route calls once the generator has
answered): filter stored completions by model, metadata, rating and time; open one whole (messages,
answer, citations); rate it and correct its answer (short in metadata, long in ragtune's field), as
the feedback history then shows; delete one. With RAGTUNE_SCREENSHOTS=<dir> it saves traffic.png."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from tests.e2e.browser import Console, driver
from tests.integration.gateway.conftest import GatewayFactory
from tests.integration.gateway.test_stored_completions import answer, insert_aged, runtime_of

__all__ = ["driver"]  # the fixture, used by name

LONG_CORRECTION = "Twenty-eight days of paid leave a year, after the first six months. " * 10


def listed(console: Console) -> list[str]:
    """The ids of the completions the list shows, top to bottom."""
    return [str(tr.get_attribute("data-key")) for tr in console.find_all("#tr-list tbody tr")]


def filter_by(console: Console, **values: str) -> list[str]:
    """Fill the filter form (model, metadata, feedback, from; the others empty), filter, and wait for the list."""
    for name in ("model", "metadata", "feedback", "from", "to"):
        element = console.find(f"#tr-{name}")
        # set as a user's typing or choice leaves it (typed datetime-local text depends on the locale)
        console.driver.execute_script("arguments[0].value = arguments[1]", element, values.get(name, ""))
    console.find("#tr-search").click()  # marks the list loading before the click returns
    console.until(lambda d: d.find_element(By.ID, "tr-list").get_attribute("data-state") == "ready", message="list")
    return listed(console)


def text_of_id(console: Console) -> str:
    """The id of the completion the detail shows (empty while it is redrawn)."""
    try:
        found = console.driver.find_elements(By.ID, "tr-completion")
        return str(found[0].get_attribute("data-id")) if found else ""
    except StaleElementReferenceException:
        return ""


def history_rows(console: Console) -> int:
    return len(console.find_all("#tr-history tbody tr"))


def browse_rate_correct(console: Console, key: str, grounded: str, tuned: str, pay: str, old: str) -> None:
    console.sign_in(key)
    console.open("traffic")
    console.until(lambda d: len(listed(console)) == 4, message="four stored completions")
    assert listed(console) == [pay, tuned, grounded, old]  # newest first
    row = console.find(f"#tr-list tr[data-key='{grounded}']").text
    assert "How many days of leave?" in row and "27 days." in row and "base" in row

    assert filter_by(console, model="ft:base:colours") == [tuned]
    assert filter_by(console, metadata="topic=leave") == [grounded]
    a_day_ago = (datetime.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    assert filter_by(console, **{"from": a_day_ago}) == [pay, tuned, grounded]  # the 3-day-old one is out
    filter_by(console, metadata="topic")
    assert "key=value" in console.find("#tr-filter .error").text
    assert filter_by(console) == [pay, tuned, grounded, old]

    console.find(f"#tr-list tr[data-key='{grounded}']").click()
    console.until(lambda d: text_of_id(console) == grounded)
    messages = console.find("#tr-messages").text
    assert "Be brief." in messages and "How many days of leave?" in messages
    assert console.find("#tr-answer").text == "27 days."
    assert "handbook.txt" in console.find("#tr-citations").text and "Leave policy" in console.find("#tr-citations").text
    assert "topic: leave" in console.find("#tr-metadata-shown").text
    assert "No feedback yet." in console.find("#tr-history").text

    console.find("#tr-rate-bad").click()
    console.until(lambda d: "Rated bad." in console.text("#tr-outcome"), message="rated")
    assert history_rows(console) == 1 and console.find("#tr-rate-bad").get_attribute("aria-pressed") == "true"
    console.fill("#tr-correction", "28 days.")
    console.find("#tr-save-correction").click()
    console.until(lambda d: "Correction saved." in console.text("#tr-outcome"), message="corrected")
    assert history_rows(console) == 2 and "28 days." in console.find("#tr-history").text
    assert "bad ✎" in console.find(f"#tr-list tr[data-key='{grounded}'] .rating").text
    console.snap("traffic")

    console.find(f"#tr-list tr[data-key='{pay}']").click()
    console.until(lambda d: text_of_id(console) == pay)
    console.find("#tr-rate-good").click()
    console.until(lambda d: "Rated good." in console.text("#tr-outcome"))
    console.driver.execute_script("arguments[0].value = arguments[1]", console.find("#tr-correction"), LONG_CORRECTION)
    console.find("#tr-save-correction").click()
    console.until(lambda d: "Correction saved." in console.text("#tr-outcome"))
    assert console.find("#tr-correction").get_attribute("value") == LONG_CORRECTION.strip()

    assert filter_by(console, feedback="bad") == [grounded]
    assert filter_by(console, feedback="good") == [pay]
    assert filter_by(console, feedback="none") == [tuned, old]

    console.find(f"#tr-list tr[data-key='{old}']").click()
    console.until(lambda d: text_of_id(console) == old)
    console.find("#tr-delete").click()
    console.driver.switch_to.alert.accept()
    console.find("#tr-deleted")
    assert listed(console) == [tuned]
    assert not console.errors()


async def test_traffic_page(start_gateway: GatewayFactory, driver: Chrome) -> None:
    gateway = await start_gateway()
    runtime = runtime_of(gateway)
    tenant, _, key = await gateway.new_tenant()
    old = await insert_aged(runtime, tenant, days=3)
    grounded, _ = await answer(runtime, tenant, metadata={"topic": "leave"}, grounded=True)
    tuned, _ = await answer(runtime, tenant, model="ft:base:colours", text="Blue.")
    pay, _ = await answer(runtime, tenant, metadata={"topic": "pay"}, text="On the 25th.")
    console = Console(driver, gateway.url, wait_s=30)
    await asyncio.to_thread(browse_rate_correct, console, key, grounded, tuned, pay, old)

    async with gateway.client(key) as client:
        rated = (await client.get(f"/v1/chat/completions/{grounded}")).json()
        long = (await client.get(f"/v1/chat/completions/{pay}")).json()
        gone = await client.get(f"/v1/chat/completions/{old}")
    assert rated["metadata"] == {"topic": "leave", "feedback": "bad", "correction": "28 days."}
    assert rated["correction"] == "28 days."
    assert long["metadata"] == {"topic": "pay", "feedback": "good"}  # too long for metadata: ragtune's field
    assert long["correction"] == LONG_CORRECTION.strip()
    assert gone.status_code == 404
