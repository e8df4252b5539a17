"""The console in a real headless Chromium against a real `docbroker serve` process:
log in, look around, search, open a trace, see a dead letter; a screenshot of each
page is kept in build/test-artefacts/console/."""

from __future__ import annotations

import json
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
from adapters.http_api.console.render import VIETNAM
from broker.cli.client import ApiProblem, DocbrokerClient
from broker.config import load_settings
from broker.keys.files import ADMIN_TOKENS, new_admin_token
from broker.trust.certs import fingerprint
from tests import pki
from tests.conftest import backend_env
from tests.console.browser import (
    click_id,
    click_through,
    csp_violations,
    downloaded,
    screenshot,
    text_of,
)
from tests.e2e.daemon import Daemon
from tests.e2e.test_province import cli
from tests.edxml_samples import document, status
from tests.pki import install_keys
from tests.trust.signing import sign_as_sender

pytestmark = [pytest.mark.e2e]

SENDER, RECIPIENT = "000.00.00.H35", "000.00.01.H35"
DOCUMENT_ID = "000.00.00.H35,2026/12/01,345/SCT-VP"
BROKEN = b"<?xml version='1.0'?><edXML xmlns='http://www.mic.gov.vn/TBT/QCVN_102_2016'>"


NEW_AGENCY, NEW_AGENCY_102 = "H35.S98", "000.00.98.H35"
LATE_DOCUMENT_ID = "000.00.00.H35,2026/12/01,346/SCT-VP"


class Deployment:
    """A daemon, its admin token, and the traffic the test made through it."""

    def __init__(self, daemon: Daemon, admin_token: str, env: dict[str, str]) -> None:
        self.env = env
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
        doc = sign_as_sender(
            document(SENDER, (RECIPIENT,), DOCUMENT_ID, subject="Báo cáo tình hình tháng 11"),
            pki.agency(SENDER),
            profile="edxml",
        )
        self.message_id = client.submit(doc)["message_id"]
        entry = wait_for(lambda: client.inbox(RECIPIENT)["envelopes"])[0]
        client.fetch(RECIPIENT, entry["message_id"])
        client.ack(RECIPIENT, entry["message_id"])
        wait_for(lambda: self._latest_status() == "01")  # docbroker's, on the ack
        client.submit(status(RECIPIENT, SENDER, DOCUMENT_ID, "03"))
        with pytest.raises(ApiProblem):
            client.submit(BROKEN)
        wait_for(lambda: self._latest_status() == "03")

    def refuse_for_an_agency_not_there_yet(self) -> None:
        """A document to an agency the directory does not have yet: refused as a whole
        (a dead letter of the pipeline), then the agency is added."""
        doc = document(SENDER, (NEW_AGENCY_102,), LATE_DOCUMENT_ID)
        self.daemon.client().submit(doc)
        wait_for(lambda: any(d["document_id"] == LATE_DOCUMENT_ID for d in self.dead_letters()))
        added = cli(
            self.env, "agencies", "add", NEW_AGENCY, "--name", "Sở Thử nghiệm",
            "--code102", NEW_AGENCY_102, "--parent", "H35", "--level", "sở",
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        wait_for(lambda: any(a["code"] == NEW_AGENCY for a in self.admin.agencies()["agencies"]))
        time.sleep(1)  # the pipeline routes with its own copy of the directory

    def dead_letters(self) -> list[dict[str, Any]]:
        run = cli(self.env, "rejected", "list", "--json")
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout)

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
        yield Deployment(daemon, admin, env)
    finally:
        daemon.kill()


def log_in(driver: WebDriver, deployment: Deployment, token: str) -> None:
    driver.get(deployment.url("/console/"))
    assert "/console/login" in driver.current_url, "not logged in: the login page"
    driver.find_element(By.ID, "token").send_keys(token)
    click_id(driver, "login")


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
    click_id(browser, "login")
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
    deployment.refuse_for_an_agency_not_there_yet()
    secrets = [deployment.admin_token, *deployment.daemon.tokens.tokens.values()]
    browser.get(deployment.url("/console/login"))
    screenshot(browser, "login")
    log_in(browser, deployment, deployment.admin_token)

    assert browser.current_url.endswith("/console/"), browser.page_source[-3000:]
    assert "sẵn sàng" in text_of(browser, "#readiness h2")
    assert text_of(browser, "#dead-letters h2").endswith(": 2")
    screenshot(browser, "overview")

    click_through(browser, browser.find_element(By.LINK_TEXT, "Tra cứu văn bản"))
    browser.find_element(By.ID, "code").send_keys("12 / ubnd-vp")  # as typed: case, spaces
    click_id(browser, "find")
    results = browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")
    assert len(results) == 1 and DOCUMENT_ID in results[0].text
    assert "03 Đã tiếp nhận" in results[0].text
    screenshot(browser, "search")
    click_through(browser, results[0].find_element(By.LINK_TEXT, "12/UBND-VP"))
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
    signer = pki.agency(SENDER).certificate
    certificate = text_of(browser, "#certificate")
    assert fingerprint(signer) in certificate
    expiry = signer.not_valid_after_utc.astimezone(VIETNAM).strftime("%Y-%m-%d %H:%M")
    assert expiry in certificate, "the signing certificate's expiry"
    screenshot(browser, "agency")

    browser.get(deployment.url("/console/agencies"))
    screenshot(browser, "agencies")

    browser.get(deployment.url("/console/dead-letters"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#dead-letter-list tbody tr")
    assert len(rows) == 2
    screenshot(browser, "dead-letters")
    (broken,) = [r for r in rows if "not-well-formed" in r.text]
    click_through(browser, broken.find_element(By.CSS_SELECTOR, "a"))
    assert "not-well-formed" in text_of(browser, "#problems")
    screenshot(browser, "dead-letter")
    click_id(browser, "dry-run")
    assert "Vẫn sẽ bị từ chối" in text_of(browser, "#replay-result"), "bytes still broken"

    replay_a_dead_letter(browser, deployment)
    download_a_report(browser, deployment)

    for page in ("/console/", "/console/agencies", "/console/dead-letters"):
        browser.get(deployment.url(page))
        assert not any(s in browser.page_source for s in secrets), page
        assert not browser.find_elements(By.TAG_NAME, "script"), page
    assert csp_violations(browser) == []

    click_id(browser, "logout")
    browser.get(deployment.url("/console/"))
    assert "/console/login" in browser.current_url


def replay_a_dead_letter(browser: WebDriver, deployment: Deployment) -> None:
    """The refused document's recipient is in the directory now: a check says it would
    pass, the replay puts it in the new agency's mailbox, and the page says so."""
    browser.get(deployment.url("/console/dead-letters"))
    (late,) = [
        r
        for r in browser.find_elements(By.CSS_SELECTOR, "#dead-letter-list tbody tr")
        if LATE_DOCUMENT_ID in r.text
    ]
    click_through(browser, late.find_element(By.CSS_SELECTOR, "a"))
    click_id(browser, "dry-run")
    assert "Có thể gửi lại" in text_of(browser, "#replay-result")
    assert NEW_AGENCY in text_of(browser, "#replay-result")
    click_id(browser, "replay-button")
    assert "Đã gửi lại" in text_of(browser, "#replay-result")
    assert "đã gửi lại thành" in text_of(browser, "#replayed-as")
    assert not browser.find_elements(By.ID, "replay-button"), "replayed once: no button"
    screenshot(browser, "dead-letter-replayed")
    inbox = wait_for(lambda: deployment.admin.inbox(NEW_AGENCY)["envelopes"])
    assert len(inbox) == 1


def download_a_report(browser: WebDriver, deployment: Deployment) -> None:
    """The reports page with its chart (an SVG the browser draws), then its CSV and
    XLSX downloads."""
    browser.get(deployment.url("/console/reports"))
    wait_for(lambda: int(text_of(browser, "#total-sent_documents").replace("\u202f", "")) >= 2
             or browser.refresh())  # fmt: skip
    assert browser.execute_script("return document.querySelector('#chart img').naturalWidth") > 0, (
        "the chart is drawn"
    )
    screenshot(browser, "reports")
    browser.find_element(By.ID, "download-csv").click()
    csv = downloaded(browser, ".csv").read_text(encoding="utf-8-sig")
    assert SENDER.split(".")[-1] in csv and "sent_documents" in csv
    browser.find_element(By.ID, "download-xlsx").click()
    assert downloaded(browser, ".xlsx").read_bytes()[:2] == b"PK"
