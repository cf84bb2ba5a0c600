"""p-slider latency in a real browser: key press to updated numbers and charts (goal 0.5 s).

Starts ``ash-explore dashboard`` on the demo bundle, opens Overview, Score distributions
and ROC & PR curves (its default kind, ROC; all OOD sets selected) in headless Chromium, and moves the p
slider one step at a time with the keyboard. Each move is timed from the key press
until the page shows the new p (its URL, written at the end of the run) and Streamlit
is idle (nothing running or stale); the moves that changed the cards, captions or
plotted paths are counted (neighbouring p can keep the same k on small D). Every p is new to the server, so no
cache answers it. Prints the median (and min/max) per view against the 0.5 s goal.

    python benchmarks/bench_browser.py [--moves 10] [--engine exact|cube] [--bundle DIR]

Needs Chromium at /usr/bin/chromium (or BROWSER_PATH) and Playwright.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("BROWSER_PATH") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWS = ("overview", "distributions", "curves")
GOAL_S = 0.5

#: a short hash of what the view shows: card values, captions, every plotted path
_SIGNATURE_JS = """() => {
  const main = document.querySelector('[data-testid=stMain]');
  if (!main) return '';
  let s = [...main.querySelectorAll('[data-testid=stMetricValue], '
           + '[data-testid=stCaptionContainer]')].map(e => e.innerText).join('|');
  for (const p of main.querySelectorAll('.js-plotly-plot path.js-line, '
       + '.js-plotly-plot .point path, .js-plotly-plot .bars path'))
    s += p.getAttribute('d') || '';
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) | 0;
  return `${s.length}:${h}`;
}"""
#: the app's script state is the one sign of a run that shows only a progress bar
_IDLE_JS = """() => !document.querySelector('[data-testid=stApp][data-test-script-state=running]')
  && !document.querySelector('[data-testid^=stStatusWidgetRunning], '
  + '[data-testid=stSpinner], [data-stale=true]')"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(bundle: str) -> tuple[subprocess.Popen, str]:
    """This checkout's dashboard (``python -m ash_core.cli``, the repository first on
    ``PYTHONPATH``), whichever checkout the virtual environment was installed from."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    cmd = [sys.executable, "-m", "ash_core.cli", "dashboard", bundle, "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"ash-explore dashboard exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.3)
    stop_server(proc)
    raise SystemExit("dashboard not healthy after 120 s")


def stop_server(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


def wait_idle(page, timeout_ms: float = 180_000) -> None:
    page.wait_for_timeout(300)
    page.wait_for_function(_IDLE_JS, timeout=timeout_ms)
    page.wait_for_timeout(300)


def time_moves(page, url: str, start_p: int, moves: int) -> tuple[list[float], int]:
    """Seconds from each ArrowRight on the p slider to a page that shows the new p (the URL,
    written at the end of the run) and is idle; and how many moves changed what is shown
    (two p with the same kept count k = D - round(D*p/100) show the same numbers)."""
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector(".js-plotly-plot .main-svg", timeout=180_000)
    wait_idle(page)
    slider = page.locator("[data-testid=stSlider] input[type=range], "
                          "[data-testid=stSlider] [role=slider]").first
    slider.focus()
    times, changed = [], 0
    for i in range(1, moves + 1):
        before = page.evaluate(_SIGNATURE_JS)
        t0 = time.perf_counter()
        slider.press("ArrowRight")
        page.wait_for_function(
            f"(p) => location.search.includes('p=' + p + '&') || "
            f"location.search.endsWith('p=' + p) ? ({_IDLE_JS})() : false",
            arg=start_p + i, timeout=120_000, polling="raf")
        times.append(time.perf_counter() - t0)
        changed += page.evaluate(_SIGNATURE_JS) != before
        page.wait_for_timeout(300)  # let the last paint settle before the next move
    return times, changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moves", type=int, default=10)
    ap.add_argument("--engine", choices=("exact", "cube"), default="exact")
    ap.add_argument("--bundle", default="cached_features/cifar10_resnet20")
    ap.add_argument("--start-p", type=int, default=60)
    ap.add_argument("--quick", action="store_true", help="3 moves per view (smoke run)")
    args = ap.parse_args(argv)
    if args.quick:
        args.moves = min(args.moves, 3)
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} missing: install Debian's chromium or set BROWSER_PATH")
    from playwright.sync_api import sync_playwright

    proc, server = start_server(args.bundle)
    results: dict[str, tuple[list[float], int]] = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for i, view in enumerate(VIEWS):
                start = args.start_p + i * (args.moves + 2)  # fresh p values per view
                url = (f"{server}/?method=ash-s&p={start}&view={view}&engine={args.engine}")
                results[view] = time_moves(page, url, start, args.moves)
            browser.close()
    finally:
        stop_server(proc)
    print(f"p-slider move -> updated page, {args.bundle}, engine={args.engine}, "
          f"{args.moves} moves per view, all OOD sets (goal: median <= {GOAL_S} s)")
    ok = True
    for view, (times, changed) in results.items():
        med = statistics.median(times)
        ok &= med <= GOAL_S
        print(f"  {view:<14} median {med:.3f} s  (min {min(times):.3f}, max {max(times):.3f};"
              f" {changed}/{len(times)} moves changed the numbers)"
              f"  {'ok' if med <= GOAL_S else 'OVER GOAL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
