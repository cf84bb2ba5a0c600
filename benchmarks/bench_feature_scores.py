"""Fit + score time of every registered method, and its numbers per OOD set.

    python benchmarks/bench_feature_scores.py [--quick] [--imagenet] [--table]

Demo mode (default): on ``cifar10_resnet20`` and ``cifar10_resnet56``, every registered
method (``list_methods()``: shapings, scores on logits, DICE, ODIN where the bundle has its
variant, and the scores on features) at its default parameters and local thresholds is
fitted on id_fit where it needs to be (no cache, so the fit is timed) and evaluated on the
ID and every OOD test split, printing per-method seconds and the total over all methods
(goal: <= 30 s for all methods on both bundles together). Features and unshaped logits
are loaded before the clock starts. ``--table`` also prints AUROC per OOD set (docs/benchmarks.md).
``--imagenet``: synthetic ImageNet shapes (10k id_fit rows, 85k queries, D = 2048, C =
1000, seeded; ``--quick`` divides the rows by 10), each score on features' fit and score
time, KNN with both backends (faiss and torch).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ash_core import Evaluator, Setting, get_method, list_methods, load_bundle  # noqa: E402
from ash_core.engine.fit import fitted_state  # noqa: E402
from ash_core.features import (  # noqa: E402
    FitData,
    get_feature_score,
    list_feature_scores,
    neighbours,
)


def _fit_and_evaluate(ev: Evaluator, method: str):
    """(fit seconds, fit + score seconds, result) of one method at its defaults."""
    setting = Setting(method).validated()
    t = time.perf_counter()
    shaper = ev.shaper(setting)
    spec = get_feature_score(get_method(method).feature_score or "")
    if spec is not None:
        fitted_state(ev, shaper, spec, dict(setting.params), use_cache=False)
    t_fit = time.perf_counter() - t
    result = ev.evaluate(setting)
    return t_fit, time.perf_counter() - t, result


def demo(table: bool) -> float:
    total = 0.0
    per_method: dict[str, float] = {}
    for name in ("cifar10_resnet20", "cifar10_resnet56"):
        bundle = load_bundle(REPO / "cached_features" / name)
        ev = Evaluator(bundle)
        for n in [*ev.split_names, bundle.id_fit.name]:
            ev.base_logits(n)
        print(f"{name}: {sum(len(bundle.split(n)) for n in ev.split_names)} query rows, "
              f"{len(bundle.id_fit)} id_fit rows, D={bundle.dim}; knn backend "
              f"{neighbours.backend()}")
        for method in list_methods():
            why = get_method(method).unavailable(bundle)
            if why:
                print(f"  {method:22s} skipped: {why.split(';')[0]}")
                continue
            t_fit, t_all, result = _fit_and_evaluate(ev, method)
            total += t_all
            per_method[method] = per_method.get(method, 0.0) + t_all
            line = f"  {method:22s} fit {t_fit:6.2f} s  fit+score {t_all:6.2f} s"
            if table:
                line += "  AUROC " + " ".join(f"{o}={100 * m.auroc:.2f}"
                                              for o, m in result.ood.items())
                line += f"  avg={100 * result.average['auroc']:.2f}"
            print(line, flush=True)
    slowest = sorted(per_method.items(), key=lambda kv: -kv[1])[:3]
    print(f"all {len(per_method)} methods, both bundles: {total:.1f} s (goal <= 30 s); "
          "slowest: " + ", ".join(f"{m} {t:.1f} s" for m, t in slowest))
    return total


def imagenet(quick: bool) -> None:
    scale = 10 if quick else 1
    n_fit, n_q, d, c = 10_000 // scale, 85_000 // scale, 2048, 1000
    g = torch.Generator().manual_seed(0)
    fit = torch.relu(torch.randn(n_fit, d, generator=g))
    x = torch.relu(torch.randn(n_q, d, generator=g))
    w, b = torch.randn(c, d, generator=g) * 0.02, torch.zeros(c)
    labels = torch.randint(0, c, (n_fit,), generator=g).numpy()
    print(f"synthetic ImageNet shapes: {n_fit} id_fit, {n_q} queries, D={d}, C={c}")
    logits = torch.addmm(b, x, w.T)
    runs = [(score, "auto") for score in list_feature_scores()] + [("knn", "torch")]
    scores: dict[str, np.ndarray] = {}
    for score, knn_backend in runs:
        os.environ["ASH_KNN_BACKEND"] = knn_backend
        label = f"{score} ({neighbours.backend()})" if score == "knn" else score
        spec = get_feature_score(score)
        params = {q.name: float(q.default) for q in spec.params}
        t = time.perf_counter()
        state = spec.fit(FitData(fit, labels, w, b), params)
        t_fit = time.perf_counter() - t
        t = time.perf_counter()
        s = spec.score(x, logits, (w, b), state, params).numpy()
        t_score = time.perf_counter() - t
        assert np.isfinite(s).all()
        scores[label] = s
        print(f"  {label:14s} fit {t_fit:7.2f} s  score {t_score:7.2f} s  "
              f"fit+score {t_fit + t_score:7.2f} s", flush=True)
    os.environ.pop("ASH_KNN_BACKEND", None)
    knn = [v for k, v in scores.items() if k.startswith("knn")]
    if len(knn) == 2:
        print(f"  knn backends: max |faiss - torch| = {np.abs(knn[0] - knn[1]).max():.2e}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--imagenet", action="store_true")
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args(argv)
    if args.imagenet:
        imagenet(args.quick)
    else:
        demo(args.table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
