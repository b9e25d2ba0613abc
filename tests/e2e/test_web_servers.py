"""The servers page (/ui/servers) in headless Chromium against the portal in the testbed,
with a real Ganeti cluster (fake hypervisor) behind the compute API: log in, create a server
from an image with a flavor, see its password once, watch it go BUILD → ACTIVE without a
reload, stop, start, reboot and delete it, and see API errors (over quota, a bad name) as
messages.  Uses test_web_ui.py's browser fixture and the testbed's compute helpers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.test_web_files import _status, _until
from tests.e2e.test_web_ui import _click, _fill
from tests.e2e.test_web_ui import browser as browser  # the fixture
from tests.testbed import compute, plan
from tests.testbed.cluster import Cluster
from tests.testbed.compute import Cloud

pytestmark = pytest.mark.ganeti
FOLDER = plan.STATE_DIR / "web-servers-e2e"
NAME = 'web <b>vm</b> "1"'  # shown as text, never as HTML


@pytest.fixture(scope="module")
def cloud(cluster1: Cluster, portal: Any) -> Iterator[Cloud]:
    compute.ensure_backend(portal, cluster1)
    cloud = compute.user_with_image(portal, "web-servers", FOLDER, "web linux")
    portal.snf_portal("quota", "set", cloud.uuid, "cyclades.vm", "1")  # for the error case
    try:
        with compute.reconciler(portal, FOLDER / "reconcile.log"):
            yield cloud
    finally:
        compute.remove_tree(FOLDER)


def _row(driver: Any) -> Any:
    """The listing's only server row (None while there is none)."""
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, "#server-rows tr[data-id]")
    assert len(rows) <= 1, [r.text for r in rows]
    return rows[0] if rows else None


def _state(driver: Any) -> tuple[str, str] | None:
    """(status, task) of the server row as shown, read in one script (no stale elements)."""
    got = driver.execute_script(
        "const tr = document.querySelector('#server-rows tr[data-id]');"
        "return tr ? [tr.dataset.status, tr.querySelector('.task').textContent] : null;"
    )
    return tuple(got) if got else None


def _buttons(driver: Any) -> dict[str, bool]:
    """Which of the row's buttons are enabled."""
    return dict(
        driver.execute_script(
            "const tr = document.querySelector('#server-rows tr[data-id]');"
            "return [...tr.querySelectorAll('button')].map(b => [b.className, !b.disabled]);"
        )
    )


def _watch(driver: Any, want: str, timeout: float = 180) -> list[tuple[str, str]]:
    """The row's (status, task) pairs as the page changes them, until the status is ``want``."""
    seen: list[tuple[str, str]] = []
    deadline = time.monotonic() + timeout
    while True:
        state = _state(driver)
        if state and (not seen or seen[-1] != state):
            seen.append(state)
        if state and state[0] == want and not state[1]:
            return seen
        assert state is None or state[0] != "ERROR", (seen, _row(driver).text)
        if time.monotonic() > deadline:
            status = driver.execute_script("return document.getElementById('status').textContent")
            raise AssertionError(f"not {want} in {timeout} s: {seen}; status: {status!r}")
        time.sleep(0.2)


def _press(driver: Any, button: str) -> None:
    from selenium.webdriver.common.by import By

    _row(driver).find_element(By.CSS_SELECTOR, f"button.{button}").click()


def test_servers_page(browser: Any, portal: Any, cloud: Cloud) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(f"{portal.base_url}/ui/")
    _fill(browser, email=cloud.email, password=compute.PASSWORD)
    _click(browser, "login")
    browser.find_element(By.ID, "nav-servers").click()
    _until(browser, "the servers page", lambda d: d.current_url.endswith("/ui/servers"))
    _until(browser, "the empty list",
           lambda d: "No servers yet" in d.find_element(By.ID, "server-rows").text)  # fmt: skip
    browser.execute_script("window.sameDocument = true")  # gone if the page reloads

    # The create form lists the user's image and the flavors.
    image = Select(browser.find_element(By.ID, "server-image"))
    flavor = Select(browser.find_element(By.ID, "server-flavor"))
    assert "web linux" in [o.text for o in image.options]  # (others' public images too)
    image.select_by_value(cloud.image)
    flavor.select_by_value(str(cloud.flavor))
    assert flavor.first_selected_option.text.startswith("small (1 CPU, 128 MiB RAM, 1 GiB disk")

    # A bad name: the API's message, and nothing created.
    browser.execute_script("document.getElementById('server-name').removeAttribute('maxlength')")
    _fill(browser, **{"server-name": "x" * 300})
    browser.find_element(By.ID, "create-server").click()
    _status(browser, "server.name must be 1 to 256 printable characters (400)")
    assert "error" in browser.find_element(By.ID, "status").get_attribute("class")
    assert not browser.find_element(By.ID, "password-panel").is_displayed()

    # Create: the password once, then BUILD (building) → ACTIVE, live.
    _fill(browser, **{"server-name": NAME})
    browser.find_element(By.ID, "create-server").click()
    _until(
        browser, "the password", lambda d: d.find_element(By.ID, "password-panel").is_displayed()
    )
    password = browser.find_element(By.ID, "server-password").text
    assert len(password) >= 8 and password.isalnum()
    assert browser.find_element(By.ID, "password-server").text == NAME
    assert "shown only this once" in browser.find_element(By.ID, "password-panel").text
    _status(browser, f"Server {NAME} is being built")
    seen = _watch(browser, "ACTIVE")
    assert seen[0] == ("BUILD", "(building)"), seen
    row = _row(browser)
    assert row.find_element(By.CSS_SELECTOR, ".name").text == NAME
    assert browser.find_elements(By.CSS_SELECTOR, "#server-rows b") == []  # text, not HTML
    assert row.find_element(By.CSS_SELECTOR, ".flavor").text == "small"
    assert row.find_element(By.CSS_SELECTOR, ".image").text == "web linux"
    server_id = int(row.get_attribute("data-id"))
    assert cloud.wait_status(server_id, "ACTIVE")["name"] == NAME
    assert _buttons(browser) == {"start": False, "stop": True, "reboot": True, "delete": True,
                                 "snapshot": True}  # fmt: skip
    # the password stays until dismissed, then it is nowhere on the page or in storage
    assert browser.find_element(By.ID, "server-password").text == password
    browser.find_element(By.ID, "password-done").click()
    assert not browser.find_element(By.ID, "password-panel").is_displayed()
    assert password not in browser.execute_script("return document.documentElement.outerHTML")
    assert browser.execute_script("return localStorage.length + sessionStorage.length") == 0

    # Over quota (one server allowed): the quota engine's message, no second row.
    _fill(browser, **{"server-name": "one too many"})
    browser.find_element(By.ID, "create-server").click()
    _status(browser, "(413)")
    assert "cyclades.vm" in browser.find_element(By.ID, "status").text
    assert not browser.find_element(By.ID, "password-panel").is_displayed()
    assert len(browser.find_elements(By.CSS_SELECTOR, "#server-rows tr[data-id]")) == 1

    # Stop, start, reboot: each button only where the state allows it.
    _press(browser, "stop")
    _status(browser, f"Stopping server {NAME}")
    seen = _watch(browser, "STOPPED")
    assert ("ACTIVE", "(stopping)") in seen or seen[0] == ("STOPPED", ""), seen
    assert cloud.wait_status(server_id, "STOPPED")["SNF:task_state"] == ""
    assert _buttons(browser) == {"start": True, "stop": False, "reboot": False, "delete": True,
                                 "snapshot": True}  # fmt: skip
    # A snapshot, named in the prompt, becomes an image to create servers from.
    _press(browser, "snapshot")
    prompt = browser.switch_to.alert
    prompt.send_keys("web snapshot")
    prompt.accept()
    _status(browser, f"Saved a snapshot of server {NAME} as image web snapshot")
    choices = [o.text for o in Select(browser.find_element(By.ID, "server-image")).options]
    assert "web snapshot" in choices, choices
    _press(browser, "start")
    _status(browser, f"Starting server {NAME}")
    _watch(browser, "ACTIVE")
    _press(browser, "reboot")
    _status(browser, f"Rebooting server {NAME}")
    assert cloud.wait_status(server_id, "ACTIVE")["SNF:task_state"] == ""  # the reboot ended
    _until(browser, "the reboot's end on the page",
           lambda d: _state(d) == ("ACTIVE", "") and _buttons(d)["delete"])  # fmt: skip

    # Delete (after a confirmation): the row goes, the API shows it DELETED.
    _press(browser, "delete")
    _until(browser, "the confirmation", lambda d: d.switch_to.alert).accept()
    _status(browser, f"Server {NAME} is deleted")
    assert _row(browser) is None
    assert "No servers yet" in browser.find_element(By.ID, "server-rows").text
    assert cloud.wait_status(server_id, "DELETED", timeout=10)["deleted"] is True
    assert cloud.quota_usage("cyclades.vm") == 0
    assert browser.execute_script("return window.sameDocument") is True  # never reloaded
