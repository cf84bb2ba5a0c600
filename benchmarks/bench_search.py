"""Benchmark of ``ash-explore search`` against one score-cube preparation, side by side.

    python benchmarks/bench_search.py --quick     # ImageNet shapes (D=2048, C=1000), small N
    python benchmarks/bench_search.py             # ImageNet scale with validation splits
    python benchmarks/bench_search.py --bundle cached_features/cifar10_resnet20

Goal: a search of an ASH method over a 100-point grid with the cube engine
costs at most 2x ONE cube preparation of that method over the same grid (the cube
``sweep`` builds over the ID and OOD test splits). The search builds one cube over the
test AND the validation splits, then computes the validation metric and the average test
metric of every grid point (both choices need the whole test curve: batched over the
grid, ``metrics.IdScoreBlock``) and the full results at the two chosen points. Every
number is the best of ``--repeat`` runs, timings taken alternately in one process (the
machine is shared), no cube cache (each run builds its cube). Run it under the shared
lock: ``flock /work/heavy.lock python benchmarks/bench_search.py ...``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sweep import CLASSES, DIM, machine, synthetic_features  # noqa: E402

from ash_core import SplitData, write_bundle  # noqa: E402
from ash_core.bundle import load_bundle  # noqa: E402
from ash_core.cube import get_cube  # noqa: E402
from ash_core.engine.exact import Evaluator  # noqa: E402
from ash_core.search.grid import search  # noqa: E402

GRID = [float(p) for p in range(100)]
#: ImageNet-like: 50k ID test, 35k OOD test, and OpenOOD-sized validation splits
FULL = {"id": 45_000, "ood": [10_000, 10_000, 10_000, 5_000], "id_val": 5_000,
        "ood_val": [2_500, 2_500]}
QUICK = {"id": 1_500, "ood": [600, 500, 400, 200], "id_val": 300, "ood_val": [150, 150]}
GOAL = 2.0


def make_bundle(path: Path, sizes: dict, seed: int = 0) -> Path:
    """Synthetic ImageNet / ResNet-50 shapes with id_val and ood_val splits."""
    rng = np.random.default_rng(seed)
    unit_scale = rng.gamma(2.0, 0.25, size=DIM).astype(np.float32)
    weight = (rng.standard_normal((CLASSES, DIM)) * 0.03).astype(np.float32)
    bias = (rng.standard_normal(CLASSES) * 0.05).astype(np.float32)
    ident = synthetic_features(sizes["id"], rng, unit_scale, 0.0)
    labels = rng.integers(0, CLASSES, sizes["id"])
    val = synthetic_features(sizes["id_val"], rng, unit_scale, 0.0)
    splits = [SplitData("id_test", "id", ident, labels),
              SplitData("id_val", "id_val", val, rng.integers(0, CLASSES, len(val)))]
    for i, n in enumerate(sizes["ood"]):
        splits.append(SplitData(f"ood{i}", "ood",
                                synthetic_features(n, rng, unit_scale, -0.15 + 0.05 * i)))
    for i, n in enumerate(sizes["ood_val"]):
        splits.append(SplitData(f"ood_val{i}", "ood_val",
                                synthetic_features(n, rng, unit_scale, -0.1 + 0.05 * i)))
    return write_bundle(path, weight, bias, [f"c{i}" for i in range(CLASSES)], splits,
                        {"model": {"name": "synthetic-resnet50-shapes"}}, feature_dtype="float16")


def timed(fn) -> tuple[float, float, object]:
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def run(path: Path, label: str, method: str, repeat: int) -> dict:
    bundle = load_bundle(path)
    ev = Evaluator(bundle, warn=False)
    for name in ev.split_names + [s.name for s in (bundle.id_val, *bundle.ood_val_splits)
                                  if s is not None]:
        ev.features(name)  # both sides start from features in memory
    get_cube(ev, method, [50.0], use_cache=False)  # compile / load the kernel once
    cube_w, cube_c, search_w, search_c = [], [], [], []
    result = None
    for _ in range(repeat):  # alternate, so both see the same load
        w, c, _cube = timed(lambda: get_cube(ev, method, GRID, use_cache=False))
        cube_w.append(w), cube_c.append(c)
        w, c, result = timed(lambda: search(ev, method, {"p": GRID}, use_cache=False))
        search_w.append(w), search_c.append(c)
    rows = {"test": sum(len(bundle.split(n)) for n in ev.split_names),
            "val": len(bundle.id_val) + sum(len(s) for s in bundle.ood_val_splits)}
    r = {"label": label, "method": method, "rows": rows, "engine": result.engine,
         "cube_wall": min(cube_w), "cube_cpu": min(cube_c),
         "search_wall": min(search_w), "search_cpu": min(search_c),
         "selected": result.selected, "optimal": result.optimal, "gap": result.gap}
    r["ratio_cpu"], r["ratio_wall"] = r["search_cpu"] / r["cube_cpu"], \
        r["search_wall"] / r["cube_wall"]
    return r


def report(r: dict) -> None:
    print(f"\n{r['label']}: {r['method']}, 100-point grid, {r['rows']['test']} test rows + "
          f"{r['rows']['val']} validation rows (engine {r['engine']})")
    print(f"  one cube preparation (test splits): {r['cube_wall']:.2f} s wall, "
          f"{r['cube_cpu']:.2f} s CPU")
    print(f"  search (cube over test + val, 100 x validation and test metrics): "
          f"{r['search_wall']:.2f} s wall, {r['search_cpu']:.2f} s CPU")
    ok = "within" if max(r["ratio_cpu"], r["ratio_wall"]) <= GOAL else "OVER"
    print(f"  search / cube: {r['ratio_cpu']:.2f}x CPU, {r['ratio_wall']:.2f}x wall "
          f"({ok} the goal <= {GOAL:g}x)")
    print(f"  validated {r['selected']}, test-optimal {r['optimal']}, "
          f"gap {100 * r['gap']:.2f} AUROC points")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small N (a smoke run, < 60 s)")
    ap.add_argument("--bundle", action="append", default=[],
                    help="also benchmark this bundle (it needs id_val and ood_val splits)")
    ap.add_argument("--no-synthetic", action="store_true")
    ap.add_argument("--method", default="ash-s")
    ap.add_argument("--repeat", type=int, default=None, help="runs per side (default 3, 2 full)")
    args = ap.parse_args(argv)
    repeat = args.repeat or (3 if args.quick else 2)
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_synthetic:
            sizes = QUICK if args.quick else FULL
            path = make_bundle(Path(tmp) / "synthetic", sizes)
            label = "synthetic ImageNet shapes, " + ("quick" if args.quick else "full scale")
            report(run(path, label, args.method, repeat))
        for bundle in args.bundle:
            report(run(Path(bundle), f"bundle {bundle}", args.method, repeat))
    return 0  # timings are reported, never asserted


if __name__ == "__main__":
    sys.exit(main())
