"""Headless Chromium driven by Selenium for the console's tests and ``make screenshots``: Debian's
``chromium`` and ``chromedriver`` (``make install`` installs them when it runs as root), no network
beyond the gateway under test. Every call here blocks: tests run it in a thread so the event loop
keeps serving the gateway."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver import Chrome
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

SCREENSHOTS_ENV = "RAGTUNE_SCREENSHOTS"  # a directory: the tests save a PNG of each console page there
MAX_SHOT_HEIGHT = 2000  # a page's screenshot is the whole page, up to this many pixels
CANDIDATES = {"browser": ("chromium", "chromium-browser", "google-chrome"), "driver": ("chromedriver",)}


def find_browser() -> tuple[str, str] | None:
    """(chromium, chromedriver) paths, or None when either is missing."""
    browser = next((p for name in CANDIDATES["browser"] if (p := shutil.which(name))), None)
    driver = next((p for name in CANDIDATES["driver"] if (p := shutil.which(name))), None)
    return (browser, driver) if browser and driver else None


def start_browser(browser: str, driver: str) -> Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1360,960"):
        options.add_argument(arg)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium refuses to sandbox as root
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))


@pytest_asyncio.fixture(loop_scope="session")
async def driver() -> AsyncIterator[Chrome]:
    """One headless Chromium for a test module's tests (import the fixture by name); skipped where the
    machine has none."""
    found = find_browser()
    if found is None:
        pytest.skip("no chromium + chromedriver on this machine: `make install` installs them only as root (apt-get)")
    browser = await asyncio.to_thread(start_browser, *found)
    try:
        yield browser
    finally:
        await asyncio.to_thread(browser.quit)


class Console:
    """The console in one browser: sign in, go to a page, wait for things, save screenshots."""

    def __init__(self, driver: Chrome, base_url: str, wait_s: float = 60) -> None:
        self.driver, self.base_url, self.wait_s = driver, base_url, wait_s
        shots = os.environ.get(SCREENSHOTS_ENV)
        self.screenshots = Path(shots) if shots else None

    def sign_in(self, key: str) -> None:
        self.driver.get(f"{self.base_url}/ui/")
        self.find("#api-key").send_keys(key)
        self.find("#signin-submit").click()
        self.find("#nav-playground")

    def text(self, css: str) -> str:
        """The text of ``css``; empty while it is absent or being redrawn (a page redraws what it watches)."""
        try:
            found = self.driver.find_elements(By.CSS_SELECTOR, css)
            return str(found[0].text) if found else ""
        except StaleElementReferenceException:
            return ""

    def open(self, page: str) -> WebElement:
        self.find(f"#nav-{page}").click()
        return self.find(f"#page-{page}")

    def find(self, css: str, wait_s: float | None = None) -> WebElement:
        return self.until(lambda d: _visible(d.find_elements(By.CSS_SELECTOR, css)), wait_s, f"no visible {css}")

    def find_all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def until(self, condition: Callable[[WebDriver], Any], wait_s: float | None = None, message: str = "") -> Any:
        return WebDriverWait(self.driver, wait_s or self.wait_s, poll_frequency=0.2).until(condition, message)

    def fill(self, css: str, text: str) -> None:
        element = self.find(css)
        element.clear()
        element.send_keys(text)

    def snap(self, name: str) -> None:
        """Save the page as ``<name>.png`` when screenshots are asked for."""
        if self.screenshots is None:
            return
        self.screenshots.mkdir(parents=True, exist_ok=True)
        size = self.driver.get_window_size()
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.set_window_size(size["width"], min(max(int(height) + 120, size["height"]), MAX_SHOT_HEIGHT))
        self.driver.execute_script("window.scrollTo(0, 0)")
        try:
            self.driver.save_screenshot(str(self.screenshots / f"{name}.png"))
        finally:
            self.driver.set_window_size(size["width"], size["height"])

    def errors(self) -> list[str]:
        """The page's script errors since the last call (a refused request, logged by the browser as a
        failed load, is an answer the page shows, not an error of the page)."""
        logs = self.driver.get_log("browser")
        return [e["message"] for e in logs if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]]


def _visible(elements: list[WebElement]) -> WebElement | bool:
    return next((e for e in elements if e.is_displayed()), False)
