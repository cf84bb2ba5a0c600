"""The dashboard in a real browser: `ash-explore dashboard` + headless Debian Chromium.

Starts the server on a free port, waits until it is healthy, moves the p slider and
checks that the overview numbers change, visits every view and checks that each
chart renders with no error box, and saves screenshots of the views (to a temporary
directory, or to docs/img/ with ASH_UPDATE_SCREENSHOTS=1).

Runs in CI (never skipped there); skipped locally only when /usr/bin/chromium is
missing (install it with `make browser`). ASH_BROWSER_BUNDLE overrides the bundle
(default: the demo bundle cached_features/cifar10_resnet20).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
DEMO = REPO / "cached_features" / "cifar10_resnet20"
VIEWS = {  # view key -> (radio label, charts expected at least)
    "overview": ("Overview", 1),
    "distributions": ("Score distributions", 1),
    "curves": ("ROC & PR curves", 2),
    "tradeoff": ("Trade-off", 2),
    "inspector": ("Inspector", 2),
    "compare": ("Compare", 1),
    "export": ("Export", 0),
}

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ash-explore dashboard exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"dashboard not healthy on port {port} after {timeout:.0f}s")


@pytest.fixture(scope="module")
def server():
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            raise RuntimeError("CI must have /usr/bin/chromium (make browser installs it)")
        pytest.skip("/usr/bin/chromium missing; run `make browser` (CI always has it)")
    bundle = os.environ.get("ASH_BROWSER_BUNDLE")
    if not bundle:
        assert (DEMO / "manifest.json").is_file(), (
            f"demo bundle {DEMO} missing: build it with `make bundles` (it is committed)")
    port = _free_port()
    exe = Path(sys.executable).with_name("ash-explore")
    cmd = [str(exe) if exe.exists() else "ash-explore", "dashboard", "--port", str(port)]
    if bundle:
        cmd.insert(2, bundle)
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        _wait_healthy(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        if proc.stdout:
            proc.stdout.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    if os.environ.get("ASH_UPDATE_SCREENSHOTS"):
        out = REPO / "docs" / "img"
        out.mkdir(parents=True, exist_ok=True)
        return out
    return tmp_path_factory.mktemp("screenshots")


def _wait_idle(page, timeout: float = 60_000) -> None:
    """Wait until Streamlit finished the current run (no running indicator)."""
    page.wait_for_timeout(500)
    page.wait_for_function(
        "() => { const h = document.querySelector('[data-testid=stHeader]');"
        " const s = document.querySelector('[data-testid=stStatusWidget]');"
        " return !(h && /Stop|Running/.test(h.innerText)) && !(s && /Running/.test(s.innerText)); }",
        timeout=timeout)
    page.wait_for_timeout(500)


def _metric_values(page) -> list[str]:
    return page.locator("[data-testid=stMetricValue]").all_inner_texts()


def _assert_clean(page, view: str, charts: int) -> None:
    assert page.locator("[data-testid=stException]").count() == 0, f"{view}: exception shown"
    errors = page.locator("[data-testid=stAlertContentError]").all_inner_texts()
    assert not errors, f"{view}: error box: {errors}"
    if charts:
        page.wait_for_function(
            "(n) => document.querySelectorAll('.js-plotly-plot .main-svg').length >= n",
            arg=charts, timeout=60_000)
        assert page.locator(".js-plotly-plot").count() >= charts, view


def test_dashboard_in_chromium(server, shots):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--headless", "--disable-gpu",
                  "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1300})
            page.goto(f"{server}/?method=ash-s&p=65", wait_until="domcontentloaded")
            page.wait_for_selector("[data-testid=stMetricValue]", timeout=120_000)
            _wait_idle(page)
            _assert_clean(page, "overview", 1)
            before = _metric_values(page)
            assert len(before) >= 4 and all(v.endswith("%") for v in before[:4])
            page.screenshot(path=str(shots / "overview.png"), full_page=True)

            # move the p slider with the keyboard
            slider = page.locator("[data-testid=stSlider] [role=slider], "
                                  "[data-testid=stSlider] input[type=range]").first
            slider.focus()
            for _ in range(25):
                slider.press("ArrowRight")
            page.wait_for_function(
                "(old) => { const v = [...document.querySelectorAll("
                "'[data-testid=stMetricValue]')].map(e => e.innerText);"
                " return v.length && v.join('|') !== old; }",
                arg="|".join(before), timeout=30_000)
            _wait_idle(page)
            after = _metric_values(page)
            assert after != before, "overview numbers did not change with p"
            value = slider.get_attribute("aria-valuenow") or slider.input_value()
            assert value == "90"
            assert "p=90" in page.url

            for view, (label, charts) in VIEWS.items():
                page.locator("[data-testid=stSidebar] label").filter(has_text=label).first.click()
                page.wait_for_function(f"() => location.search.includes('view={view}')",
                                       timeout=30_000)
                _wait_idle(page, timeout=180_000)
                _assert_clean(page, view, charts)
                page.screenshot(path=str(shots / f"{view}.png"), full_page=True)
                assert (shots / f"{view}.png").stat().st_size > 10_000
                if view == "compare":  # and two bundles (ResNet-20 vs ResNet-56 in the demo)
                    page.locator("label").filter(has_text="two bundles, same setting").click()
                    page.wait_for_function("() => location.search.includes('cmode=bundle')",
                                           timeout=30_000)
                    _wait_idle(page, timeout=180_000)
                    _assert_clean(page, "compare bundles", 1)
                    page.screenshot(path=str(shots / "compare_bundles.png"), full_page=True)
        finally:
            browser.close()
