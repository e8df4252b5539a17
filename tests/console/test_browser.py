"""The console in a real headless Chromium against a real `docbroker serve` process:
log in, look around, search, open a trace, see a dead letter; a screenshot of each
page is kept in build/test-artefacts/console/."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from adapters.http_api.console.guard import CSP
from broker.cli.client import ApiProblem, DocbrokerClient
from broker.config import load_settings
from broker.keys.files import ADMIN_TOKENS, new_admin_token
from tests.conftest import backend_env
from tests.console.browser import csp_violations, screenshot, text_of
from tests.e2e.daemon import Daemon
from tests.edxml_samples import document, status
from tests.pki import install_keys

pytestmark = [pytest.mark.e2e]

SENDER, RECIPIENT = "000.00.00.H35", "000.00.01.H35"
DOCUMENT_ID = "000.00.00.H35,2026/12/01,345/SCT-VP"
BROKEN = b"<?xml version='1.0'?><edXML xmlns='http://www.mic.gov.vn/TBT/QCVN_102_2016'>"


class Deployment:
    """A daemon, its admin token, and the traffic the test made through it."""

    def __init__(self, daemon: Daemon, admin_token: str) -> None:
        self.daemon = daemon
        self.admin_token = admin_token
        self.admin = DocbrokerClient(daemon.url, timeout=30, token=admin_token)
        self.message_id = ""
        self.dead_letter_id = ""

    def url(self, path: str) -> str:
        return f"{self.daemon.url}{path}"

    def make_traffic(self) -> None:
        """A document delivered, acknowledged (status 01) and answered (03); a package
        refused at the door (a dead letter)."""
        client = self.daemon.client()
        doc = document(SENDER, (RECIPIENT,), DOCUMENT_ID, subject="Báo cáo tình hình tháng 11")
        self.message_id = client.submit(doc)["message_id"]
        entry = wait_for(lambda: client.inbox(RECIPIENT)["envelopes"])[0]
        client.fetch(RECIPIENT, entry["message_id"])
        client.ack(RECIPIENT, entry["message_id"])
        wait_for(lambda: self._latest_status() == "01")  # docbroker's, on the ack
        client.submit(status(RECIPIENT, SENDER, DOCUMENT_ID, "03"))
        with pytest.raises(ApiProblem):
            client.submit(BROKEN)
        wait_for(lambda: self._latest_status() == "03")

    def _latest_status(self) -> str | None:
        try:
            state = self.admin.document(DOCUMENT_ID)
        except ApiProblem:
            return None
        return (state["recipients"][0].get("latest_status") or {}).get("code")


def wait_for(check: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("not within the time")


@pytest.fixture
def deployment(tmp_path: Path, unique_prefix: str) -> Iterator[Deployment]:
    install_keys(tmp_path / "data")
    env = {
        **backend_env("embedded", tmp_path / "data", unique_prefix, None),
        "DOCBROKER_HTTP_RATE_LIMIT": "0",
    }
    settings = load_settings(None, env)
    admin = new_admin_token(settings.key_file(settings.auth.admin_tokens_file, ADMIN_TOKENS))
    daemon = Daemon(tmp_path / "docbroker", env)
    daemon.start()
    try:
        yield Deployment(daemon, admin)
    finally:
        daemon.kill()


def log_in(driver: WebDriver, deployment: Deployment, token: str) -> None:
    driver.get(deployment.url("/console/"))
    assert "/console/login" in driver.current_url, "not logged in: the login page"
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "login").click()


def test_a_wrong_token_is_refused_and_the_page_is_strict(
    browser: WebDriver,
    deployment: Deployment,
) -> None:
    """The login page, its headers as the daemon sends them, no script in it, its
    style sheet applied under the CSP; a wrong token and an agency token are refused."""
    with urllib.request.urlopen(deployment.url("/console/login")) as resp:
        assert resp.headers["Content-Security-Policy"] == CSP
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert resp.headers["Cache-Control"] == "no-store"
    log_in(browser, deployment, "dbk_admin_wrong")
    assert browser.find_element(By.ID, "login-failed").is_displayed()
    screenshot(browser, "login-refused")
    agency_token = deployment.daemon.tokens.token(SENDER)
    browser.find_element(By.ID, "token").send_keys(agency_token)
    browser.find_element(By.ID, "login").click()
    assert browser.find_element(By.ID, "login-failed").is_displayed()
    assert agency_token not in browser.page_source
    assert not browser.find_elements(By.TAG_NAME, "script")
    border = browser.find_element(By.CSS_SELECTOR, "header.top").value_of_css_property(
        "border-bottom-color"
    )
    assert border == "rgba(163, 21, 27, 1)", "the style sheet is applied"
    assert csp_violations(browser) == []


def test_an_administrator_goes_through_the_console(
    browser: WebDriver,
    deployment: Deployment,
) -> None:
    deployment.make_traffic()
    secrets = [deployment.admin_token, *deployment.daemon.tokens.tokens.values()]
    browser.get(deployment.url("/console/login"))
    screenshot(browser, "login")
    log_in(browser, deployment, deployment.admin_token)

    assert browser.current_url.endswith("/console/")
    assert "sẵn sàng" in text_of(browser, "#readiness h2")
    assert "1" in text_of(browser, "#dead-letters h2")
    screenshot(browser, "overview")

    browser.find_element(By.LINK_TEXT, "Tra cứu văn bản").click()
    browser.find_element(By.ID, "code").send_keys("12 / ubnd-vp")  # as typed: case, spaces
    browser.find_element(By.ID, "find").click()
    results = browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")
    assert len(results) == 1 and DOCUMENT_ID in results[0].text
    assert "03 Đã tiếp nhận" in results[0].text
    screenshot(browser, "search")
    results[0].find_element(By.LINK_TEXT, "12/UBND-VP").click()
    assert "345%2FSCT-VP" in browser.current_url
    assert "Nguyên vẹn" in text_of(browser, "#chain-verdict")
    recipients = text_of(browser, "#recipients")
    assert "03 Đã tiếp nhận" in recipients and RECIPIENT in recipients
    hops = text_of(browser, "#hops")
    for step in ("Tiếp nhận", "Chuyển", "Nơi nhận đã lấy về", "Nơi nhận đã xác nhận"):
        assert step in hops
    screenshot(browser, "timeline")

    browser.get(deployment.url(f"/console/documents/{quote(DOCUMENT_ID, safe='')}?lang=en"))
    assert "Intact" in text_of(browser, "#chain-verdict")
    assert "03 Đã tiếp nhận — received" in text_of(browser, "#recipients")
    screenshot(browser, "timeline-en")
    browser.get(deployment.url("/console/?lang=vi"))

    browser.get(deployment.url(f"/console/agencies/{SENDER}"))
    assert "Ủy ban nhân dân tỉnh Lai Châu" in browser.title
    tokens = text_of(browser, "#credentials")
    token_id = deployment.daemon.tokens.tokens[SENDER].split("_")[1]
    assert token_id in tokens
    screenshot(browser, "agency")

    browser.get(deployment.url("/console/agencies"))
    screenshot(browser, "agencies")

    browser.get(deployment.url("/console/dead-letters"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#dead-letter-list tbody tr")
    assert len(rows) == 1 and "not-well-formed" in rows[0].text
    screenshot(browser, "dead-letters")
    rows[0].find_element(By.CSS_SELECTOR, "a").click()
    assert "not-well-formed" in text_of(browser, "#problems")
    screenshot(browser, "dead-letter")

    for page in ("/console/", "/console/agencies", "/console/dead-letters"):
        browser.get(deployment.url(page))
        assert not any(s in browser.page_source for s in secrets), page
        assert not browser.find_elements(By.TAG_NAME, "script"), page
    assert csp_violations(browser) == []

    browser.find_element(By.ID, "logout").click()
    browser.get(deployment.url("/console/"))
    assert "/console/login" in browser.current_url
