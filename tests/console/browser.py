"""A real headless Chromium (Debian's `chromium`) driven through Debian's
`chromium-driver` by Selenium.

Selenium rather than Playwright: Playwright's Python package drives the browser
builds it downloads itself, pinned to its own version, and that download is what a
machine without access to those builds cannot do; chromium-driver is packaged with
chromium, same version, so the pair always matches.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = Path(os.environ.get("DOCBROKER_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("DOCBROKER_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))
ROOT = Path(__file__).resolve().parents[2]
ARTEFACTS = ROOT / "build" / "test-artefacts" / "console"


def chromium_or_skip() -> None:
    """Skip where the browser is missing, except in CI: there it must be installed
    (bin/test installs it on Debian), so a missing browser fails."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not (p.exists() or shutil.which(p))]
    if not missing:
        return
    message = f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def start_browser(downloads: Path) -> WebDriver:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",  # tests run as root in CI's container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1366,900",
        "--lang=vi",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.execute_cdp_cmd(
        "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    return driver


def downloaded(driver: WebDriver, suffix: str, timeout: float = 20) -> Path:
    """The file the browser downloaded, once complete."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [p for p in driver.downloads.iterdir() if p.name.endswith(suffix)]  # type: ignore[attr-defined]
        if done:
            return done[0]
        time.sleep(0.2)
    raise AssertionError(f"no {suffix} downloaded")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    chromium_or_skip()
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = start_browser(downloads)
    driver.downloads = downloads  # type: ignore[attr-defined]
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: WebDriver, page: str) -> Path:
    """The whole page as `build/test-artefacts/console/<page>.png` (kept)."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 8000)}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {"format": "png", "captureBeyondViewport": True, "clip": {**clip, "scale": 1}},
    )
    path = ARTEFACTS / f"{page}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def csp_violations(driver: WebDriver) -> list[str]:
    """What the browser's console said about the Content-Security-Policy."""
    return [
        e["message"]
        for e in driver.get_log("browser")
        if "Content Security Policy" in e.get("message", "")
    ]


def click_through(driver: WebDriver, element: WebElement) -> None:
    """Click what leads to another page, and wait until that page replaced this one
    (a click returns before a form's answer is loaded)."""
    element.click()

    def replaced(d: WebDriver) -> bool:
        try:
            element.is_enabled()  # raises once the element's page is gone
        except WebDriverException:  # stale, or "does not belong to the document"
            return d.execute_script("return document.readyState") == "complete"
        return False

    WebDriverWait(driver, 30, ignored_exceptions=(WebDriverException,)).until(replaced)


def click_id(driver: WebDriver, element_id: str) -> None:
    click_through(driver, driver.find_element(By.ID, element_id))


def text_of(driver: WebDriver, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).text
