#!/usr/bin/env python
"""Where to ASH, per layer of a layer bundle: each ASH variant's AUROC (average, near, far),
FPR95 and ID accuracy at a few p, and the unshaped energy's, for every cached layer and the
penultimate features (the numbers of docs/where.md's tables).

    python scripts/where_table.py cached_features/cifar10_vit_hybrid.layers \\
        [--methods ash-s,ash-p,ash-b] [--p 65,90] [--json OUT.json]

The sweeps are the ones the dashboard's "Where to ASH" view and ``ash-explore sweep --layer``
compute (``ash_core.layers.layer_sweep``, p = 0..95 step 5, energy score, local thresholds,
ID positive), read from or written to the same disk cache, so the view opens at once
afterwards. Prints Markdown (percentages); ``--json`` writes the same numbers as fractions,
plus the best p per layer on the grid (by average AUROC: a test-set choice, reported as
the ceiling, not as a tuned result).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _avg(metrics: dict, names) -> dict[str, float]:
    from ash_core import average_metrics

    return average_metrics({n: metrics[n] for n in names if n in metrics})


def layer_numbers(bundle, sweep, ps: list[float]) -> dict:
    """layer -> {"unshaped": {...}, "p": {p: {...}}, "best": {...}} for one method's sweep."""
    from ash_core.errors import FeatureError
    from ash_core.maths.metrics import ood_metrics_many

    groups = {g: list(m) for g, m in bundle.groups.items()}
    id_name = sweep.splits[0][0]
    ood = [n for n, _ in sweep.splits[1:]]

    def summary(metrics, acc) -> dict[str, float]:
        out = {"auroc": _avg(metrics, ood)["auroc"], "fpr95": _avg(metrics, ood)["fpr95"],
               "id_accuracy": float(acc)}
        out.update({f"auroc_{g}": _avg(metrics, m)["auroc"] for g, m in groups.items()})
        return out

    def at(layer: str, i: int) -> dict[str, float] | None:
        """The summary at grid position i; None where some energy overflowed (ASH-S's
        exp(s1/s2) on signed maps, whose kept sum s2 can be near zero): no metric exists."""
        try:
            return summary(sweep.metrics(layer, sweep.grid[i]), sweep.accuracy(layer)[i])
        except FeatureError:
            return None

    result = {}
    for layer in sweep.layers:
        base = sweep.base_scores(layer)
        unshaped = ood_metrics_many(base[id_name], {n: base[n] for n in ood})
        everyp = [at(layer, i) for i in range(len(sweep.grid))]
        finite = [i for i, v in enumerate(everyp) if v is not None]
        best = max(finite, key=lambda i: everyp[i]["auroc"]) if finite else None
        result[layer] = {"unshaped": summary(unshaped, sweep.unshaped_accuracy(layer)),
                         "p": {f"{p:g}": everyp[sweep.index_of(p)] for p in ps},
                         "best": None if best is None else {"p": sweep.grid[best],
                                                            **everyp[best]},
                         "overflow_p": [sweep.grid[i] for i, v in enumerate(everyp)
                                        if v is None]}
    return result


def markdown(numbers: dict, groups: list[str]) -> str:
    cols = ["AUROC"] + [f"AUROC {g}" for g in groups] + ["FPR95", "ID acc."]
    keys = ["auroc"] + [f"auroc_{g}" for g in groups] + ["fpr95", "id_accuracy"]
    lines = []
    for method, layers in numbers.items():
        lines += [f"**{method}**", "", "| layer | setting | " + " | ".join(cols) + " |",
                  "|---|---|" + "---:|" * len(cols)]
        for layer, d in layers.items():
            rows = [("unshaped", d["unshaped"])] + [(f"p = {p}", v) for p, v in d["p"].items()]
            if d["best"] is not None:
                rows.append((f"best p = {d['best']['p']:g}", d["best"]))
            for label, v in rows:
                cells = ["overflow"] * len(keys) if v is None else \
                    [f"{100 * v[k]:.2f}" for k in keys]
                lines.append(f"| {layer} | {label} | " + " | ".join(cells) + " |")
        overflow = {layer: d["overflow_p"] for layer, d in layers.items() if d["overflow_p"]}
        if overflow:
            lines += ["", "Energy overflows (no metric) at p = " + "; ".join(
                f"{layer}: {', '.join(f'{p:g}' for p in ps)}" for layer, ps in overflow.items())]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", help="a bundle with layer maps (make layers)")
    ap.add_argument("--methods", default="ash-s,ash-p,ash-b")
    ap.add_argument("--p", default="65,90", help="p values to tabulate (on the grid 0..95)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", help="also write the numbers to this JSON file")
    args = ap.parse_args(argv)
    from ash_core import load_bundle
    from ash_core.errors import AshError
    from ash_core.layers import layer_sweep

    try:
        bundle = load_bundle(args.bundle)
        ps = [float(t) for t in args.p.split(",") if t.strip()]
        numbers = {}
        for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
            with warnings.catch_warnings():  # "x% of activations are negative": known here
                warnings.simplefilter("ignore", UserWarning)
                sweep = layer_sweep(bundle, None, method, device=args.device,
                                    log=lambda s: print(s, file=sys.stderr, flush=True))
            if any(sweep.index_of(p) is None for p in ps):
                raise AshError(f"--p {args.p}: every p must be on the grid {sweep.grid}.")
            numbers[method] = layer_numbers(bundle, sweep, ps)
    except (AshError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(markdown(numbers, list(bundle.groups)))
    if args.json:
        rows = {"bundle": bundle.name, "rows": {n: len(s) for n, s in
                                               [(bundle.id_split.name, bundle.id_split)]
                                               + [(s.name, s) for s in bundle.ood_splits]},
                "methods": numbers}
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
