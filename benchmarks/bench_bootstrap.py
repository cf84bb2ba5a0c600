"""Bootstrap intervals on a demo bundle: their cost against one evaluation of the metrics
and against resampling the score arrays and recomputing the metrics per replicate.

Scores one setting of BUNDLE once, then times, side by side in one process:
  * the point metrics of every OOD set (``ood_metrics_many``: one sort per set),
  * ``bootstrap_ci`` at B resamples (counts over the scores sorted once),
  * the direct bootstrap: per replicate, resample every split's scores with numpy and
    call ``ood_metrics_many`` (timed on a few replicates, scaled to B).
Prints seconds and the ratios (per replicate: bootstrap_ci vs direct; B replicates vs one
evaluation), so that a change can be judged on any machine.

    python benchmarks/bench_bootstrap.py [--bundle DIR] [--resamples 200 1000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ash_core import Setting, evaluate, load_bundle
from ash_core.maths.bootstrap import bootstrap_ci
from ash_core.maths.metrics import ood_metrics_many

REPO = Path(__file__).resolve().parents[1]


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def direct(ids: np.ndarray, oods: dict, replicates: int) -> None:
    rng = np.random.default_rng(0)
    for _ in range(replicates):
        r_id = ids[rng.integers(0, ids.size, ids.size)]
        ood_metrics_many(r_id, {n: s[rng.integers(0, s.size, s.size)] for n, s in oods.items()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", default=str(REPO / "cached_features" / "cifar10_resnet20"))
    ap.add_argument("--resamples", type=int, nargs="+", default=[200, 1000])
    ap.add_argument("--direct", type=int, default=20, help="replicates timed directly")
    args = ap.parse_args()
    result = evaluate(load_bundle(args.bundle), Setting("ash-s", {"p": 90.0}))
    ids, oods = result.id_scores, result.ood_scores
    rows = ids.size + sum(s.size for s in oods.values())
    print(f"{Path(args.bundle).name}: ID {ids.size} rows, {len(oods)} OOD sets, "
          f"{rows} rows in all")
    point = best_of(lambda: ood_metrics_many(ids, oods))
    per_direct = best_of(lambda: direct(ids, oods, args.direct), 1) / args.direct
    print(f"point metrics (one evaluation): {point * 1e3:.1f} ms")
    print(f"direct bootstrap: {per_direct * 1e3:.1f} ms per replicate")
    for b in args.resamples:
        t = best_of(lambda b=b: bootstrap_ci(ids, oods, b), 1 if b > 500 else 3)
        print(f"bootstrap_ci B={b}: {t:.2f} s = {t / b * 1e3:.2f} ms per replicate; "
              f"{per_direct * b / t:.1f}x faster than direct; {t / point:.0f}x one "
              "evaluation")


if __name__ == "__main__":
    main()
