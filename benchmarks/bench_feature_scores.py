"""Fit + score time of every score on features, and its numbers per OOD set.

    python benchmarks/bench_feature_scores.py [--quick] [--imagenet] [--table]

Demo mode (default): on ``cifar10_resnet20`` and ``cifar10_resnet56``, each score at its
default parameters is fitted on id_fit and applied to every split (no cache, so the fit is
timed), printing per-method seconds and the total over all methods (goal: <= 30 s for all
methods on both bundles together). ``--table`` also prints AUROC per OOD set (README).
``--imagenet``: synthetic ImageNet shapes (10k id_fit rows, 85k queries, D = 2048, C =
1000; ``--quick`` divides the rows by 10), each method's fit and score time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ash_core import Evaluator, Setting, load_bundle  # noqa: E402
from ash_core.detectors import FitData, get_feature_score, list_feature_scores  # noqa: E402
from ash_core.fitted import fitted_state  # noqa: E402


def demo(table: bool) -> float:
    total = 0.0
    for name in ("cifar10_resnet20", "cifar10_resnet56"):
        bundle = load_bundle(REPO / "cached_features" / name)
        ev = Evaluator(bundle)
        for n in [*ev.split_names, bundle.id_fit.name]:
            ev.features(n)
        print(f"{name}: {sum(len(bundle.split(n)) for n in ev.split_names)} query rows, "
              f"{len(bundle.id_fit)} id_fit rows, D={bundle.dim}")
        for score in list_feature_scores():
            setting = Setting(score).validated()
            t = time.perf_counter()
            shaper = ev.shaper(setting)
            spec = get_feature_score(score)
            fitted_state(ev, shaper, spec, dict(setting.params), use_cache=False)
            t_fit = time.perf_counter() - t
            result = ev.evaluate(setting)
            t_all = time.perf_counter() - t
            total += t_all
            line = f"  {setting.label():22s} fit {t_fit:6.2f} s  fit+score {t_all:6.2f} s"
            if table:
                line += "  AUROC " + " ".join(f"{o}={100 * m.auroc:.2f}"
                                              for o, m in result.ood.items())
                line += f"  avg={100 * result.average['auroc']:.2f}"
            print(line, flush=True)
    print(f"all methods, both bundles: {total:.1f} s (goal <= 30 s)")
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
    for score in list_feature_scores():
        spec = get_feature_score(score)
        params = {q.name: float(q.default) for q in spec.params}
        t = time.perf_counter()
        state = spec.fit(FitData(fit, labels, w, b), params)
        t_fit = time.perf_counter() - t
        logits = torch.addmm(b, x, w.T)
        t = time.perf_counter()
        s = spec.score(x, logits, (w, b), state, params)
        t_score = time.perf_counter() - t
        assert np.isfinite(s.numpy()).all()
        print(f"  {score:12s} fit {t_fit:7.2f} s  score {t_score:7.2f} s", flush=True)


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
