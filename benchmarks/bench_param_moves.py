"""A move of a score on features' parameter at engine level, with its per-split tables
(``ash_core.features.ScoreTable``) and without them, in one run.

    python benchmarks/bench_param_moves.py [--bundles NAME ...]

On each demo bundle (default ``tinyimagenet_mobilenetv2``, D = 1280, and
``cifar10_resnet20``, the most rows), every split selected: after a first evaluation
(the fit, and with tables the table of the first value), the seconds of each move of
ViM's dim (to D/8, D/4 and 3D/4) and of KNN's k (to 1, 150, 500; with tables, k = 201 is
evaluated first, untimed apart, which makes the second tier's table), median over the
moves, with tables and with none (``TABLE_MAX_BYTES = 0``: every split scored alone),
and the ratio. Prints the CPU model and load average: compare numbers of one run only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ash_core import Evaluator, Setting, load_bundle  # noqa: E402
from ash_core.features import base as features_base  # noqa: E402

MOVES = {"vim": ("dim", 0, (8, 4, 4 / 3)), "knn": ("k", 50, (1, 150, 500))}


def _seconds(ev: Evaluator, setting: Setting) -> float:
    t = time.perf_counter()
    ev.evaluate(setting)
    return time.perf_counter() - t


def _values(bundle, score: str) -> tuple[str, int, tuple[int, ...]]:
    """(parameter, first value, the values moved to): ViM's dims as fractions of D."""
    name, first, values = MOVES[score]
    return name, first, tuple(int(bundle.dim // v) for v in values) if score == "vim" \
        else values


def moves(bundle, score: str, tables: bool) -> tuple[list[float], float | None]:
    """(seconds of each move, seconds of the second tier's first k or None)."""
    name, first, values = _values(bundle, score)
    budget = features_base.TABLE_MAX_BYTES
    features_base.TABLE_MAX_BYTES = budget if tables else 0
    try:
        ev = Evaluator(bundle, warn=False)
        ev.evaluate(Setting(score, {name: first}))
        tier = _seconds(ev, Setting(score, {name: 201})) if score == "knn" and tables \
            else None
        return [_seconds(ev, Setting(score, {name: v})) for v in values], tier
    finally:
        features_base.TABLE_MAX_BYTES = budget


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundles", nargs="+",
                    default=["tinyimagenet_mobilenetv2", "cifar10_resnet20"])
    args = ap.parse_args(argv)
    cpu = subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True,
                         text=True).stdout.split(":")[-1].strip()
    print(f"CPU {cpu or 'unknown'}; load average {os.getloadavg()[0]:.2f}")
    # a fresh cache directory: no fitted state is read from an earlier run
    os.environ["ASH_CUBE_CACHE"] = tempfile.mkdtemp(prefix="ash-moves-")
    for name in args.bundles:
        bundle = load_bundle(REPO / "cached_features" / name)
        for score in MOVES:
            (on, tier), (off, _) = moves(bundle, score, True), moves(bundle, score, False)
            param, _, values = _values(bundle, score)
            line = (f"{name} {score} {param} -> {', '.join(map(str, values))}: tables "
                    f"{statistics.median(on):.3f} s, alone {statistics.median(off):.3f} s "
                    f"(median), {statistics.median(off) / statistics.median(on):.0f}x")
            if tier is not None:
                line += f"; k = 201 first (makes the second tier) {tier:.2f} s"
            print(line, flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
