"""Any parameter control's latency in a real browser: a move to updated numbers (goal 0.5 s).

Starts this checkout's dashboard on each chosen demo bundle, opens the Overview of a
method in headless Chromium and moves one of its parameter controls, the p slider (one
ArrowRight) or a number input generated from the registry (a new value typed, Enter), one
value at a time. Every value is new to the server (it starts fresh per bundle and each
move goes one declared step further from the default), so no cache answers it.

Two times per move, from the key press:

* ``answer``: the Overview shows the new setting's numbers: its heading names the new
  value, its cards and table are drawn by the new run (not stale) and no spinner or
  progress bar is left (the figure is sent before the intervals are awaited, but
  Streamlit keeps a keyed chart marked stale until the run ends);
* ``intervals``: the run has ended with the new setting's bootstrap intervals drawn too
  (the caption of the average's intervals; the URL holds the new value; idle).

Prints per (bundle, method, parameter) the median, min and max of both against the 0.5 s
goal, with the CPU model and the load average before and after (the machine may be
shared: read medians, and compare runs made under a similar load).

    python benchmarks/bench_params.py [--bundle DIR ...] [--case METHOD:PARAM[=V/V/...] ...]
                                      [--moves 3] [--quick]

``--case knn:k=1/150/500`` moves to the values given (from the default) instead of one step
at a time: the values a table serves away from the default (KNN's k = 1 and its second tier
above 200, whose first move makes that tier).

Needs Chromium at /usr/bin/chromium (or BROWSER_PATH) and Playwright.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# one way to start and stop the server and the browser for both browser benchmarks
from bench_browser import CHROMIUM, FLAGS, start_server, stop_server  # noqa: E402

GOAL_S = 0.5
BUNDLES = ("cached_features/cifar10_resnet20", "cached_features/tinyimagenet_mobilenetv2")
#: p of ASH and of the other p methods, and a sample of every other family's parameter
CASES = ("ash-s:p", "react:p", "scale:p", "temp-scaling:T", "gen:gamma", "gen:M", "knn:k",
         "vim:dim", "nci:alpha")
QUICK_CASES = ("ash-s:p", "gen:gamma")

_IDLE_JS = """() => !document.querySelector('[data-testid=stApp][data-test-script-state=running]')
  && !document.querySelector('[data-testid^=stStatusWidgetRunning], '
  + '[data-testid=stSpinner], [data-testid=stProgress], [data-stale=true]')"""
_BUSY_JS = """() => !document.querySelector('[data-testid=stSpinner], [data-testid=stProgress]')"""
#: the heading names the new value and the cards and the table are the new run's
_ANSWER_JS = """(needle) => {
  const h = [...document.querySelectorAll('[data-testid=stHeading]')]
    .some(e => e.innerText.includes(needle));
  const main = document.querySelector('[data-testid=stMain]');
  const numbers = [...main.querySelectorAll('[data-testid=stMetric], '
                                            + '[data-testid=stDataFrame]')];
  return h && numbers.length > 0 && !numbers.some(e => e.closest('[data-stale=true]'))
    && (BUSY)();
}""".replace("BUSY", _BUSY_JS)
#: the new value is in the URL (``p=61`` or ``params=k:51``) and the page is idle
_SHOWN_JS = """([key, value]) => {
  const q = new URLSearchParams(location.search);
  const ok = key === 'p' ? q.get('p') === value
    : (q.get('params') || '').split(',').includes(value);
  return ok && (IDLE)();
}""".replace("IDLE", _IDLE_JS)
_CI_JS = """() => [...document.querySelectorAll('[data-testid=stCaptionContainer]')]
  .some(e => e.innerText.includes('95% bootstrap intervals of the averages'))"""


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines()
                    if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def load_text() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def values_for(method: str, param: str, moves: int, dim: int) -> tuple[float, list[float]]:
    """(start, the values moved to): each one declared step (the control's) from the
    previous, away from the default, inside the control's bounds (ViM's dim below D)."""
    from dashboard.controls import controls_for
    from dashboard.state import p_range

    if param == "p":
        low, high = p_range(method)
        start = min(60, high - moves)
        return start, [start + i for i in range(1, moves + 1)]
    c = next(c for c in controls_for(method, "energy") if c.name == param)
    high = min(c.max_value, dim - 1) if param == "dim" else c.max_value
    start = c.default if c.default >= c.min_value else c.min_value
    if param == "dim" and start == 0:  # 0 is the official rule: start from D/4 instead
        start = float(dim // 4)
    sign = 1 if start + moves * c.step <= high else -1
    out = [round(start + sign * i * c.step, 10) for i in range(1, moves + 1)]
    return start, [c.widget_value(v) for v in out]


def _given(text: str) -> list[float] | None:
    """The values of ``--case M:P=V/V/...`` ([] when none are given; None when one is not a
    number)."""
    try:
        return [float(v) for v in text.split("/")] if text else []
    except ValueError:
        return None


def _url_value(param: str, value: float) -> str:
    return f"{value:g}" if param == "p" else f"{param}:{value:g}"


def time_case(page, server: str, method: str, param: str, start: float,
              values: list[float], layer: str = "penultimate"
              ) -> tuple[list[float], list[float]]:
    """(answer seconds, intervals seconds) of each move (module doc)."""
    query = {"method": method, "view": "overview", "layer": layer}
    if param == "p":
        query["p"] = f"{start:g}"
    elif start is not None:
        query["params"] = f"{param}:{start:g}"
    page.goto(f"{server}/?{urllib.parse.urlencode(query)}", wait_until="domcontentloaded")
    page.wait_for_selector("[data-testid=stMetricValue]", timeout=300_000)
    page.wait_for_function(_CI_JS, timeout=300_000)
    page.wait_for_function(_IDLE_JS, timeout=300_000)
    page.wait_for_timeout(500)
    shown = urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query).get("layer", [])
    if layer != "penultimate" and shown != [layer]:
        # the page fell back to the penultimate layer: its moves would not time the layer
        raise SystemExit(f"the page did not open layer {layer!r} (URL: {page.url}); "
                         "build the bundle's layer maps with `make layers` and pass its "
                         ".layers bundle")
    if param == "p":
        control = page.locator("[data-testid=stSlider] input[type=range], "
                               "[data-testid=stSlider] [role=slider]").first
        control.focus()
    else:
        box = page.locator("[data-testid=stNumberInput]").filter(
            has=page.get_by_text(param, exact=True)).first
        control = box.locator("input").first
    answers, intervals = [], []
    for value in values:
        if param != "p":
            control.fill(f"{value:g}")
        t0 = time.perf_counter()
        control.press("ArrowRight" if param == "p" else "Enter")
        page.wait_for_function(_ANSWER_JS, arg=f" {param}={value:g} ", timeout=300_000,
                               polling="raf")
        answers.append(time.perf_counter() - t0)
        page.wait_for_function(_SHOWN_JS, arg=[param, _url_value(param, value)],
                               timeout=300_000, polling="raf")
        page.wait_for_function(_CI_JS, timeout=300_000, polling="raf")
        intervals.append(time.perf_counter() - t0)
        page.wait_for_timeout(500)  # let the last paint settle before the next move
    return answers, intervals


def _stats(times: list[float]) -> str:
    med = statistics.median(times)
    return (f"median {med:.3f} s (min {min(times):.3f}, max {max(times):.3f})"
            f" {'ok' if med <= GOAL_S else 'OVER'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", action="append", help="a demo bundle (repeat); default: "
                    + ", ".join(BUNDLES))
    ap.add_argument("--case", action="append", help="METHOD:PARAM (repeat); default: "
                    + ", ".join(CASES))
    ap.add_argument("--moves", type=int, default=3)
    ap.add_argument("--layer", default="penultimate",
                    help="shape at this inner layer (needs `make layers`; p cases only)")
    ap.add_argument("--quick", action="store_true",
                    help=f"the first bundle, {', '.join(QUICK_CASES)}, 2 moves (smoke run)")
    args = ap.parse_args(argv)
    bundles = args.bundle or list(BUNDLES)
    cases = args.case or list(CASES)
    if args.quick:
        bundles, cases, args.moves = bundles[:1], args.case or list(QUICK_CASES), 2
    for case in cases:
        if case.count(":") != 1 or _given(case.partition("=")[2]) is None:
            print(f"error: --case {case!r} must be METHOD:PARAM or METHOD:PARAM=V/V/..., "
                  "e.g. knn:k or knn:k=1/150/500", file=sys.stderr)
            return 2
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} missing: install Debian's chromium or set BROWSER_PATH")
    from playwright.sync_api import sync_playwright

    from ash_core import load_bundle
    from ash_core.reports.leaderboard import mode_for, unavailable_reason

    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; load average {load_text()} "
          f"(1/5/15 min) at the start", flush=True)
    print(f"parameter move -> updated Overview, {args.moves} moves per case, all OOD sets "
          f"(goal: answer median <= {GOAL_S} s)", flush=True)
    worst = 0.0
    for bundle in bundles:
        loaded = load_bundle(bundle)
        dim = loaded.dim
        proc, server = start_server(bundle)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                for case in cases:
                    name, _, given = case.partition("=")
                    method, param = name.split(":")
                    start, values = values_for(method, param, args.moves, dim)
                    if given:
                        values = _given(given)
                    why = unavailable_reason(loaded, method, mode_for(method, "local"))
                    if why:  # the page says why and offers no control: nothing to time
                        print(f"  {Path(bundle).name:<26} {method:>12}:{param:<6} "
                              f"not offered: {why}", flush=True)
                        continue
                    answers, intervals = time_case(page, server, method, param, start, values,
                                                   args.layer)
                    worst = max(worst, statistics.median(answers))
                    print(f"  {Path(bundle).name:<26} {method:>12}:{param:<6} "
                          f"answer {_stats(answers)} | intervals {_stats(intervals)}"
                          f" | load {load_text()}", flush=True)
                browser.close()
        finally:
            stop_server(proc)
    print(f"load average {load_text()} at the end; worst answer median {worst:.3f} s")
    return 0 if worst <= GOAL_S else 1


if __name__ == "__main__":
    sys.exit(main())
