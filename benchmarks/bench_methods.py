"""Cost of one exact evaluation of every registered method, relative to a dense head pass.

    python benchmarks/bench_methods.py [--quick] [--bundle DIR]

For each method in the registry (so a newly registered method is measured too) and
each threshold mode it supports, it times ``Evaluator.evaluate`` at the method's
default parameters on a demo bundle, with the per-split rank orders cold and warm, next to
one plain logits pass over the same splits in the same run, and prints the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ash_core import Evaluator, Setting, get_method, list_methods, load_bundle  # noqa: E402


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--bundle", default=str(REPO / "cached_features" / "cifar10_resnet20"))
    args = ap.parse_args(argv)
    repeats = 3 if args.quick else 7
    bundle = load_bundle(args.bundle)
    ev = Evaluator(bundle)
    names = ev.split_names
    for n in names:
        ev.features(n)
    dense = timed(lambda: [ev.logits(ev.features(n)) for n in names], repeats)
    rows = sum(ev.features(n).shape[0] for n in names)
    print(f"bundle {bundle.name}: {rows} rows, D={bundle.dim}, C={len(bundle.classes)}; "
          f"dense logits pass {1000 * dense:.1f} ms (median of {repeats})")
    print(f"{'setting':24s} {'cold ms':>9s} {'warm ms':>9s} {'warm/dense':>11s}")
    for method in list_methods():
        for mode in get_method(method).threshold_modes:
            why = get_method(method).unavailable(bundle, mode)
            if why:  # e.g. odin on a bundle without its variant
                print(f"{method} {mode}: skipped, {why.split(';')[0]}")
                continue
            fresh = Evaluator(bundle)
            for n in names:
                fresh.features(n)
            if fresh.bundle.id_fit is not None:
                fresh.features(fresh.bundle.id_fit.name)
            setting = Setting(method, threshold_mode=mode).validated()  # default parameters
            fresh.shaper(setting)  # fit once; fitting is not a parameter change
            cold = timed(lambda s=setting, e=fresh: e.evaluate(s), 1)
            warm = timed(lambda s=setting, e=fresh: e.evaluate(s), repeats)
            print(f"{setting.label():24s} {1000 * cold:9.1f} {1000 * warm:9.1f} "
                  f"{warm / dense:10.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
