"""What ``ash-explore sweep --ci`` adds to a sweep: its bootstrap intervals against the
sweep itself, on demo bundles.

Per bundle, in one process: the sweep's rows (``sweep_results``: cubes from the cache when
present, built otherwise; timed on a second run so both sides read a warm cache), then
``result_ci`` of every row at B resamples (what ``--ci`` adds). Prints seconds per row and
the ratio, with the CPU model and load, so that a change can be judged on any machine.

    python benchmarks/bench_sweep_ci.py [--bundles cifar10_resnet20 ...] [--resamples 1000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path

from ash_core import load_bundle
from ash_core.reports.intervals import result_ci
from ash_core.sweep import parse_grid, sweep_results

REPO = Path(__file__).resolve().parents[1]


def cpu() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((ln.split(":", 1)[1].strip() for ln in out.splitlines()
                 if ln.startswith("Model name")), "unknown")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundles", nargs="+",
                    default=["cifar10_resnet20", "tinyimagenet_mobilenetv2"])
    ap.add_argument("--methods", default="ash-p,ash-b,ash-s")
    ap.add_argument("--p", default="60:95:5")
    ap.add_argument("--resamples", type=int, default=1000)
    a = ap.parse_args()
    print(f"CPU: {cpu()}; load average at start: {os.getloadavg()}")
    for name in a.bundles:
        bundle = load_bundle(REPO / "cached_features" / name)
        methods, grid = a.methods.split(","), parse_grid(a.p)
        sweep_results(bundle, methods, grid)  # the cubes built or read once
        t = time.perf_counter()
        rows = sweep_results(bundle, methods, grid)
        t_sweep = time.perf_counter() - t
        t = time.perf_counter()
        for _, r in rows:
            result_ci(r, a.resamples)
        t_ci = time.perf_counter() - t
        sizes = f"n_id={len(bundle.id_split)}, OOD rows={sum(map(len, bundle.ood_splits))}"
        print(f"{name} ({sizes}): {len(rows)} rows; sweep {t_sweep:.2f} s "
              f"({t_sweep / len(rows):.3f} s/row); --ci at B={a.resamples} adds "
              f"{t_ci:.2f} s ({t_ci / len(rows):.2f} s/row), {t_ci / t_sweep:.1f}x the sweep")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
