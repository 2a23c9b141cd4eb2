"""The rendered report in a real browser (headless Chromium): it draws, and loads with no errors.

Console errors, uncaught exceptions and failed resource loads are collected over the Chrome
DevTools protocol (websocket on 127.0.0.1; ``websocket-client`` package). Skipped when Chromium
or websocket-client is not installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests._reporttree import rendered_report

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_S = 90
NAVIGATE_ID = 99


def require_chromium() -> None:
    """Skip the calling test (or fixture) with the reason when Chromium is not installed."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not installed at {CHROMIUM} (apt-get install chromium)")


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> Path:
    require_chromium()
    return rendered_report(tmp_path_factory) / "report"


@pytest.mark.parametrize("page", ["index.html", "sim.html"])
def test_screenshot_is_not_blank(pages, page, tmp_path):
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
                    "--window-size=1400,3000", (pages / page).as_uri()],
                   check=True, capture_output=True, timeout=TIMEOUT_S)
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1400, 3000)
        pixels = np.asarray(image.convert("RGB"))
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 50, "screenshot is (nearly) one colour"
    assert (pixels < 100).all(axis=2).mean() > 0.002, "no dark (text) pixels in the screenshot"


@pytest.fixture
def devtools(tmp_path) -> Iterator:
    """A websocket to the page target of a headless Chromium started for this test."""
    require_chromium()
    websocket = pytest.importorskip("websocket", reason="websocket-client is needed for the DevTools checks")
    profile = tmp_path / "profile"
    proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = _debugging_port(profile / "DevToolsActivePort", proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            targets = json.load(response)
        url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        conn = websocket.create_connection(url, timeout=TIMEOUT_S, suppress_origin=True)
        yield conn
        conn.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _debugging_port(path: Path, proc: subprocess.Popen) -> int:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return int(path.read_text().splitlines()[0])
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with code {proc.returncode} before opening DevTools")
        time.sleep(0.1)
    raise TimeoutError(f"{path} did not appear within {TIMEOUT_S} s")


def _send(conn, msg_id: int, method: str, params: dict | None = None) -> None:
    conn.send(json.dumps({"id": msg_id, "method": method, "params": params or {}}))


def _navigate(conn, url: str, msg_id: int) -> list[dict]:
    """Open ``url``; every message until that navigation's ``load`` lifecycle event, then one quiet
    second. The navigation is identified by its loaderId, so a late event of an earlier page
    cannot end the wait."""
    from websocket import WebSocketTimeoutException

    _send(conn, msg_id, "Page.navigate", {"url": url})
    conn.settimeout(TIMEOUT_S)
    events, loaded, loader = [], set(), None
    while loader is None or loader not in loaded:
        event = json.loads(conn.recv())
        events.append(event)
        if event.get("id") == msg_id:
            if "errorText" in event.get("result", {}):
                return events
            loader = event["result"]["loaderId"]
        elif event.get("method") == "Page.lifecycleEvent" and event["params"]["name"] == "load":
            loaded.add(event["params"]["loaderId"])
    conn.settimeout(1.0)
    try:
        while True:
            events.append(json.loads(conn.recv()))
    except WebSocketTimeoutException:
        return events


def _events(conn, url: str) -> list[dict]:
    """Enable the Runtime/Log/Network/Page domains, settle on about:blank, then open ``url``."""
    for msg_id, method in enumerate(["Runtime.enable", "Log.enable", "Network.enable", "Page.enable"], start=1):
        _send(conn, msg_id, method)
    _send(conn, 5, "Page.setLifecycleEventsEnabled", {"enabled": True})
    _navigate(conn, "about:blank", 6)
    return _navigate(conn, url, NAVIGATE_ID)


def problems(events: list[dict]) -> list[dict]:
    """Uncaught exceptions, console/log errors, failed loads and a failed navigation."""
    def bad(e: dict) -> bool:
        method, params = e.get("method"), e.get("params", {})
        return (method in ("Runtime.exceptionThrown", "Network.loadingFailed")
                or (method == "Log.entryAdded" and params["entry"]["level"] == "error")
                or (method == "Runtime.consoleAPICalled" and params["type"] == "error")
                or (e.get("id") == NAVIGATE_ID and "errorText" in e.get("result", {})))

    return [e for e in events if bad(e)]


def test_the_devtools_check_catches_errors(devtools, tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><img src="missing.png"><script>console.error("boom")</script>')
    found = {e.get("method") for e in problems(_events(devtools, page.as_uri()))}
    assert {"Runtime.consoleAPICalled", "Network.loadingFailed"} <= found


@pytest.mark.parametrize("page", ["index.html", "sim.html", "sim_pb.html"])
def test_page_loads_without_console_errors_or_failed_requests(pages, devtools, page):
    assert problems(_events(devtools, (pages / page).as_uri())) == []
