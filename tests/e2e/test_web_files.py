"""The file browser (/ui/files) in headless Chromium against the portal in the testbed: log
in, create a container, upload a random file into a folder (watching the progress bar),
download it, share it with another user (who reads it through the API), publish it (read
back without a token) and delete it.  Uses test_web_ui.py's browser fixture and helpers."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.e2e.test_web_ui import _click, _fill, _text
from tests.e2e.test_web_ui import browser as browser  # the fixture

PASSWORD = "files password 1"
WAIT = 30


def _user(portal: Any, email: str) -> str:
    return str(
        portal.snf_portal(
            "user",
            "add",
            email,
            "--name",
            email.split("@")[0],
            "--active",
            "--password-stdin",
            input=PASSWORD + "\n",
        )
    ).strip()


def _until(driver: Any, what: str, check: Callable[[Any], Any]) -> Any:
    """Wait for ``check(driver)`` to be truthy (its value), failing with the page's status."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT).until(check)
    except TimeoutException:
        status = driver.execute_script("return document.getElementById('status').textContent")
        raise AssertionError(f"timed out waiting for {what}; status: {status!r}") from None


def _status(driver: Any, words: str) -> None:
    from selenium.webdriver.common.by import By

    _until(driver, repr(words), lambda d: words in d.find_element(By.ID, "status").text)


def _row(driver: Any, name: str) -> Any:
    """The listing's row of object ``name`` (compared as text: names hold quotes)."""
    from selenium.webdriver.common.by import By

    def find(d: Any) -> Any:
        for row in d.find_elements(By.CSS_SELECTOR, "#object-rows tr[data-name]"):
            if row.get_attribute("data-name") == name:
                return row
        return None

    return _until(driver, f"the row of {name!r}", find)


def _progress(driver: Any) -> float:
    script = (
        "const bar = document.getElementById('upload-progress'); return bar.hidden ? -1 : bar.value"
    )
    return float(driver.execute_script(script))


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    headers = {"X-Auth-Token": token} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _downloaded(folder: Path, size: int) -> bytes:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        done = [p for p in folder.iterdir() if not p.name.endswith(".crdownload")]
        if done and done[0].stat().st_size == size:
            return done[0].read_bytes()
        time.sleep(0.2)
    raise AssertionError(f"no download of {size} bytes in {folder}: {list(folder.iterdir())}")


def test_file_browser(browser: Any, portal: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    base = portal.base_url
    alice = "files-alice@example.test"
    alice_uuid = _user(portal, alice)
    bob = "files-bob@example.test"
    _user(portal, bob)
    bob_token = portal.snf_portal("token", "issue", bob).strip()

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )

    browser.get(f"{base}/ui/")
    _fill(browser, email=alice, password=PASSWORD)
    _click(browser, "login")
    browser.find_element(By.ID, "nav-files").click()
    _until(browser, "the file browser", lambda d: d.current_url.endswith("/ui/files"))
    _until(
        browser,
        "the empty account",
        lambda d: "Create a container" in d.find_element(By.ID, "object-rows").text,
    )

    # A container, a folder, and a file with a name that is not HTML.
    _fill(browser, **{"container-name": "e2e-files"})
    browser.find_element(By.ID, "create-container").click()
    _status(browser, "Container e2e-files is ready")
    _until(  # the list of containers is reloaded after the status line changes
        browser,
        "the new container selected",
        lambda d: d.find_element(By.ID, "container").get_attribute("value") == "e2e-files",
    )
    _fill(browser, **{"folder-name": "docs"})
    browser.find_element(By.ID, "open-folder").click()
    _until(browser, "the folder", lambda d: d.find_element(By.ID, "path").text == "e2e-files/docs")

    data = os.urandom(300_000)
    filename = 'report <b>"q" ωμέγα.bin'
    source = tmp_path / filename
    source.write_bytes(data)
    name = f"docs/{filename}"
    # Slow the upload down (150 kB/s: two seconds) to watch the progress bar move.
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 150_000},
    )
    browser.find_element(By.ID, "upload-file").send_keys(str(source))
    browser.find_element(By.ID, "upload").click()
    _until(browser, "the upload to be under way", lambda d: 0 < _progress(d) < 1)
    assert _text(browser, "upload-status") == filename
    _status(browser, "Uploaded")
    browser.execute_cdp_cmd("Network.disable", {})
    row = _row(browser, name)
    assert row.find_element(By.CSS_SELECTOR, ".name").text == filename
    assert row.find_element(By.CSS_SELECTOR, ".size").get_attribute("title") == f"{len(data)} bytes"
    assert browser.find_elements(By.CSS_SELECTOR, "#objects b") == []  # shown as text
    assert not browser.find_element(By.ID, "upload-progress").is_displayed()

    # Download: the same bytes, and no token in any URL or storage.
    row.find_element(By.CSS_SELECTOR, "button.download").click()
    assert _downloaded(downloads, len(data)) == data
    assert browser.execute_script("return localStorage.length + sessionStorage.length") == 0
    assert "token" not in browser.execute_script("return document.cookie").lower()

    # Nobody else may read it yet; then share it with bob and publish it.
    object_url = f"{base}/object-store/v1/{alice_uuid}/e2e-files/" + urllib.parse.quote(name)
    assert _get(object_url, bob_token)[0] == 403
    row.find_element(By.CSS_SELECTOR, "button.share").click()
    _fill(browser, **{"share-read": bob})
    browser.find_element(By.ID, "share-public").click()
    browser.find_element(By.ID, "share-save").click()
    _status(browser, "Saved the sharing")
    public = _until(browser, "the public URL", lambda d: d.find_element(By.ID, "public-url").text)
    assert public.startswith(f"{base}/public/")
    sharing = _row(browser, name).find_element(By.CSS_SELECTOR, ".sharing").text
    assert sharing == f"read: {bob}; public"  # the UUID shown as the email
    assert _get(object_url, bob_token) == (200, data)
    assert _get(public) == (200, data)  # no token

    # Private again, then deleted: the public URL and bob's access end.
    browser.find_element(By.ID, "share-public").click()
    browser.find_element(By.ID, "share-save").click()
    _until(
        browser,
        "the public URL to go",
        lambda d: not d.find_element(By.ID, "public-url-row").is_displayed(),
    )
    assert _get(public)[0] == 404
    _row(browser, name).find_element(By.CSS_SELECTOR, "button.delete").click()
    _until(browser, "the confirmation", lambda d: d.switch_to.alert).accept()
    _status(browser, "Deleted")
    _until(
        browser,
        "the empty folder",
        lambda d: "This folder is empty" in d.find_element(By.ID, "object-rows").text,
    )
    assert _get(object_url, bob_token)[0] == 403  # nothing shared with bob any more
    assert "e2e-files" in _text(browser, "path")
