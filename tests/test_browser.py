"""The dashboard in a real browser: `ash-explore dashboard` + headless Debian Chromium.

One server serves the six demo bundles (cifar10_resnet20, cifar10_resnet56,
mnist_cnn, tinyimagenet_mobilenetv2, tinyimagenet_efficientnet_lite0, cifar10_vit_hybrid).
Every view of a bundle is opened by URL in a given theme (light/dark) and
width (1400/800 px; one reused page per theme and width), and fails on:

* a Streamlit error box (``stException``, an error ``stAlert``) or a browser console
  error / uncaught page error;
* anything wider than the viewport (``scrollWidth > innerWidth``, or an element whose
  right edge passes the viewport: cards, charts, buttons, download buttons, tables,
  code blocks), and truncated card labels or values (text cut with an ellipsis);
* a chart that does not render.

Which (bundle, theme, width) cases run, each over every view (``matrix()``):

* by default (a local ``make test``): cifar10_resnet20 light at 1400 px and dark at
  800 px: one bundle, both themes, both widths, every view (and both Compare modes);
* in CI (``CI`` set): a covering set of 6 cases, not the 24 of the product: every
  bundle once, every theme x width pair at least once, every view in each
  (``test_the_matrices_cover_every_bundle_view_theme_and_width`` checks it). A case
  costs ~20-25 s on 2 busy cores (the first ~45 s: it warms the server); the product's
  18 more cases would add ~6 minutes there, which CI's 6-minute budget does not have
  (docs/testing.md, "Speed");
* with ``ASH_BROWSER_FULL=1``: the full product, every demo bundle x theme x width.

``test_p_slider_updates_the_numbers`` moves the p slider with the keyboard and checks
the overview's numbers follow. Screenshots of the demo bundle's views are written to
docs/img/ only with ``ASH_SCREENSHOTS=1`` (else nowhere), so CI rewrites no file; both
cases they need (cifar10_resnet20 light 1400 px and dark 800 px) are the local run's.

The server runs this checkout's code (``python -m ash_core.cli`` with this repository
first on ``PYTHONPATH``), whichever checkout the virtual environment was installed from.

Runs in CI (never skipped there); skipped locally only when /usr/bin/chromium is
missing (install it with `make browser`).
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
from urllib.parse import urlencode

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("BROWSER_PATH") or "/usr/bin/chromium")
BUNDLES = ("cifar10_resnet20", "cifar10_resnet56", "mnist_cnn", "tinyimagenet_mobilenetv2",
           "tinyimagenet_efficientnet_lite0", "cifar10_vit_hybrid")
DEMO = BUNDLES[0]
VIEWS = {  # view key -> charts expected at least
    "overview": 1, "distributions": 1, "curves": 1, "tradeoff": 2, "inspector": 2,
    "compare": 1, "export": 0, "leaderboard": 1, "where": 0, "across": 0,
}
THEMES = ("light", "dark")
WIDTHS = (1400, 800)
#: every demo bundle x theme x width (ASH_BROWSER_FULL=1)
FULL = [(b, t, w) for b in BUNDLES for t in THEMES for w in WIDTHS]
#: CI: every bundle once, every theme x width pair at least once, every view in each
COVERING = [(DEMO, "light", 1400), (BUNDLES[1], "dark", 800), (BUNDLES[2], "dark", 1400),
            (BUNDLES[3], "light", 800), (BUNDLES[4], "dark", 1400), (BUNDLES[5], "light", 800)]
#: a local run: one bundle, both themes, both widths (and the screenshots' two cases)
DEFAULT = [(DEMO, "light", 1400), (DEMO, "dark", 800)]


def matrix(env=os.environ) -> list[tuple[str, str, int]]:
    """The (bundle, theme, width) cases of this run (see the module docstring)."""
    if env.get("ASH_BROWSER_FULL", "") not in ("", "0"):
        return FULL
    return COVERING if env.get("CI") else DEFAULT

FLAGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = bool(os.environ.get("ASH_SCREENSHOTS"))

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: elements that must lie inside the viewport and never be cut with an ellipsis
_LAYOUT_JS = """() => {
  const W = window.innerWidth, out = [];
  if (document.documentElement.scrollWidth > W + 1)
    out.push(`page scrolls sideways: scrollWidth ${document.documentElement.scrollWidth} > ${W}`);
  const main = document.querySelector('[data-testid=stMain]') || document.body;
  for (const el of main.querySelectorAll('[data-testid=stMetric], .js-plotly-plot, '
       + '[data-testid=stHeading], [data-testid=stButton], [data-testid=stDownloadButton], '
       + '[data-testid=stCaptionContainer], [data-testid=stAlert], '
       + '[data-testid=stDataFrame], [data-testid=stTable], [data-testid=stCode]')) {
    const r = el.getBoundingClientRect();
    if (r.width && r.right > W + 1)
      out.push(`${el.dataset.testid || el.className}: right edge ${Math.round(r.right)} > ${W}`);
  }
  for (const el of main.querySelectorAll('[data-testid=stMetricLabel] p, '
       + '[data-testid=stMetricLabel] div, [data-testid=stMetricValue] div, '
       + '[data-testid=stMetricValue]')) {
    if (el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflow !== 'visible')
      out.push(`truncated card text: "${el.textContent.trim()}"`);
  }
  return out;
}"""


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
        pytest.skip(f"{CHROMIUM} missing; run `make browser` (CI always has it)")
    paths = [f"cached_features/{b}" for b in BUNDLES]
    for p in paths:
        assert (REPO / p / "manifest.json").is_file(), f"demo bundle {p} missing (committed)"
    port = _free_port()
    # `python -m ash_core.cli` with this checkout first on the path, not the venv's
    # `ash-explore` script, which imports whichever checkout the venv was installed from
    cmd = [sys.executable, "-m", "ash_core.cli", "dashboard", *paths, "--port", str(port)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
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
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            yield b
        finally:
            b.close()


class Tab:
    """One reused page per (theme, width), collecting console and page errors."""

    def __init__(self, browser, theme: str, width: int):
        self.context = browser.new_context(viewport={"width": width, "height": 1000},
                                           color_scheme=theme)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error"
                     else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    def open(self, server: str, **query) -> None:
        self.errors.clear()
        self.page.goto(f"{server}/?{urlencode(query)}", wait_until="domcontentloaded")
        self.page.wait_for_selector("[data-testid=stMain] [data-testid=stHeading]",
                                    timeout=120_000)
        _wait_idle(self.page)


@pytest.fixture(scope="module")
def tabs(browser):
    made: dict[tuple[str, int], Tab] = {}

    def get(theme: str, width: int) -> Tab:
        if (theme, width) not in made:
            made[(theme, width)] = Tab(browser, theme, width)
        return made[(theme, width)]

    yield get
    for tab in made.values():
        tab.context.close()


#: true while Streamlit is connecting or running the script: no view heading yet, the
#: app's script state (the only sign of a long run that shows a progress bar and nothing
#: else, as the leaderboard's first computation does), the running indicator, a spinner,
#: or elements marked stale by a rerun (a progress bar is no sign: a view that fails
#: mid-sweep leaves one behind)
BUSY_JS = """() => {
  const s = document.querySelector('[data-testid=stStatusWidget]');
  const app = document.querySelector('[data-testid=stApp]');
  return !document.querySelector('[data-testid=stMain] [data-testid=stHeading]')
    || (app && /^(running|rerunRequested)$/.test(app.getAttribute('data-test-script-state')))
    || (s && /Running|Connecting/.test(s.innerText))
    || !!document.querySelector('[data-testid^=stStatusWidgetRunning], '
         + '[data-testid=stSpinner], [data-stale=true]');
}"""


def _wait_idle(page, timeout: float = 240_000) -> None:
    """Wait until Streamlit finished the current run: not busy in two checks 400 ms apart
    (a rerun can start a moment after the event that causes it)."""
    deadline = time.time() + timeout / 1000
    while time.time() < deadline:
        page.wait_for_function(f"() => !({BUSY_JS})()", timeout=timeout)
        page.wait_for_timeout(400)
        if not page.evaluate(BUSY_JS):
            return
    raise TimeoutError(f"Streamlit still busy after {timeout / 1000:.0f}s")


def _problems(tab: Tab, charts: int) -> list[str]:
    page = tab.page
    out = []
    if page.locator("[data-testid=stException]").count():
        out.append("exception: " + " | ".join(
            page.locator("[data-testid=stException]").all_inner_texts())[:300])
    errors = page.locator("[data-testid=stAlertContentError]").all_inner_texts()
    out += [f"error box: {e[:300]}" for e in errors]
    if charts:
        try:
            page.wait_for_function(
                "(n) => document.querySelectorAll('.js-plotly-plot .main-svg').length >= n",
                arg=charts, timeout=30_000)
        except Exception:  # noqa: BLE001 - reported with the rest
            n = page.locator(".js-plotly-plot").count()
            out.append(f"{n} chart(s) rendered, expected >= {charts}")
    out += page.evaluate(_LAYOUT_JS)
    out += [f"console: {e[:300]}" for e in tab.errors]
    return out


def _views() -> list[str]:
    from dashboard.state import VIEWS as ALL
    return list(ALL)


def test_the_matrices_cover_every_bundle_view_theme_and_width():
    pairs = {(t, w) for t in THEMES for w in WIDTHS}
    for cases in (DEFAULT, COVERING, FULL):  # every case opens every view
        assert {t for _, t, _ in cases} == set(THEMES) and {w for *_, w in cases} == set(WIDTHS)
        assert (DEMO, "light", 1400) in cases  # the demo's Compare modes
    assert (DEMO, "dark", 800) in DEFAULT  # the screenshots' second case
    assert {(t, w) for _, t, w in COVERING} == pairs and len(COVERING) == len(BUNDLES)
    assert {b for b, _, _ in COVERING} == set(BUNDLES) and len(set(FULL)) == 4 * len(BUNDLES)
    # committed: what git tracks, not what a checkout holds (``make layers`` adds
    # <name>.layers bundles beside the demos, git-ignored)
    tracked = subprocess.run(["git", "ls-files", "cached_features/*/manifest.json"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.split()
    demo = {Path(p).parent.name for p in tracked}
    assert set(BUNDLES) == demo, "every committed demo bundle is opened in CI"
    assert set(VIEWS) == set(_views())
    assert matrix({}) == DEFAULT and matrix({"CI": "true"}) == COVERING
    assert matrix({"CI": "true", "ASH_BROWSER_FULL": "1"}) == FULL


@pytest.mark.parametrize("bundle, theme, width", matrix(),
                         ids=[f"{b}-{t}-{w}" for b, t, w in matrix()])
def test_every_view_is_clean(server, tabs, bundle, theme, width):
    tab = tabs(theme, width)
    failures = []
    for view, charts in VIEWS.items():
        tab.open(server, bundle=f"cached_features/{bundle}", method="ash-s", p=65, view=view)
        failures += [f"{view}: {p}" for p in _problems(tab, charts)]
        if SHOTS and bundle == DEMO:
            _screenshot(tab, view, theme, width)
    if bundle == DEMO:  # and Compare's other mode: the same setting on two bundles
        tab.open(server, bundle=f"cached_features/{bundle}", method="ash-s", p=65,
                 view="compare", cmode="bundle", bbundle=f"cached_features/{BUNDLES[1]}")
        failures += [f"compare bundles: {p}" for p in _problems(tab, 1)]
        if SHOTS:
            _screenshot(tab, "compare_bundles", theme, width)
        tab.open(server, bundle=f"cached_features/{bundle}", method="ash-s", p=65,
                 view="compare", cmode="methods", cmethods="ash-s,none,gen,knn")
        failures += [f"compare methods: {p}" for p in _problems(tab, 2)]
        if SHOTS:
            _screenshot(tab, "compare_methods", theme, width)
    assert not failures, (f"{bundle}, {theme}, {width}px:\n  " + "\n  ".join(failures))


def _screenshot(tab: Tab, view: str, theme: str, width: int) -> None:
    """docs/img/<view>.png (light, 1400 px); plus the overview dark at 800 px."""
    out = REPO / "docs" / "img"
    if (theme, width) == ("light", 1400):
        name = view
    elif view == "overview" and (theme, width) == ("dark", 800):
        name = "overview_dark_800"
    else:
        return
    tab.page.screenshot(path=str(out / f"{name}.png"), full_page=True)


def test_p_slider_updates_the_numbers(server, tabs):
    tab = tabs("light", 1400)
    tab.open(server, bundle=f"cached_features/{DEMO}", method="ash-s", p=65)
    page = tab.page
    before = page.locator("[data-testid=stMetricValue]").all_inner_texts()
    assert len(before) >= 4 and all(v.endswith("%") for v in before[:4])
    slider = page.locator("[data-testid=stSlider] input[type=range], "
                          "[data-testid=stSlider] [role=slider]").first
    slider.focus()
    for _ in range(25):
        slider.press("ArrowRight")
    page.wait_for_function(
        "(old) => { const v = [...document.querySelectorAll("
        "'[data-testid=stMetricValue]')].map(e => e.innerText);"
        " return v.length && v.join('|') !== old; }", arg="|".join(before), timeout=30_000)
    _wait_idle(page)
    assert page.locator("[data-testid=stMetricValue]").all_inner_texts() != before
    value = slider.get_attribute("aria-valuenow") or slider.input_value()
    assert value == "90" and "p=90" in page.url
    assert not _problems(tab, 1)


def _readme_quickstart() -> list[list[str]]:
    """The README's "Your own features" command lines (``ash-explore ...``), as argv."""
    text = (REPO / "README.md").read_text()
    block = text.split("## Your own features")[1].split("```bash\n")[1].split("```")[0]
    return [line.split()[1:] for line in block.splitlines() if line.startswith("ash-explore ")]


def test_readme_arrays_to_bundle_to_dashboard(tmp_path, browser):
    """The README's quickstart for your own features, as printed: arrays -> `bundle create`
    -> `dashboard` on the new bundle, with no other step; the page shows its numbers."""
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "head.npz", weight=rng.normal(size=(5, 24)), bias=np.zeros(5))
    np.savez(tmp_path / "id.npz", features=np.abs(rng.normal(size=(80, 24))),
             labels=rng.integers(0, 5, 80))
    np.savez(tmp_path / "ood.npz", features=np.abs(rng.normal(0.5, 1.5, size=(60, 24))))
    create, dashboard = _readme_quickstart()
    assert create[:2] == ["bundle", "create"] and dashboard[0] == "dashboard"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    subprocess.run([sys.executable, "-m", "ash_core.cli", *create], cwd=tmp_path, env=env,
                   check=True, capture_output=True)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ash_core.cli", *dashboard, "--port",
                             str(port)], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, start_new_session=True)
    tab = Tab(browser, "light", 1400)
    try:
        _wait_healthy(port, proc)
        tab.open(f"http://127.0.0.1:{port}")
        heading = tab.page.locator("[data-testid=stMain] [data-testid=stHeading]").first
        assert "mine" in heading.inner_text(), tab.page.locator("[data-testid=stMain]").inner_text()[:1500]
        tab.page.wait_for_function(
            "() => document.querySelectorAll('[data-testid=stMetricValue]').length >= 4",
            timeout=60_000)
        values = tab.page.locator("[data-testid=stMetricValue]").all_inner_texts()
        assert len(values) >= 4 and all(v.endswith("%") for v in values[:4]), \
            tab.page.locator("[data-testid=stMain]").inner_text()[:1500]
        assert not _problems(tab, 1)
    finally:
        tab.context.close()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
