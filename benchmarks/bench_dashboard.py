"""Server-side latency of a p change in the dashboard (target: < 300 ms on the demo bundles).

Two measurements per view, each for p values not seen before (so caches miss):

* ``direct``: the functions a slider rerun calls (cached services -> ash_core, the
  figure builders) plus the figure's JSON serialisation, i.e. the fragment's work
  without Streamlit's own overhead;
* ``apptest``: a whole AppTest rerun after moving the slider (an upper bound: AppTest
  reruns the full script, the browser only the fragment).

It also reports the resident memory before and after many reruns (it must not grow
with each rerun).

    python benchmarks/bench_dashboard.py [--quick] [--bundle DIR ...] [--large N]
    python benchmarks/bench_dashboard.py --imagenet [--quick] [--methods M:T,...]

Without --bundle it uses the demo bundles under cached_features/ (or, when they are
missing, a synthetic bundle of the demo's shape, and says so).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

os.environ.setdefault("ASH_TORCH_THREADS", "1")  # as `ash-explore dashboard` runs the server
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEMOS = ["cifar10_resnet20", "cifar10_resnet56", "mnist_cnn"]
VIEWS = ["overview", "distributions", "curves", "inspector"]


def rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def synthetic(path: Path, n_id: int, n_ood: int, n_sets: int, dim: int = 64) -> Path:
    from ash_core import SplitData, write_bundle

    rng = np.random.default_rng(0)
    w = rng.normal(size=(10, dim)).astype(np.float32)

    def f(n, s):
        return np.maximum(rng.normal(s, 1, (n, dim)), 0).astype(np.float16)

    idf = f(n_id, 0.6)
    splits = [SplitData("id_test", "id", idf, (idf.astype(np.float32) @ w.T).argmax(1)),
              SplitData("id_fit", "id_fit", f(n_id, 0.6))]
    splits += [SplitData(f"ood{i}", "ood", f(n_ood, 0.1 * i)) for i in range(n_sets)]
    return write_bundle(path, w, np.zeros(10, np.float32), [f"c{i}" for i in range(10)],
                        splits, feature_dtype="float16")


def direct(bundle_path: str, ps: list[int], method: str = "ash-s",
           engine: str = "cube") -> dict[str, list[float]]:
    from ash_core.setting import Setting
    from dashboard import cache, figures, inspection, plotdata, replay, uncertainty
    from dashboard.views.export import report_parts  # noqa: F401  (import cost excluded)

    bundle = cache.load(str(Path(bundle_path).resolve()))
    ood = cache.nonempty_ood(bundle)[0]
    colors = figures.set_colors(ood)
    cache.baseline(bundle, ood, "energy", "id")  # first load (features, base logits)
    times: dict[str, list[float]] = {v: [] for v in VIEWS}
    fresh = iter(range(99, 0, -1))  # every timed p is new: its evaluation is not cached
    for rep in range(len(ps) + 1):  # the first pass is the first load: not timed
        for view in VIEWS:
            p = next(fresh)
            t = time.perf_counter()
            r = replay.replay(bundle, ood, Setting(method, {"p": float(p)}), engine)
            if r.engine != engine:
                raise RuntimeError(f"asked for {engine}, got {r.engine}: {r.note}")
            b = cache.baseline(bundle, ood, "energy", "id")
            if view == "overview":
                frame = cache.metrics_frame(r.result, b)
                uncertainty.ci(bundle, r.result)  # the intervals beside the metrics
                figs = [figures.overview_figure(frame, colors, "x", "id")]
            elif view == "distributions":
                hb, ha, tb, ta = plotdata.histograms(bundle, r.result, b)
                uncertainty.operating(bundle, r.result,  # the operating point's readout
                                      uncertainty.threshold_for(r.result, "kept", 95.0))
                figs = [figures.distributions_figure(hb, ha, bundle.id_split.name, tb, ta,
                                                     colors, "x", "energy")]
            elif view == "curves":  # one kind at a time, ROC by default (?curve=)
                data = plotdata.curves(bundle, r.result, b, "roc")
                mets = {n: (b.ood[n], r.result.ood[n]) for n in data}
                figs = [figures.curves_figure(data, "roc", colors, "x", "id", metrics=mets)]
            else:
                insp = inspection.inspect(bundle, ood, r.result, b, ood[0], 3)
                figs = [figures.activations_figure(insp, "x"), figures.topk_figure(insp, "x")]
            for fig in figs:
                fig.to_json()
            if rep:
                times[view].append(1000 * (time.perf_counter() - t))
    return times


def apptest(bundle_path: str, ps: list[int],
            engine: str = "cube") -> tuple[dict[str, list[float]], float, float]:
    from streamlit.testing.v1 import AppTest

    times: dict[str, list[float]] = {}
    os.environ["ASH_BUNDLE_ROOTS"] = str(Path(bundle_path).resolve().parent)  # path policy
    at = AppTest.from_file(str(REPO / "dashboard" / "app.py"), default_timeout=300)
    at.query_params["bundle"] = bundle_path
    at.query_params["engine"] = engine
    at.run()
    mem0 = rss_mb()
    fresh = iter(range(1, 99))  # new p values (the direct run used the top of the range)
    for view in VIEWS:
        at.radio(key="view").set_value(view).run()
        times[view] = []
        for _ in ps:
            at.slider(key="p").set_value(next(fresh))
            t = time.perf_counter()
            at.run()
            times[view].append(1000 * (time.perf_counter() - t))
            if at.exception:
                raise RuntimeError(at.exception[0].value)
    # memory: many reruns over already-seen settings must not grow the process
    for _ in range(3):
        for p in ps:
            at.slider(key="p").set_value(p).run()
    return times, mem0, rss_mb()


def fmt(ts: list[float]) -> str:
    return f"median {statistics.median(ts):7.1f} ms  max {max(ts):7.1f} ms  (n={len(ts)})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer p values (CI smoke run)")
    ap.add_argument("--imagenet", action="store_true",
                    help="the ImageNet-shaped synthetic bundle instead (its goals; see "
                         "benchmarks/dashboard_scale.py); with --quick a small one")
    ap.add_argument("--methods", default=None,
                    help="with --imagenet: METHOD:THRESHOLD,... (default: ash-s:local, "
                         "ash-b:global, ash-rand, react, scale)")
    ap.add_argument("--bundle", action="append", help="bundle directory (repeatable)")
    ap.add_argument("--large", type=int, default=0,
                    help="also time a synthetic bundle with this many samples per split")
    ap.add_argument("--no-apptest", action="store_true", help="skip the AppTest timing")
    ap.add_argument("--engine", choices=["cube", "exact", "both"], default="both",
                    help="numbers engine to time, forced as ?engine= does (default both)")
    args = ap.parse_args()
    if args.imagenet:
        from dashboard_scale import run_scale

        return run_scale(args.quick, args.methods)
    logging.getLogger("streamlit").setLevel(logging.ERROR)
    from dashboard import config

    config.apply_torch_threads()  # as the app does at start (ASH_TORCH_THREADS=1 above)
    warnings.filterwarnings("ignore")

    tmp = Path(tempfile.mkdtemp(prefix="ash_bench_"))
    bundles = args.bundle or [str(REPO / "cached_features" / d) for d in DEMOS
                              if (REPO / "cached_features" / d / "manifest.json").is_file()]
    if not bundles:
        print("demo bundles not found: timing a synthetic bundle of the demo's shape "
              "(D=64, ID 10k, id_fit 10k, 8 OOD sets x 5k)")
        bundles = [str(synthetic(tmp / "demo_shape", 10_000, 5_000, 8))]
    if args.large:
        bundles.append(str(synthetic(tmp / "large", args.large, args.large // 4, 8)))
    ps = [61, 83] if args.quick else [55, 61, 72, 83, 91, 97]
    engines = ["cube", "exact"] if args.engine == "both" else [args.engine]
    worst: dict[str, float] = {}
    for b in bundles:
        for engine in engines:
            print(f"\n== {b}  [engine: {engine}]")
            t = time.perf_counter()
            d = direct(b, ps, engine=engine)
            print(f"   total incl. first load: {time.perf_counter() - t:.1f} s")
            for view, ts in d.items():
                print(f"   direct   {view:14s} {fmt(ts)}")
                worst[engine] = max(worst.get(engine, 0.0), statistics.median(ts))
            if not args.no_apptest:
                a, m0, m1 = apptest(b, ps, engine)
                for view, ts in a.items():
                    print(f"   apptest  {view:14s} {fmt(ts)}")
                print(f"   memory: {m0:.0f} MB after first load, {m1:.0f} MB after "
                      f"{len(VIEWS) * len(ps) + 3 * len(ps)} more reruns")
    for engine, w in worst.items():
        print(f"worst median server-side p-change time ({engine}, direct): {w:.1f} ms "
              f"({'OK' if w < 300 else 'ABOVE'} the 300 ms target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
