"""The web UI in a real browser (signup → verify → login → renew token → quotas → join a
project): headless Chromium, driven with Selenium through Debian's chromedriver, against the
portal under gunicorn in the testbed.  Browser, driver and every
connection live in the services host's network namespace (the test's thread enters it; the
driver and browser processes inherit it)."""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require
from tests.testbed.cluster import lan
from tests.testbed.namespaces import thread_in_netns

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PASSWORD = "browser password 1"


@pytest.fixture
def browser(portal: Any) -> Iterator[Any]:
    require(shutil.which(CHROMIUM) is not None and shutil.which(CHROMEDRIVER) is not None,
            "Chromium and chromedriver are not installed (make deps)")  # fmt: skip
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", "--window-size=1200,900"):  # fmt: skip
        options.add_argument(arg)
    with thread_in_netns(lan().netns):
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.implicitly_wait(5)
        try:
            yield driver
        finally:
            driver.quit()


def _fill(driver: Any, **fields: str) -> None:
    from selenium.webdriver.common.by import By

    for name, value in fields.items():
        box = driver.find_element(By.ID, name)
        box.clear()
        box.send_keys(value)


def _click(driver: Any, element_id: str) -> None:
    from selenium.webdriver.common.by import By

    _submit(driver, driver.find_element(By.ID, element_id))


def _submit(driver: Any, button: Any) -> None:
    """Click a form's button and wait until the browser has left the page: a following
    ``get`` must not race the form's own navigation."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    page = driver.find_element(By.TAG_NAME, "html")
    button.click()
    WebDriverWait(driver, 30).until(lambda d: _left(page))


def _left(page: Any) -> bool:
    """True once ``page``'s element is gone.  While the browser swaps documents, chromedriver
    may answer "node does not belong to the document" rather than "stale element": gone too."""
    from selenium.common.exceptions import WebDriverException

    try:
        page.is_enabled()
    except WebDriverException:
        return True
    return False


def _text(driver: Any, element_id: str) -> str:
    from selenium.common.exceptions import NoSuchElementException
    from selenium.webdriver.common.by import By

    try:
        return str(driver.find_element(By.ID, element_id).text)
    except NoSuchElementException:
        page = driver.find_element(By.TAG_NAME, "body").text[:1500]
        raise AssertionError(f"no #{element_id} on {driver.current_url}:\n{page}") from None


def _vm_limit(driver: Any) -> int:
    from selenium.webdriver.common.by import By

    cell = driver.find_element(By.CSS_SELECTOR, '#quotas tr[data-resource="cyclades.vm"] .limit')
    return int(cell.text)


def _verification_link(outbox: Path, email: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for path in sorted(outbox.glob("*.eml")):
            message = message_from_bytes(path.read_bytes())
            if message["To"] == email:
                body = message.get_payload(decode=True).decode()  # type: ignore[union-attr]
                return re.search(r"(http://\S+/ui/verify\?code=\S+)", body).group(1)  # type: ignore[union-attr]
        time.sleep(0.1)
    raise AssertionError(f"no verification mail for {email} in {outbox}")


def test_signup_verify_login_token_quotas(browser: Any, portal: Any) -> None:
    base = portal.base_url
    email = "browser-user@example.test"
    browser.get(f"{base}/ui/signup")
    _fill(browser, email=email, name="Browser User", password=PASSWORD, password2=PASSWORD)
    _click(browser, "signup")
    assert "verification link" in _text(browser, "message")

    browser.get(_verification_link(portal.outbox, email))
    assert "administrator will review" in _text(browser, "message")
    portal.snf_portal("user", "activate", email)  # the administrator's moderation

    browser.get(f"{base}/ui/quotas")  # behind the login: the login page, then back here
    assert "/ui/login" in browser.current_url
    _fill(browser, email=email, password=PASSWORD)
    _click(browser, "login")
    assert urllib.parse.urlsplit(browser.current_url).path == "/ui/quotas"

    browser.get(f"{base}/ui/")
    assert _text(browser, "email") == email
    _click(browser, "renew-token")
    token = _text(browser, "api-token")
    request = urllib.request.Request(f"{base}/account/v1.0/quotas",
                                     headers={"X-Auth-Token": token})  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        quotas = json.load(response)
    (system,) = quotas.values()
    assert system["cyclades.vm"]["limit"] >= 1

    browser.get(f"{base}/ui/quotas")
    from selenium.webdriver.common.by import By

    rows = browser.find_elements(By.CSS_SELECTOR, "#quotas tr[data-resource]")
    shown = {row.get_attribute("data-resource") for row in rows}
    assert {"cyclades.vm", "cyclades.disk", "pithos.diskspace"} <= shown
    bars = browser.find_elements(By.CSS_SELECTOR, "#quotas [role=meter]")
    assert len(bars) == len(rows)

    # Join a project the administrator opened: its member capacity adds to the quota.
    vm_limit = _vm_limit(browser)
    portal.snf_portal("project", "create", "browser-lab", "--grant", "cyclades.vm=10:2",
                      "--join", "auto")  # fmt: skip
    browser.get(f"{base}/ui/projects")
    row = browser.find_element(By.CSS_SELECTOR, '#projects tr[data-project="browser-lab"]')
    _submit(browser, row.find_element(By.CSS_SELECTOR, "button.join"))
    assert "You joined the project" in browser.find_element(By.CSS_SELECTOR, ".flash").text
    row = browser.find_element(By.CSS_SELECTOR, '#projects tr[data-project="browser-lab"]')
    assert row.find_element(By.CSS_SELECTOR, ".membership").text == "accepted"
    browser.get(f"{base}/ui/quotas")
    assert _vm_limit(browser) == vm_limit + 2

    _click(browser, "logout")
    browser.get(f"{base}/ui/")
    assert "/ui/login" in browser.current_url
