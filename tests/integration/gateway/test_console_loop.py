"""The console's Distill & promote page in a real headless Chromium against a real gateway over real
PostgreSQL with a real trainer and no generator (tests/integration/gateway/loop_stack.py): a dataset
built from rated and corrected traffic with a held-out share (and a filter matching nothing refused
on the page), a fine-tuning job started on it and cancelled, the evaluation step waiting for a
succeeded job, and an alias rolled back, recorded among its promotions. Evaluating and promoting from
runs need a generator: tests/e2e (the loop through the SDK) covers the routes. With
RAGTUNE_SCREENSHOTS=<dir> it saves loop-rollback.png."""

from __future__ import annotations

import asyncio

from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.e2e.browser import Console, driver
from tests.fixtures.gateway import Gateway
from tests.integration.gateway.loop_stack import trainer_gateway
from tests.integration.gateway.test_distillations import runtime_of, traffic

__all__ = ["driver", "trainer_gateway"]  # the fixtures, used by name

BASE, FT_A, ALIAS = "SmolLM2-135M-Instruct", "ft:SmolLM2:a:ftjob-a", "ft:support"
SIGNIFICANT = {"value": 30.0, "low": 12.0, "high": 48.0, "level": 0.95, "questions": 40}
QUESTIONS = ("I lost my card", "my card was stolen", "where is my new card", "card not arriving", "cash withdrawal fee")


def text_of(console: Console, css: str) -> str:
    return str(console.find(css).text)


def click(console: Console, css: str) -> None:
    """Click ``css`` even while the page redraws the job it watches (the button is then a new one)."""

    def clicked(driver: WebDriver) -> bool:
        try:
            driver.find_element(By.CSS_SELECTOR, css).click()
        except (StaleElementReferenceException, NoSuchElementException):
            return False
        return True

    console.until(clicked, message=f"click {css}")


def distill_train_roll_back(console: Console, key: str) -> None:
    console.sign_in(key)
    console.open("loop")
    console.until(lambda d: "No dataset yet." in console.text("#lp-list"), message="empty list")
    console.fill("#lp-metadata", "app=loans")
    console.find("#lp-build").click()
    console.until(lambda d: "matches no" in console.text("#lp-error"), message="refused filter")

    console.fill("#lp-metadata", "app=bank")
    console.fill("#lp-holdout", "0.2")
    console.find("#lp-build").click()
    console.until(lambda d: d.find_elements(By.ID, "lp-counts"), message="the dataset")
    counts = text_of(console, "#lp-counts")
    assert counts.startswith("4 training, 1 held out (6 matched") and "1 rejected" in counts, counts
    assert "file-" in text_of(console, "#lp-list")
    assert "Once the job has succeeded" in text_of(console, "#lp-eval-waiting")

    console.fill("#lp-epochs", "1")
    console.find("#lp-train").click()
    console.find("#lp-job [data-status]")
    click(console, "#lp-cancel-job")
    console.until(lambda d: console.text("#lp-job [data-status]") == "cancelled", 120)
    assert "ftjob-" in text_of(console, "#lp-job")

    console.fill("#lp-alias", ALIAS)
    console.find("#lp-show-alias").click()
    console.until(lambda d: console.text("#lp-holder") == FT_A, message="the holder")
    assert not console.find("#lp-promote").is_enabled()  # no completed run of a candidate
    console.find("#lp-rollback").click()
    console.until(lambda d: console.text("#lp-holder") == BASE, message="rolled back")
    assert "rollback" in text_of(console, "#lp-outcome") and BASE in text_of(console, "#lp-outcome")
    assert len(console.find_all("#lp-history tbody tr")) == 3
    console.snap("loop-rollback")
    assert not console.errors()


async def test_loop_page(trainer_gateway: Gateway, driver: Chrome) -> None:
    gateway = trainer_gateway
    runtime = runtime_of(gateway)
    tenant, _, key = await gateway.new_tenant()
    made = [await traffic(runtime, tenant, q, "card_arrival", app="bank") for q in QUESTIONS]
    await traffic(runtime, tenant, "rude question", "rude answer", app="bank", feedback="bad")
    runtime.base_model = BASE  # as the generator's ListModels would tell it
    runtime.owned_models.add((tenant, FT_A))
    async with gateway.client(key) as http:
        corrected = await http.post(
            f"/v1/chat/completions/{made[1]}", json={"metadata": {"app": "bank", "correction": "lost_or_stolen_card"}}
        )
        assert corrected.status_code == 200, corrected.text
        promotions = f"/v1/aliases/{ALIAS}/promotions"
        serving = await http.post(promotions, json={"candidate": BASE, "candidate_score": 0, "metric": "pass_rate"})
        assert serving.status_code == 200, serving.text
        moved = await http.post(
            promotions,
            json={
                "candidate": FT_A,
                "candidate_score": 80.0,
                "holder": BASE,
                "holder_score": 50.0,
                "metric": "pass_rate",
                "comparison": SIGNIFICANT,
            },
        )
        assert moved.status_code == 200 and moved.json()["promoted"], moved.text

    await asyncio.to_thread(distill_train_roll_back, Console(driver, gateway.url, wait_s=60), key)

    async with gateway.client(key) as http:
        (distillation,) = (await http.get("/v1/distillations")).json()["data"]
        (job,) = (await http.get("/v1/fine_tuning/jobs")).json()["data"]
        history = (await http.get(f"/v1/aliases/{ALIAS}/promotions")).json()["data"]
    assert distillation["filter"] == {"metadata": {"app": "bank"}, "feedback": ["good", "bad", "none"]}
    assert job["training_file"] == distillation["file_id"] and job["status"] == "cancelled"
    assert [(p["candidate"], p["holder"]) for p in history][-1] == (BASE, FT_A)
