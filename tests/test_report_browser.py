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

from perturbench.report import build_report
from tests._reporttree import CONFIG, results_tree

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_S = 90


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> Path:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not installed at {CHROMIUM} (apt-get install chromium)")
    results = results_tree(tmp_path_factory)
    out = tmp_path_factory.mktemp("browser_report")
    build_report(results, out / "index.html", config=CONFIG)
    return out


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


def _problems(conn, url: str) -> list[dict]:
    """Send the enable/navigate commands; return error events seen until load (+ a short drain)."""
    for i, method in enumerate(["Runtime.enable", "Log.enable", "Network.enable", "Page.enable"], start=1):
        conn.send(json.dumps({"id": i, "method": method}))
    conn.send(json.dumps({"id": 99, "method": "Page.navigate", "params": {"url": url}}))
    problems, loaded, deadline = [], None, time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline and (loaded is None or time.monotonic() < loaded + 1.0):
        conn.settimeout(max(0.05, (loaded + 1.0 - time.monotonic()) if loaded else TIMEOUT_S))
        try:
            message = json.loads(conn.recv())
        except Exception as err:  # the drain window ending raises the client's timeout
            if loaded is None:
                raise AssertionError(f"page {url} did not finish loading") from err
            break
        method, params = message.get("method"), message.get("params", {})
        if method == "Page.loadEventFired":
            loaded = time.monotonic()
        elif method in ("Runtime.exceptionThrown", "Network.loadingFailed") or (
            method == "Log.entryAdded" and params["entry"]["level"] == "error"
        ) or (method == "Runtime.consoleAPICalled" and params["type"] == "error"):
            problems.append(message)
        elif message.get("id") == 99 and "errorText" in message.get("result", {}):
            problems.append(message)
    return problems


@pytest.mark.parametrize("page", ["index.html", "sim.html", "sim_pb.html"])
def test_page_loads_without_console_errors_or_failed_requests(pages, devtools, page):
    assert _problems(devtools, (pages / page).as_uri()) == []
