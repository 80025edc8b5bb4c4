"""The web console at /ui in a real headless Chromium against the whole stack: sign in with a key,
upload files into a store (one completed, one failed with its reason and a retry), test retrieval,
ask with RAG and open a citation (its passage highlighted in the document), start a tiny
fine-tuning job and watch its loss curve draw points, then cancel it; and /docs renders Swagger UI
from the package's own assets (no CDN). With RAGTUNE_SCREENSHOTS=<dir> the same run saves a PNG of
each page there (``make screenshots``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.e2e.browser import Console, driver
from tests.e2e.conftest import HANDBOOK, make_tenant
from tests.e2e.test_fine_tuning import TRAINING

__all__ = ["driver"]  # the fixture, used by name

pytestmark = pytest.mark.asyncio(loop_scope="session")

BROKEN_PDF = b"this is not a PDF at all"
INVALID_DATASET = '{"messages": [{"role": "user", "content": "hi"}]}\nnot json\n'


async def test_pages_carry_the_security_headers(gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url) as http:
        page = await http.get("/ui/")  # no key needed to load the console itself
        script = await http.get("/ui/js/app.js")
    assert page.status_code == 200 and '<script type="module" src="js/app.js">' in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")


def knowledge_and_playground(console: Console, key: str, files: Path) -> None:
    console.driver.get(f"{console.base_url}/ui/")
    console.find("#api-key")
    console.snap("sign-in")
    console.sign_in(key)
    console.open("knowledge")
    console.fill("#kn-store-name", "handbook")
    console.find("#kn-create").click()
    console.find("#kn-files")
    (files / "handbook.txt").write_text(HANDBOOK, encoding="utf-8")
    (files / "broken.pdf").write_bytes(BROKEN_PDF)
    console.find("#kn-files").send_keys(f"{files / 'handbook.txt'}\n{files / 'broken.pdf'}")
    console.find("#kn-upload").click()
    console.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#kn-batch tbody tr")) == 2, message="batch files")
    console.find("#kn-batch [data-status=completed]")
    failed = console.find("#kn-batch [data-status=failed]").find_element(By.XPATH, "./ancestor::tr")
    assert "broken.pdf" in failed.text and failed.find_element(By.CSS_SELECTOR, ".error").text.strip()
    assert failed.find_element(By.CSS_SELECTOR, "button.retry").is_displayed()
    assert [p.get_attribute("value") for p in console.find_all("#kn-uploads progress")] == ["1", "1"]
    console.until(lambda d: "handbook.txt" in d.find_element(By.ID, "kn-store-files").text, message="file in the store")

    console.fill("#kn-query", "how many days of paid leave")
    console.find("#kn-search").click()
    best = console.find("#kn-results .passage[data-rank='1']")
    assert "27 days" in best.text and "vector rank" in best.text and "score" in best.text
    console.snap("knowledge")

    page = console.open("playground")
    question = console.find("#pg-question")
    assert console.find("#pg-rag").is_selected()
    assert "handbook" in Select(console.find("#pg-store")).first_selected_option.text
    question.send_keys("How many days of paid leave does an employee get?")
    console.find("#pg-send").click()
    answer = console.find("#pg-answer")
    console.until(lambda d: answer.get_attribute("data-state") in ("done", "failed"), 300, "the streamed answer")
    assert answer.get_attribute("data-state") == "done" and answer.text.strip()
    citation = console.find("#pg-citations button.citation")
    assert "handbook.txt" in citation.text
    citation.click()
    mark = console.find("#doc-viewer mark#passage")
    document = console.find("#doc-viewer").text
    assert mark.text.strip() and mark.text.strip() in HANDBOOK and document.strip() == HANDBOOK.strip()
    assert page.is_displayed()
    console.snap("playground")
    assert not console.errors()


def fine_tuning(console: Console, key: str, files: Path) -> None:
    console.sign_in(key)
    console.open("fine-tuning")
    (files / "invalid.jsonl").write_text(INVALID_DATASET, encoding="utf-8")
    console.find("#ft-dataset").send_keys(str(files / "invalid.jsonl"))
    console.find("#ft-upload").click()
    lines = [li.text for li in console.find("#ft-report").find_elements(By.TAG_NAME, "li")]
    assert any(x.startswith("line 1:") for x in lines) and any(x.startswith("line 2:") for x in lines), lines
    (files / "colours.jsonl").write_text(TRAINING, encoding="utf-8")
    console.find("#ft-dataset").clear()
    console.find("#ft-dataset").send_keys(str(files / "colours.jsonl"))
    console.find("#ft-upload").click()
    console.until(lambda d: "Accepted" in d.find_element(By.ID, "ft-upload-outcome").text, message="upload")
    console.until(lambda d: "colours.jsonl" in Select(d.find_element(By.ID, "ft-file")).first_selected_option.text)
    for css, value in (
        ("#ft-epochs", "3"),
        ("#ft-batch", "2"),
        ("#ft-lr", "10"),
        ("#ft-rank", "8"),
        ("#ft-seq", "128"),
    ):
        console.fill(css, value)
    console.find("#ft-create").click()
    console.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#ft-chart circle.point")) >= 2, 420, "loss points")
    console.snap("fine-tuning")
    if console.find("#ft-cancel").is_enabled():
        console.find("#ft-cancel").click()
    console.until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#ft-detail .status").text in ("cancelled", "succeeded"), 120
    )
    assert not console.errors()


def other_pages_and_docs(console: Console, key: str, base_url: str) -> None:
    console.sign_in(key)
    console.open("models")
    console.find("#page-models table tbody tr")
    console.snap("models")
    console.open("evaluations")
    console.find("#ev-start")
    console.snap("evaluations")
    assert not console.errors()
    console.driver.get(f"{base_url}/docs")
    console.find(".swagger-ui .opblock", 60)
    assert console.driver.execute_script("return typeof SwaggerUIBundle") == "function"
    assert not [e for e in console.errors() if "SwaggerUIBundle" in e]


async def test_knowledge_and_playground(
    driver: Chrome, admin: httpx.AsyncClient, gateway_url: str, tmp_path: Path
) -> None:
    tenant = await make_tenant(admin, gateway_url)
    try:
        await asyncio.to_thread(knowledge_and_playground, Console(driver, gateway_url), tenant.key, tmp_path)
    finally:
        await tenant.http.aclose()
        await tenant.client.close()


async def test_fine_tuning_loss_curve(
    driver: Chrome, admin: httpx.AsyncClient, gateway_url: str, tmp_path: Path
) -> None:
    tenant = await make_tenant(admin, gateway_url)
    try:
        await asyncio.to_thread(fine_tuning, Console(driver, gateway_url), tenant.key, tmp_path)
    finally:
        await tenant.http.aclose()
        await tenant.client.close()


async def test_models_evaluations_and_offline_docs(driver: Chrome, admin: httpx.AsyncClient, gateway_url: str) -> None:
    tenant = await make_tenant(admin, gateway_url)
    try:
        await asyncio.to_thread(other_pages_and_docs, Console(driver, gateway_url), tenant.key, gateway_url)
    finally:
        await tenant.http.aclose()
        await tenant.client.close()
